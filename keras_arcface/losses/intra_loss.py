"""Intra-Loss: mean angle between each sample and its own class center."""

import keras

from keras_arcface.losses.margin_loss import intra_angle


@keras.saving.register_keras_serializable(package="keras_arcface")
class IntraLoss(keras.losses.Loss):
    """Intra-Loss of the paper: ``mean(theta_y) / pi`` from cosine logits (section 2.3, eq. 5).

    Shrinks the angle between each feature and its own class center. Standalone it collapses
    nothing useful (it ignores other classes); add it to a softmax loss. The simplest way is
    the ``intra_weight`` argument of every margin loss (``ArcFaceLoss(intra_weight=1.0)`` is the
    paper's ArcFace+Intra; ``NormSoftmaxLoss(intra_weight=1.0)`` its NS+Intra).

    Args:
        **kwargs: ``reduction``, ``name``, ``dtype`` of ``keras.losses.Loss``.

    Example:
        >>> IntraLoss()(labels, cosines)  # y_pred: cosines [B, N] from NormDense

    Reference: Deng et al., arXiv 1801.07698, eq. (5).
    """

    def __init__(self, name="intra_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return intra_angle(y_true, y_pred)
