"""Build a softmax-family loss from its name (used by configs and the paper table)."""

import keras

from keras_arcface.losses.arcface_loss import ArcFaceLoss
from keras_arcface.losses.combined_margin_loss import CombinedMarginLoss
from keras_arcface.losses.cosface_loss import CosFaceLoss
from keras_arcface.losses.norm_softmax_loss import NormSoftmaxLoss
from keras_arcface.losses.softmax_loss import SoftmaxLoss
from keras_arcface.losses.sphereface_loss import SphereFaceLoss

# name -> (class, default keyword arguments). Margins in radians.
_REGISTRY = {
    "softmax": (SoftmaxLoss, {}),
    "norm_softmax": (NormSoftmaxLoss, {}),
    "sphereface": (SphereFaceLoss, {}),
    "cosface": (CosFaceLoss, {}),
    "arcface": (ArcFaceLoss, {}),
    "combined": (CombinedMarginLoss, {}),
    "cm1": (CombinedMarginLoss, {"m1": 1.0, "m2": 0.3, "m3": 0.2}),
    "cm2": (CombinedMarginLoss, {"m1": 0.9, "m2": 0.4, "m3": 0.15}),
}


def available():
    """The names ``get`` accepts, sorted.

    Example:
        >>> "arcface" in available()
    """
    return sorted(_REGISTRY)


def get(name, **kwargs):
    """Build a softmax-family loss by name.

    Names (case-insensitive, ``-`` and ``_`` alike): ``softmax``, ``norm_softmax``,
    ``sphereface``, ``cosface``, ``arcface``, ``combined``, ``cm1`` = ``(1, 0.3, 0.2)`` and
    ``cm2`` = ``(0.9, 0.4, 0.15)``. Keyword arguments override the defaults (e.g.
    ``get("arcface", margin=0.4)``, ``get("cm1", scale=32.0)``). A ``keras.losses.Loss``
    instance is returned unchanged.

    Args:
        name: the loss name, or a loss instance.
        **kwargs: constructor arguments of the loss class.

    Returns:
        a ``keras.losses.Loss`` with a ``logits(y_true, cosine)`` method.

    Example:
        >>> loss = get("arcface", margin=0.5, scale=64.0)

    Reference: arXiv 1801.07698, Table 3 (the losses compared).
    """
    if isinstance(name, keras.losses.Loss):
        return name
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string. Received: name={name!r}")
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(
            f"Unknown loss name; valid names are {available()}. Received: name={name!r}"
        )
    cls, defaults = _REGISTRY[key]
    return cls(**{**defaults, **kwargs})
