"""Inter-Loss: push class centers apart (mean pairwise angle between centers)."""

import math

import keras
from keras import ops

from keras_arcface._validation import check_number, check_positive_int
from keras_arcface.losses.margins import safe_angle


def inter_class_angle(kernel, sub_centers=1):
    """Mean angle between distinct class centers, divided by pi (in ``[0, 1]``).

    The centers are the rows of ``kernel`` (the ``NormDense`` / ``PartialFC`` layout
    ``(units * sub_centers, D)``, row ``c * sub_centers + j`` is sub-center ``j`` of class
    ``c``). Pairs of sub-centers of the same class are excluded. Cost: one ``M x M`` Gram
    matrix for ``M`` rows (``O(M^2 D)``), fine up to a few ten thousand classes.

    Args:
        kernel: float tensor ``(M, D)``.
        sub_centers: sub-centers per class. Defaults to 1.

    Returns:
        float32 scalar.

    Example:
        >>> inter_class_angle(head.kernel)

    Reference: arXiv 1801.07698, eq. (6) (its class-uniform form).
    """
    w = ops.cast(kernel, "float32")
    w = w / ops.sqrt(ops.maximum(ops.sum(ops.square(w), axis=1, keepdims=True), 1e-12))
    angles = safe_angle(ops.clip(ops.matmul(w, ops.transpose(w)), -1.0, 1.0))
    owner = ops.arange(ops.shape(w)[0], dtype="int32") // sub_centers
    distinct = ops.expand_dims(owner, 0) != ops.expand_dims(owner, 1)
    count = ops.maximum(ops.sum(ops.cast(distinct, "float32")), 1.0)
    return ops.sum(ops.where(distinct, angles, 0.0)) / count / math.pi


@keras.saving.register_keras_serializable(package="keras_arcface")
class InterLoss:
    """Inter-Loss of the paper as a function of the class-center matrix.

    ``InterLoss()(kernel) = -inter_class_angle(kernel)``: minimising it enlarges the angles
    between class centers (a special case of Minimum Hyperspherical Energy). The paper's eq. (6)
    averages, over the samples of a batch, the angles between the sample's center and every
    other center; on class-balanced data that is this all-pairs mean, which needs no labels.
    To train with it, attach ``InterClassRegularizer`` to the head's kernel.

    Args:
        sub_centers: sub-centers per class (same as the ``NormDense``). Defaults to 1.

    Example:
        >>> value = InterLoss()(model.get_layer("head").kernel)

    Reference: Deng et al., arXiv 1801.07698, eq. (6).
    """

    def __init__(self, sub_centers=1):
        self.sub_centers = check_positive_int("sub_centers", sub_centers)

    def __call__(self, kernel):
        return -inter_class_angle(kernel, self.sub_centers)

    def get_config(self):
        return {"sub_centers": self.sub_centers}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_arcface")
class InterClassRegularizer(keras.regularizers.Regularizer):
    """Kernel regulariser adding ``weight * InterLoss`` (i.e. ``-weight * mean angle / pi``).

    Use it on the class-center matrix: ``NormDense(n, kernel_regularizer=
    InterClassRegularizer(1.0))`` with ``NormSoftmaxLoss`` or ``ArcFaceLoss`` gives the paper's
    NS+Inter / ArcFace+Inter rows. The term is negative (it rewards large angles), so the
    reported total loss is the cross-entropy minus ``weight * mean_angle / pi``.

    Args:
        weight: weight of the term, ``>= 0``. Defaults to 1.0 (the paper's eq. 6).
        sub_centers: sub-centers per class (same as the layer). Defaults to 1.

    Example:
        >>> head = NormDense(1000, kernel_regularizer=InterClassRegularizer(1.0))

    Reference: Deng et al., arXiv 1801.07698, eq. (6).
    """

    def __init__(self, weight=1.0, sub_centers=1):
        self.weight = check_number("weight", weight, low=0.0)
        self.sub_centers = check_positive_int("sub_centers", sub_centers)

    def __call__(self, kernel):
        return -self.weight * inter_class_angle(kernel, self.sub_centers)

    def get_config(self):
        return {"weight": self.weight, "sub_centers": self.sub_centers}
