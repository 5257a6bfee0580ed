"""Typed experiment configuration: defaults, YAML experiment files, overrides, derived values.

An experiment is an :class:`ExperimentConfig` (nested dataclasses with full defaults). An
experiment file (YAML) holds only the keys it changes; command-line overrides are
``dotted.key=value`` strings parsed to the field's type. Unknown keys are errors that name the
key. Values that depend on the machine and the data (replica count, global batch, scaled
learning rate, step counts) are computed once by :func:`resolve` into a :class:`Derived`
record, and :func:`save_resolved` writes both to ``RUN/config.yaml``.

Example:
    >>> from keras_arcface.training import config
    >>> cfg = config.load_config("synthetic_demo", ["optimizer.learning_rate=0.05"])
    >>> cfg.optimizer.learning_rate
    0.05
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources

import yaml

from keras_arcface._deprecation import REMOVED_IN, renamed_keywords, warn_renamed
from keras_arcface._io import atomic_open
from keras_arcface.errors import InputError

EXPERIMENTS_PACKAGE = "keras_arcface.training"
EXPERIMENTS_FOLDER = "experiments"


class ConfigError(InputError):
    """A configuration file or value is wrong; the message names the key or the file.

    A ``ValueError`` (through :class:`~keras_arcface.errors.InputError`), so callers that
    catch ``ValueError`` keep working; the command line prints it as one line.
    """


class ConfigTypeError(ConfigError, TypeError):
    """A configuration value has the wrong type (also a ``TypeError``, as it always was)."""


@dataclass
class DataConfig:
    """Training data.

    Args:
        train_dir: TFRecord dataset folder (with ``manifest.json``). Default ``""``.
        batch_size: images per replica per step; the global batch is this times the
            number of replicas. Default 128 (the reference recipe's per-GPU batch).
        num_classes: identities; 0 reads it from the manifest. Default 0.
        num_images: training images; 0 reads it from the manifest. Default 0.
        dataset_kwargs: extra keyword arguments for ``keras_arcface.data.make_dataset``
            (augmentation switches, shuffle buffer, ...). Default ``{}``.
    """

    train_dir: str = ""
    batch_size: int = 128
    num_classes: int = 0
    num_images: int = 0
    dataset_kwargs: dict = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Backbone.

    Args:
        backbone: preset name for ``keras_arcface.models.get_backbone``. Default ``"r50"``.
        embedding_dim: embedding size. Default 512 (the paper's).
        backbone_kwargs: extra keyword arguments for ``get_backbone``. Default ``{}``.
        init_from: start from these backbone weights (fine-tuning): a ``.keras`` embedding
            model, a run folder (its ``embedding_best.keras``, else ``embedding_latest``),
            or an InsightFace ``.onnx`` / ``.pth`` (``.pth`` of ``model.backbone``'s
            architecture). Every layer must match by name and shape. Default ``""`` (none).
        init_centers: ``"random"`` class centers, or ``"class_mean"``: each center is the
            normalized mean embedding of its class under the ``init_from`` weights.
            Default ``"random"``.
    """

    backbone: str = "r50"
    embedding_dim: int = 512
    backbone_kwargs: dict = field(default_factory=dict)
    init_from: str = ""
    init_centers: str = "random"


@dataclass
class LossConfig:
    """Margin loss applied to the class-center cosines.

    Args:
        name: name for ``keras_arcface.losses.get`` (``arcface``, ``cosface``, ...).
            Default ``"arcface"``.
        margin: the margin (radians for angular margins); ``None`` keeps the loss's own
            default (ArcFace 0.5 = 28.6 degrees, CosFace 0.35). Losses without a single margin
            (``norm_softmax``, ``combined``, ``cm1``, ``cm2``) take theirs in ``loss_kwargs``.
            Default None.
        scale: the feature scale ``s``. Default 64.0 (the paper's).
        loss_kwargs: extra keyword arguments for the loss. Default ``{}``.
        margin_warmup_steps: blend the margin in linearly over this many first steps
            (target logit ``s * (c + r * (f_m(c) - c))``, ``r`` from 0 to 1), so a small head
            can first separate the classes. Default 0 (full margin from the start).
        margin_warmup_epochs: the same in epochs; used when ``margin_warmup_steps`` is 0.
            Default 0.
    """

    name: str = "arcface"
    margin: float | None = None
    scale: float = 64.0
    loss_kwargs: dict = field(default_factory=dict)
    margin_warmup_steps: int = 0
    margin_warmup_epochs: float = 0.0


@dataclass
class PartialFCConfig:
    """Partial FC classification head (An et al., 2021).

    Args:
        sample_rate: fraction of class centers used per step (all positives of the global
            batch are always included). 1.0 is the exact full softmax. Default 1.0.
        shard_centers: split the class centers (and their optimiser state) by rows across the
            replicas, softmax across shards (model-parallel head). ``None`` (default): on when
            there is more than one replica and the strategy can shard, else off. ``true``: an
            error that says why when the run cannot shard (e.g. fewer classes than replicas).
            ``false``: every replica holds the whole matrix.
    """

    sample_rate: float = 1.0
    shard_centers: bool | None = None

    @property
    def shard_centres(self):
        """Deprecated spelling of ``shard_centers``."""
        warn_renamed("shard_centres", "shard_centers")
        return self.shard_centers

    @shard_centres.setter
    def shard_centres(self, value):
        warn_renamed("shard_centres", "shard_centers")
        self.shard_centers = value


# The constructor too takes the old keyword, PartialFCConfig(shard_centres=...), with a warning.
PartialFCConfig.__init__ = renamed_keywords(shard_centres="shard_centers")(PartialFCConfig.__init__)


@dataclass
class OptimizerConfig:
    """Optimiser.

    Args:
        name: ``"sgd"`` (momentum), ``"adamw"`` (Adam with decoupled weight decay,
            Loshchilov & Hutter) or ``"adam"`` (Adam with coupled L2 weight decay, as
            ``torch.optim.Adam(weight_decay=...)``). Default ``"sgd"``.
        learning_rate: peak learning rate at ``reference_batch_size``. Default 0.1.
        reference_batch_size: when > 0 the learning rate scales linearly with
            ``global_batch / reference_batch_size``; 0 uses ``learning_rate`` as is. Default 0.
        momentum: SGD momentum. Default 0.9.
        nesterov: Nesterov momentum for SGD. Default False.
        weight_decay: weight decay factor. Default 5e-4 (the paper's).
        weight_decay_mode: ``"coupled"`` adds ``weight_decay * w`` to the gradient before
            momentum (the paper's MXNet SGD, classic L2); ``"decoupled"`` shrinks the weights
            directly by ``lr * weight_decay * w`` (Keras' and AdamW's); ``"auto"`` is the
            optimiser's own: coupled for ``sgd`` and ``adam``, decoupled for ``adamw``.
            Default ``"auto"``. (``adamw`` with ``coupled`` is the old spelling of ``adam``:
            it still works, with a ``DeprecationWarning``.)
        beta_1: AdamW first-moment decay. Default 0.9.
        beta_2: AdamW second-moment decay. Default 0.999.
        epsilon: AdamW epsilon. Default 1e-8.
        clipnorm: clip each replica's gradient to this global norm; 0 disables. Default 0.
        backbone_lr_multiplier: the backbone's learning rate is the schedule's times this
            (the class centers always get the full rate); below 1 when fine-tuning.
            Default 1.0.
    """

    name: str = "sgd"
    learning_rate: float = 0.1
    reference_batch_size: int = 0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    weight_decay_mode: str = "auto"
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    clipnorm: float = 0.0
    backbone_lr_multiplier: float = 1.0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up, then a decay.

    Args:
        name: ``"polynomial"``, ``"step"`` (divide by 1/decay_factor at fixed points, the
            paper's), ``"cosine"`` or ``"constant"``. Default ``"polynomial"``.
        epochs: training length in epochs (ignored when ``total_steps`` > 0). Default 20.
        total_steps: training length in global steps; 0 derives it from ``epochs``. Default 0.
        warmup_epochs: linear warm-up length in epochs. Default 0.
        warmup_steps: warm-up in steps; overrides ``warmup_epochs`` when > 0. Default 0.
        power: polynomial power. Default 2.0 (the reference recipe's).
        decay_epochs: step-decay points in epochs. Default ``[]``.
        decay_steps: step-decay points in steps; overrides ``decay_epochs``. Default ``[]``.
        decay_factor: multiplier at each step-decay point. Default 0.1.
        end_learning_rate: learning rate at the end of polynomial/cosine decay. Default 0.
        head_warmup_steps: train only the class centers for this many first steps: the
            backbone is frozen, batch-norm statistics included (fine-tuning). Default 0.
    """

    name: str = "polynomial"
    epochs: float = 20.0
    total_steps: int = 0
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    power: float = 2.0
    decay_epochs: list[float] = field(default_factory=list)
    decay_steps: list[int] = field(default_factory=list)
    decay_factor: float = 0.1
    end_learning_rate: float = 0.0
    head_warmup_steps: int = 0


@dataclass
class DistributionConfig:
    """Distribution strategy (see :mod:`keras_arcface.training.strategy`).

    Args:
        strategy: ``"auto"`` (multi-worker when ``TF_CONFIG`` names several workers, else
            mirrored over several GPUs, else one device), ``"default"``, ``"mirrored"`` or
            ``"multi_worker"``. Default ``"auto"``.
        devices: device names for ``"mirrored"``; empty means every local GPU, or every
            logical CPU when there is no GPU. Default ``[]``.
    """

    strategy: str = "auto"
    devices: list[str] = field(default_factory=list)


@dataclass
class CheckpointConfig:
    """Resume checkpoints (``RUN/checkpoints``).

    Args:
        every_steps: save every this many steps (and at the end). Default 1000.
        max_to_keep: checkpoints kept on disk. Default 3.
    """

    every_steps: int = 1000
    max_to_keep: int = 3


@dataclass
class EvaluationConfig:
    """Verification during training.

    Args:
        bins: ``.bin`` verification sets. Default ``[]`` (no verification).
        every_steps: verify every this many steps; 0 verifies only at the end. Default 2000.
        flip: fuse the embedding of the horizontally flipped image. Default True.
        batch_size: images per embedding batch. Default 128.
        every_epochs: verify every this many epochs; overrides ``every_steps`` when > 0.
            Default 0.
        early_stopping_patience: stop when the mean verification accuracy has not improved
            for this many verifications in a row (``embedding_best.keras`` keeps the best).
            Default 0 (never stop early).
    """

    bins: list[str] = field(default_factory=list)
    every_steps: int = 2000
    flip: bool = True
    batch_size: int = 128
    every_epochs: float = 0.0
    early_stopping_patience: int = 0


@dataclass
class LoggingConfig:
    """Logging.

    Args:
        every_steps: write a metrics row and TensorBoard scalars every this many steps.
            Default 50.
        tensorboard: write TensorBoard scalars. Default True.
        plot: write ``training_curve.png`` (needs matplotlib). Default True.
        progress_bar: show a tqdm progress bar. Default True.
    """

    every_steps: int = 50
    tensorboard: bool = True
    plot: bool = True
    progress_bar: bool = True


@dataclass
class ExperimentConfig:
    """A whole experiment. Every field has a default; experiment files change a few.

    Args:
        name: experiment name. Default ``"experiment"``.
        seed: seed of initialisation, data order and Partial FC sampling. Default 0.
        mixed_precision: ``"float32"``, ``"mixed_float16"`` (with dynamic loss scaling) or
            ``"mixed_bfloat16"``; margin math always runs in float32. Default ``"float32"``.
        data, model, loss, partial_fc, optimizer, schedule, distribution, checkpoint,
        evaluation, logging: the sections above.
    """

    name: str = "experiment"
    seed: int = 0
    mixed_precision: str = "float32"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    partial_fc: PartialFCConfig = field(default_factory=PartialFCConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    distribution: DistributionConfig = field(default_factory=DistributionConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


@dataclass(frozen=True)
class Derived:
    """Values computed once from the config, the replica count and the data.

    Args:
        num_replicas: replicas in sync (devices x workers).
        global_batch_size: ``data.batch_size * num_replicas``.
        learning_rate: peak learning rate after linear batch scaling.
        num_classes: identities.
        num_images: training images.
        steps_per_epoch: ``num_images // global_batch_size`` (at least 1).
        total_steps: global steps of the whole run.
        warmup_steps: warm-up length in steps.
        decay_steps: step-decay points in steps.
        margin_warmup_steps: length of the margin warm-up in steps (0: none).
        verify_every_steps: verification interval in steps (0: only at the end).
    """

    num_replicas: int
    global_batch_size: int
    learning_rate: float
    num_classes: int
    num_images: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    decay_steps: tuple[int, ...] = ()
    margin_warmup_steps: int = 0
    verify_every_steps: int = 0


CHOICES = {
    "mixed_precision": ("float32", "mixed_float16", "mixed_bfloat16"),
    "optimizer.name": ("sgd", "adamw", "adam"),
    "optimizer.weight_decay_mode": ("auto", "coupled", "decoupled"),
    "schedule.name": ("polynomial", "step", "cosine", "constant"),
    "distribution.strategy": ("auto", "default", "mirrored", "multi_worker"),
    "model.init_centers": ("random", "class_mean"),
}


# Renamed config keys, old dotted key -> new dotted key. The old spelling keeps working for one
# release, with a DeprecationWarning, in experiment files, dicts, overrides and the config.yaml
# that older versions saved in a run folder (so such runs still resume).
RENAMED_KEYS = {"partial_fc.shard_centres": "partial_fc.shard_centers"}


def _warn_renamed_key(old, new):
    warnings.warn(
        f"Config key '{old}' is deprecated and will be removed in keras-arcface {REMOVED_IN}; "
        f"use '{new}' instead.",
        DeprecationWarning,
        stacklevel=4,
    )


def _renamed_key(key, warn=True):
    """The current spelling of the dotted ``key`` (itself when it was never renamed)."""
    for old, new in RENAMED_KEYS.items():
        if key == old or key.startswith(old + "."):
            if warn:
                _warn_renamed_key(old, new)
            return new + key[len(old) :]
    return key


def _conflict(old, new, old_value, new_value):
    return ConfigError(
        f"Config key '{new}' is given twice, under its new name and under its deprecated name "
        f"'{old}', with different values; keep only '{new}'. "
        f"Received: {old}={old_value!r}, {new}={new_value!r}"
    )


def rename_deprecated_keys(values, warn=True):
    """Moves every renamed key of a nested mapping to its new name, in place.

    Each old key found warns once (``DeprecationWarning`` naming both keys). Both
    spellings with different values is an error; with equal values the old one is dropped.

    Args:
        values: nested dict (experiment file, dict config or saved ``config.yaml``).
        warn: False for mappings the user did not write (a run's saved config).

    Returns:
        ``values``.

    Example:
        >>> rename_deprecated_keys({"partial_fc": {"shard_centres": False}}, warn=False)
        {'partial_fc': {'shard_centers': False}}
    """
    for old, new in RENAMED_KEYS.items():
        *old_path, old_leaf = old.split(".")
        parent = _section(values, old_path)
        if not isinstance(parent, dict) or old_leaf not in parent:
            continue
        value = parent.pop(old_leaf)
        if warn:
            _warn_renamed_key(old, new)
        *new_path, new_leaf = new.split(".")
        target = _section(values, new_path, create=True)
        if not isinstance(target, dict):
            raise ConfigError(
                f"Config section '{'.'.join(new_path)}' is not a mapping. Received: {old}={value!r}"
            )
        if new_leaf in target and target[new_leaf] != value:
            raise _conflict(old, new, value, target[new_leaf])
        target[new_leaf] = value
    return values


def _section(values, path, create=False):
    """The nested mapping at ``path`` (a list of keys), or None when there is none."""
    for part in path:
        if not isinstance(values, dict):
            return None
        if create:
            values = values.setdefault(part, {})
        else:
            values = values.get(part)
    return values


def _field_types(cls):
    return typing.get_type_hints(cls)


def _coerce(value, annotation, key):
    """Converts ``value`` (from YAML or an override) to ``annotation``, or raises."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigTypeError(
                f"Config section '{key}' expects a mapping of keys to values. "
                f"Received: {key}={value!r}"
            )
        return _from_dict(annotation, value, prefix=key + ".")
    if origin is list:
        (item_type,) = typing.get_args(annotation) or (object,)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigTypeError(
                f"Config key '{key}' expects a mapping. Received: {key}={value!r}"
            )
        return dict(value)
    scalar = _SCALAR_COERCIONS.get(annotation) if isinstance(annotation, type) else None
    return value if scalar is None else scalar(value, key)


def _to_bool(value, key):
    """``true/false/yes/no/1/0`` (any case) or a bool, as a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigTypeError(f"Config key '{key}' expects true or false. Received: {key}={value!r}")


def _to_int(value, key):
    """A whole number (``3``, ``3.0``, ``"3"``, ``"1e3"``) as an int; never a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigTypeError(f"Config key '{key}' expects an integer. Received: {key}={value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigTypeError(
            f"Config key '{key}' expects an integer. Received: {key}={value!r}"
        ) from None
    if not number.is_integer():
        raise ConfigTypeError(f"Config key '{key}' expects an integer. Received: {key}={value!r}")
    return int(number)


def _to_float(value, key):
    """A number or numeric string as a float; never a bool."""
    if isinstance(value, bool):
        raise ConfigTypeError(f"Config key '{key}' expects a number. Received: {key}={value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigTypeError(
            f"Config key '{key}' expects a number. Received: {key}={value!r}"
        ) from None


def _to_str(value, key):
    """A scalar as a string (``None`` as ``""``); mappings and lists are refused."""
    if isinstance(value, (dict, list)):
        raise ConfigTypeError(f"Config key '{key}' expects a string. Received: {key}={value!r}")
    return "" if value is None else str(value)


_SCALAR_COERCIONS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _from_dict(cls, values, prefix=""):
    types = _field_types(cls)
    unknown = [k for k in values if k not in types]
    if unknown:
        key = prefix + str(unknown[0])
        raise ConfigError(
            f"Unknown config key '{key}'. Known keys here: "
            f"{', '.join(prefix + k for k in types)}. Received: {key}={values[unknown[0]]!r}"
        )
    kwargs = {}
    for name, annotation in types.items():
        if name in values:
            kwargs[name] = _coerce(values[name], annotation, prefix + name)
    return cls(**kwargs)


def from_dict(values):
    """Builds an :class:`ExperimentConfig` from a (possibly partial) nested mapping.

    Missing keys keep their defaults; unknown keys raise ``ValueError`` naming the key.
    A top-level ``derived`` section (as written to ``RUN/config.yaml``) is ignored. Renamed
    keys (:data:`RENAMED_KEYS`) still work under their old name, with a ``DeprecationWarning``.

    Args:
        values: nested dict, e.g. ``{"optimizer": {"learning_rate": 0.05}}``.

    Returns:
        A validated :class:`ExperimentConfig`.

    Example:
        >>> from_dict({"loss": {"scale": 32}}).loss.scale
        32.0
    """
    values = copy.deepcopy(dict(values or {}))
    values.pop("derived", None)
    rename_deprecated_keys(values)
    config = _from_dict(ExperimentConfig, values)
    config.optimizer.name, config.optimizer.weight_decay_mode = optimizer_choice(config.optimizer)
    validate(config)
    return config


# The weight decay each optimiser name means when weight_decay_mode is "auto".
DEFAULT_DECAY_MODE = {"sgd": "coupled", "adamw": "decoupled", "adam": "coupled"}


def optimizer_choice(optimizer):
    """The optimiser and weight-decay form an ``OptimizerConfig`` means.

    ``adamw`` is always AdamW (decoupled decay); Adam with coupled L2 is ``adam``. The old
    spelling of the latter, ``adamw`` with ``weight_decay_mode: coupled``, keeps its meaning
    with a ``DeprecationWarning``.

    Args:
        optimizer: an :class:`OptimizerConfig`.

    Returns:
        ``(name, weight_decay_mode)`` with the mode ``"coupled"`` or ``"decoupled"``.

    Example:
        >>> optimizer_choice(OptimizerConfig(name="adamw"))
        ('adamw', 'decoupled')
    """
    name, mode = optimizer.name, optimizer.weight_decay_mode
    if name == "adamw" and mode == "coupled":
        warnings.warn(
            "optimizer.name=adamw with optimizer.weight_decay_mode=coupled is Adam with L2 "
            "weight decay; it is now spelt optimizer.name=adam (adamw means decoupled decay).",
            DeprecationWarning,
            stacklevel=2,
        )
        return "adam", "coupled"
    if name == "adam" and mode == "decoupled":
        raise ValueError(
            "Adam with decoupled weight decay is AdamW: set optimizer.name=adamw. "
            f"Received: optimizer.name={name!r}, optimizer.weight_decay_mode={mode!r}"
        )
    if mode == "auto":
        mode = DEFAULT_DECAY_MODE.get(name, "coupled")
    return name, mode


def to_dict(config):
    """Returns the config as a plain nested dict (YAML-ready)."""
    return dataclasses.asdict(config)


def _split_override(text):
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(
            f"An override must look like 'section.key=value'. Received: override={text!r}"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"An override needs a key before '='. Received: override={text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(values, overrides):
    """Merges ``key=value`` overrides (dotted keys) into a nested dict, in place.

    Values are parsed as YAML scalars/lists (``lr=0.1``, ``bins=[a.bin,b.bin]``,
    ``flag=true``) and then typed by :func:`from_dict`. The key path is checked here so
    that a misspelt key is reported by name. A renamed key (:data:`RENAMED_KEYS`), in
    ``values`` or in an override, is moved to its new name with a ``DeprecationWarning``; an
    override sets the key under either name, but one list giving both names different
    values is an error.

    Args:
        values: nested dict to update.
        overrides: iterable of ``"section.key=value"`` strings.

    Returns:
        ``values``.

    Example:
        >>> apply_overrides({}, ["schedule.epochs=2"])
        {'schedule': {'epochs': 2}}
    """
    rename_deprecated_keys(values)
    spelled = {}  # current key -> {key as written: value}, to catch both spellings at once
    for text in overrides or ():
        written, value = _split_override(text)
        key = _renamed_key(written)
        given = spelled.setdefault(key, {})
        given[written] = value
        old = next((name for name in given if name != key), None)
        if old is not None and key in given and given[old] != given[key]:
            raise _conflict(old, key, given[old], given[key])
        _set_override(values, key, value)
    return values


def _set_override(values, key, value):
    """Sets the dotted ``key`` in the nested dict ``values``, checking every part of it."""
    parts = key.split(".")
    cls = ExperimentConfig
    target = values
    for depth, part in enumerate(parts):
        types = _field_types(cls)
        path = ".".join(parts[: depth + 1])
        if part not in types:
            raise ConfigError(
                f"Unknown config key '{path}'. Known keys here: "
                f"{', '.join(types)}. Received: {key}={value!r}"
            )
        annotation = types[part]
        last = depth == len(parts) - 1
        if dataclasses.is_dataclass(annotation) and not last:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"Config section '{path}' is not a mapping. Received: {key}")
            cls = annotation
        elif last:
            target[part] = value
        elif annotation is dict or typing.get_origin(annotation) is dict:
            # Free-form mappings (e.g. data.dataset_kwargs.flip=false) take any sub-key.
            target = target.setdefault(part, {})
            for sub in parts[depth + 1 : -1]:
                target = target.setdefault(sub, {})
            target[parts[-1]] = value
            return
        else:
            raise ConfigError(
                f"Config key '{path}' is a value, not a section. Received: {key}={value!r}"
            )


def experiment_names():
    """Names of the experiment files shipped with the package (without ``.yaml``)."""
    folder = resources.files(EXPERIMENTS_PACKAGE).joinpath(EXPERIMENTS_FOLDER)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_experiment(name_or_path):
    """Reads an experiment file as a nested dict.

    Args:
        name_or_path: a path to a YAML file, or the name of a shipped experiment
            (``"synthetic_demo"``, ``"casia_r50"``, ...; see :func:`experiment_names`).

    Returns:
        The file's mapping (only the keys it changes).
    """
    if os.path.isfile(name_or_path):
        try:
            with open(name_or_path, encoding="utf-8") as handle:
                text = handle.read()
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"{name_or_path} is not UTF-8 text (byte {error.start}); an experiment file is "
                f"YAML. Received: config={name_or_path!r}"
            ) from None
    else:
        name = os.path.basename(name_or_path)
        name = name[:-5] if name.endswith(".yaml") else name
        if name not in experiment_names():
            raise ConfigError(
                f"No experiment file at this path and no shipped experiment of this name "
                f"(shipped: {', '.join(experiment_names())}). Received: config={name_or_path!r}"
            )
        folder = resources.files(EXPERIMENTS_PACKAGE).joinpath(EXPERIMENTS_FOLDER)
        name_or_path = f"{name}.yaml (shipped)"
        text = folder.joinpath(name + ".yaml").read_text("utf-8")
    values = _parse_yaml(text, name_or_path)
    if not isinstance(values, dict):
        raise ConfigError(
            f"An experiment file must hold a mapping. Received: config={name_or_path!r}"
        )
    return values


def _parse_yaml(text, name):
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(
            f"{where}: YAML syntax error ({problem}); fix the file at that line. "
            f"Received: config={name!r}"
        ) from None


def load_config(name_or_path=None, overrides=()):
    """Defaults, then an experiment file, then ``key=value`` overrides.

    Args:
        name_or_path: experiment file path or shipped name; None uses only defaults.
        overrides: ``"dotted.key=value"`` strings applied last.

    Returns:
        A validated :class:`ExperimentConfig`.

    Example:
        >>> cfg = load_config("casia_r50", ["data.batch_size=64"])
        >>> cfg.model.backbone, cfg.data.batch_size
        ('r50', 64)
    """
    values = read_experiment(name_or_path) if name_or_path else {}
    apply_overrides(values, overrides)
    return from_dict(values)


def _check_positive(key, value, allow_zero=False):
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"Config key '{key}' must be {bound}. Received: {key}={value!r}")


def validate(config):
    """Checks choices and ranges; raises ``ValueError`` naming the key."""
    flat = {
        "mixed_precision": config.mixed_precision,
        "optimizer.name": config.optimizer.name,
        "optimizer.weight_decay_mode": config.optimizer.weight_decay_mode,
        "schedule.name": config.schedule.name,
        "distribution.strategy": config.distribution.strategy,
        "model.init_centers": config.model.init_centers,
    }
    for key, value in flat.items():
        if value not in CHOICES[key]:
            raise ConfigError(
                f"Config key '{key}' must be one of {', '.join(CHOICES[key])}. "
                f"Received: {key}={value!r}"
            )
    rate = config.partial_fc.sample_rate
    if not 0.0 < rate <= 1.0:
        raise ConfigError(
            f"Config key 'partial_fc.sample_rate' must be in (0, 1]. "
            f"Received: partial_fc.sample_rate={rate!r}"
        )
    _check_positive("data.batch_size", config.data.batch_size)
    _check_positive("model.embedding_dim", config.model.embedding_dim)
    _check_positive("optimizer.learning_rate", config.optimizer.learning_rate)
    _check_positive("optimizer.weight_decay", config.optimizer.weight_decay, allow_zero=True)
    _check_positive("optimizer.clipnorm", config.optimizer.clipnorm, allow_zero=True)
    _check_positive("loss.scale", config.loss.scale)
    _check_positive("checkpoint.every_steps", config.checkpoint.every_steps)
    _check_positive("checkpoint.max_to_keep", config.checkpoint.max_to_keep)
    _check_positive("logging.every_steps", config.logging.every_steps)
    _check_positive("evaluation.every_steps", config.evaluation.every_steps, allow_zero=True)
    _check_positive("schedule.total_steps", config.schedule.total_steps, allow_zero=True)
    _check_fine_tuning(config)
    if config.schedule.total_steps == 0:
        _check_positive("schedule.epochs", config.schedule.epochs)
    if config.schedule.name == "step" and not (
        config.schedule.decay_steps or config.schedule.decay_epochs
    ):
        raise ConfigError(
            "The step schedule needs 'schedule.decay_steps' or 'schedule.decay_epochs'. "
            "Received: schedule.decay_steps=[]"
        )
    return config


def _check_fine_tuning(config):
    _check_positive("optimizer.backbone_lr_multiplier", config.optimizer.backbone_lr_multiplier)
    _check_positive("schedule.head_warmup_steps", config.schedule.head_warmup_steps, True)
    _check_positive("loss.margin_warmup_steps", config.loss.margin_warmup_steps, True)
    _check_positive("loss.margin_warmup_epochs", config.loss.margin_warmup_epochs, True)
    _check_positive("evaluation.every_epochs", config.evaluation.every_epochs, True)
    patience = config.evaluation.early_stopping_patience
    _check_positive("evaluation.early_stopping_patience", patience, allow_zero=True)
    if config.model.init_centers == "class_mean" and not config.model.init_from:
        raise ConfigError(
            "Class-mean centers need trained weights to embed with: set model.init_from. "
            "Received: model.init_centers='class_mean'"
        )


def resolve(config, num_replicas=1, num_classes=None, num_images=None):
    """Computes the derived values once.

    Args:
        config: an :class:`ExperimentConfig`.
        num_replicas: replicas in sync of the strategy in use. Default 1.
        num_classes: identities from the data manifest, used when ``data.num_classes`` is 0.
        num_images: images from the data manifest, used when ``data.num_images`` is 0.

    Returns:
        A :class:`Derived`.

    Example:
        >>> cfg = from_dict({"data": {"batch_size": 64, "num_classes": 10, "num_images": 6400},
        ...                  "schedule": {"epochs": 2}})
        >>> resolve(cfg, num_replicas=2).total_steps
        100
    """
    _check_positive("num_replicas", num_replicas)
    classes = config.data.num_classes or num_classes or 0
    images = config.data.num_images or num_images or 0
    if classes <= 1:
        raise ConfigError(
            "The number of classes must be at least 2: set data.num_classes or point "
            f"data.train_dir at a dataset with a manifest. Received: num_classes={classes!r}"
        )
    _check_against_data(config, num_replicas, num_classes, images)
    global_batch = config.data.batch_size * num_replicas
    opt = config.optimizer
    lr = opt.learning_rate
    if opt.reference_batch_size > 0:
        lr = lr * global_batch / opt.reference_batch_size
    steps_per_epoch = max(1, images // global_batch) if images else 0
    steps = _schedule_steps(config, steps_per_epoch, images)
    return Derived(
        num_replicas=int(num_replicas),
        global_batch_size=int(global_batch),
        learning_rate=float(lr),
        num_classes=int(classes),
        num_images=int(images),
        steps_per_epoch=int(steps_per_epoch or steps["total_steps"]),
        **steps,
    )


def _schedule_steps(config, steps_per_epoch, images):
    """The schedule's step counts, epoch-based values converted: keyword args of ``Derived``."""

    def to_steps(epochs):
        if not steps_per_epoch:
            raise ConfigError(
                "Epoch-based schedule values need the number of images: set "
                f"data.num_images or schedule.total_steps. Received: num_images={images!r}"
            )
        return int(math.ceil(epochs * steps_per_epoch))

    sched = config.schedule
    total = sched.total_steps or to_steps(sched.epochs)
    warmup = sched.warmup_steps or (to_steps(sched.warmup_epochs) if sched.warmup_epochs else 0)
    if sched.decay_steps:
        decay = tuple(int(s) for s in sched.decay_steps)
    else:
        decay = tuple(to_steps(e) for e in sched.decay_epochs)
    margin_warmup = config.loss.margin_warmup_steps or (
        to_steps(config.loss.margin_warmup_epochs) if config.loss.margin_warmup_epochs else 0
    )
    evaluation = config.evaluation
    verify_every = to_steps(evaluation.every_epochs) if evaluation.every_epochs else 0
    if warmup >= total:
        raise ConfigError(
            f"The warm-up must be shorter than the run ({total} steps). "
            f"Received: warmup_steps={warmup}"
        )
    return dict(
        total_steps=int(total),
        warmup_steps=int(warmup),
        decay_steps=decay,
        margin_warmup_steps=int(margin_warmup),
        verify_every_steps=int(verify_every or evaluation.every_steps),
    )


def _check_against_data(config, num_replicas, manifest_classes, images):
    """The batch and the class count must fit the dataset; say what fits when they do not."""
    global_batch = config.data.batch_size * num_replicas
    if images and global_batch > images:
        fits = max(1, images // num_replicas)
        raise ConfigError(
            f"data.batch_size={config.data.batch_size} makes a global batch of {global_batch} "
            f"({num_replicas} replica(s)) but the dataset holds {images} images, so no full "
            f"batch exists (and building one would exhaust memory). Use data.batch_size <= "
            f"{fits}. Received: data.batch_size={config.data.batch_size}"
        )
    wanted = config.data.num_classes
    if wanted and manifest_classes and wanted < manifest_classes:
        raise ConfigError(
            f"data.num_classes={wanted} is smaller than the {manifest_classes} classes of the "
            f"dataset (labels 0..{manifest_classes - 1}): set data.num_classes=0 to read it "
            f"from the manifest, or at least {manifest_classes}. "
            f"Received: data.num_classes={wanted}"
        )


# Keys that change how a run is shown, not what it computes: they may differ on resume.
_PRESENTATION_KEYS = ("logging.progress_bar",)


def _flatten(values, prefix=""):
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):  # an empty mapping adds no key of its own
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_keys(saved_values, config):
    """``"key: old -> new"`` for every value of ``config`` that differs from a saved config.

    Args:
        saved_values: the mapping read from a run's ``config.yaml`` (its ``derived`` section
            is ignored).
        config: the :class:`ExperimentConfig` about to be used.

    Example:
        >>> changed_keys({"data": {"batch_size": 64}}, from_dict({"data": {"batch_size": 32}}))
        ['data.batch_size: 64 -> 32']
        >>> changed_keys({}, from_dict({"data": {"dataset_kwargs": {"on_error": "skip"}}}))
        ["data.dataset_kwargs.on_error: None -> 'skip'"]
    """
    saved = copy.deepcopy(dict(saved_values or {}))
    saved.pop("derived", None)
    rename_deprecated_keys(saved, warn=False)  # written by an older version, not by the user
    try:
        old = _flatten(to_dict(from_dict(saved)))
    except ConfigError:
        old = _flatten(to_dict(from_dict({})))
        old.update(_flatten(saved))
    new = _flatten(to_dict(config))
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in _PRESENTATION_KEYS and old.get(key) != new.get(key)
    ]


def save_resolved(config, derived, path):
    """Writes the config plus a ``derived`` section to ``path`` atomically (temp + rename)."""
    values = to_dict(config)
    if derived is not None:
        values["derived"] = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(derived).items()
        }
    with atomic_open(path) as handle:
        yaml.safe_dump(values, handle, sort_keys=False)
    return path
