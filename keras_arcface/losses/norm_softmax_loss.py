"""Norm-Softmax: softmax on scaled cosines, no margin."""

import keras

from keras_arcface.losses.margin_loss import MarginLoss
from keras_arcface.losses.margins import clip_cosine


@keras.saving.register_keras_serializable(package="keras_arcface")
class NormSoftmaxLoss(MarginLoss):
    """Normalized softmax: cross-entropy on ``s * cos(theta_j)`` (the paper's "NS" rows).

    The zero-margin member of the family and the base of the paper's NS+Intra, NS+Inter and
    NS+Triplet rows.

    Args:
        scale: feature scale ``s``. Defaults to 64.0.
        intra_weight: weight of the Intra-Loss term. Defaults to 0.
        **kwargs: ``reduction``, ``name``, ``dtype`` of ``keras.losses.Loss`` (and
            ``detach_margin``, which has no effect: there is no margin).

    Example:
        >>> model.compile(optimizer="sgd", loss=NormSoftmaxLoss(scale=64.0))

    Reference: arXiv 1801.07698, section 2.2 (feature and weight normalization).
    """

    def __init__(self, scale=64.0, intra_weight=0.0, name="norm_softmax_loss", **kwargs):
        super().__init__(scale=scale, intra_weight=intra_weight, name=name, **kwargs)

    def logits(self, y_true, y_pred):
        # No target column to edit: skip the gather and the scatter.
        del y_true
        return self.scale * clip_cosine(y_pred)
