"""Plain softmax cross-entropy: the paper's Softmax baseline."""

import keras
from keras import ops

from keras_arcface.losses.margins import sparse_softmax_cross_entropy


@keras.saving.register_keras_serializable(package="keras_arcface")
class SoftmaxLoss(keras.losses.Loss):
    """Sparse softmax cross-entropy on unnormalized logits (the paper's "Softmax" row).

    Goes with a plain ``keras.layers.Dense(num_classes)`` head (weights and features not
    normalized, with or without bias), not with ``NormDense``: on cosines without a scale the
    logits are confined to ``[-1, 1]`` and the loss cannot converge. ``logits`` is the identity
    (cast to float32) so that it can be swapped in wherever a margin loss is expected.

    Args:
        **kwargs: ``reduction``, ``name``, ``dtype`` of ``keras.losses.Loss``.

    Example:
        >>> head = keras.layers.Dense(num_classes)
        >>> model.compile(optimizer="sgd", loss=SoftmaxLoss())

    Reference: arXiv 1801.07698, eq. (1) and Table 3 (Softmax).
    """

    def __init__(self, name="softmax_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def logits(self, y_true, y_pred):
        """Return ``y_pred`` as float32 logits (no scale, no margin)."""
        del y_true
        return ops.cast(y_pred, "float32")

    def call(self, y_true, y_pred):
        return sparse_softmax_cross_entropy(y_true, self.logits(y_true, y_pred))
