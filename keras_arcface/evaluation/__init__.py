"""Evaluation: the reference verification protocol, identification (1:N), reports, plots.

Everything here is NumPy; TensorFlow is imported only by the ``eval`` command (through
``keras_arcface.inference``) and matplotlib only by the plotting functions.
"""

from keras_arcface.evaluation.verification import (
    ACCURACY_THRESHOLDS,
    DEFAULT_FAR_TARGETS,
    FAR_THRESHOLDS,
    embed_images,
    evaluate_model,
    evaluate_verification,
    fold_bounds,
    format_far,
    l2_normalize,
    pair_distances,
    roc_curve,
    verification_metrics,
)

__all__ = [
    "ACCURACY_THRESHOLDS",
    "DEFAULT_FAR_TARGETS",
    "FAR_THRESHOLDS",
    "embed_images",
    "evaluate_model",
    "evaluate_verification",
    "fold_bounds",
    "format_far",
    "l2_normalize",
    "pair_distances",
    "roc_curve",
    "verification_metrics",
]
