"""Training pipeline of keras-arcface (installed as ``keras_arcface.training``).

Modules:
    config        typed experiment configs, YAML experiment files, overrides, derived values
    strategy      one factory for default / MirroredStrategy / MultiWorkerMirroredStrategy
    schedules     warm-up + polynomial / step / cosine learning-rate schedules
    optimizers    SGD/AdamW for the backbone, sparse-row optimiser for the class centers
    partial_fc    deprecated: the Partial FC head lives in keras_arcface.layers
    trainer       the custom training loop (``Trainer``)
    checkpointing resume checkpoints and atomic model files
    callbacks     metrics CSV, TensorBoard, verification, training curve
    train_command ``keras-arcface train``; demo: ``keras-arcface demo``

Attributes load lazily so that reading configs does not import TensorFlow.

Example:
    >>> from keras_arcface.training import Trainer, load_config
    >>> cfg = load_config("casia_r50", ["data.train_dir=data/casia"])
    >>> Trainer(cfg, "runs/casia").fit()  # doctest: +SKIP
"""

import importlib

_LAZY = {
    "ExperimentConfig": "keras_arcface.training.config",
    "load_config": "keras_arcface.training.config",
    "Trainer": "keras_arcface.training.trainer",
    "TrainResult": "keras_arcface.training.trainer",
    "NonFiniteLossError": "keras_arcface.training.trainer",
    "PartialFC": "keras_arcface.training.partial_fc",
    "CenterOptimizer": "keras_arcface.training.optimizers",
    "WarmupDecay": "keras_arcface.training.schedules",
    "create_strategy": "keras_arcface.training.strategy",
    "run_demo": "keras_arcface.training.demo",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_arcface.training' has no attribute '{name}'")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
