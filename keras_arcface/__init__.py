"""keras-arcface: ArcFace (Deng et al., arXiv 1801.07698) for TensorFlow / Keras 3.

Sub-packages:
    layers      NormDense, ArcMarginProduct (Keras layers, any Keras backend)
    losses      the margin family and the paper's hypersphere losses
    models      iResNet / MobileFaceNet backbones and embedding heads
    data        TFRecords, InsightFace RecordIO and .bin sets, synthetic identities
    evaluation  the verification protocol, identification, plots
    training    configs, strategies, the training loop (installed from training/)
    inference   Embedder: one API over .keras, SavedModel, TFLite and ONNX models
    export      SavedModel / TFLite / ONNX export with a parity gate (from export/)
"""

import importlib

from keras_arcface.version import __version__

_LAZY = {
    "layers": "keras_arcface.layers",
    "losses": "keras_arcface.losses",
    "models": "keras_arcface.models",
    "data": "keras_arcface.data",
    "evaluation": "keras_arcface.evaluation",
    "training": "keras_arcface.training",
    "export": "keras_arcface.export",
    "ArcMarginProduct": "keras_arcface.layers",
    "NormDense": "keras_arcface.layers",
    "inference": "keras_arcface.inference",
    "Embedder": "keras_arcface.inference",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    # Lazy so that `import keras_arcface` is cheap and never forces a backend.
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_arcface' has no attribute '{name}'")
    module = importlib.import_module(_LAZY[name])
    return module if _LAZY[name].endswith(name) else getattr(module, name)
