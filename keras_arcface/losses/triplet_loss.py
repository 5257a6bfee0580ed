"""Angular triplet loss on L2-normalized embeddings (paper section 2.3)."""

import math

import keras
from keras import ops

from keras_arcface._validation import check_choice, check_number
from keras_arcface.losses.margins import safe_angle

MINING = ("batch_hard", "semi_hard")


def pairwise_angles(embeddings):
    """Angles (radians) between all L2-normalized rows of ``embeddings`` ``[B, D]`` -> ``[B, B]``.

    Example:
        >>> pairwise_angles(ops.convert_to_tensor([[1.0, 0.0], [0.0, 2.0]]))  # pi/2 off-diag
    """
    x = ops.cast(embeddings, "float32")
    x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
    return safe_angle(ops.clip(ops.matmul(x, ops.transpose(x)), -1.0, 1.0))


def angular_triplet_loss(labels, embeddings, margin=0.35, mining="batch_hard"):
    """Mean of ``relu(theta_ap - theta_an + margin)`` over mined triplets.

    ``batch_hard``: per anchor, the largest positive angle and the smallest negative angle;
    averaged over anchors that have both a positive and a negative. ``semi_hard`` (FaceNet): for
    every anchor-positive pair, the smallest negative angle still larger than ``theta_ap``, or
    the largest negative angle when none is; averaged over pairs whose anchor has a negative.
    Returns 0 when the batch holds no valid triplet. Semi-hard mining builds a ``B x B x B``
    tensor (fine up to batch ~256).

    Args:
        labels: int class ids ``[B]`` or ``[B, 1]``.
        embeddings: float ``[B, D]`` (normalized here, in float32).
        margin: angular margin in radians. Defaults to 0.35.
        mining: ``"batch_hard"`` or ``"semi_hard"``. Defaults to ``"batch_hard"``.

    Returns:
        float32 scalar.

    Example:
        >>> angular_triplet_loss(labels, embeddings, margin=0.35)

    Reference: arXiv 1801.07698, section 2.3 (Triplet-loss with angular margin);
    Schroff et al., FaceNet (semi-hard mining).
    """
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    theta = pairwise_angles(embeddings)
    same = ops.expand_dims(labels, 0) == ops.expand_dims(labels, 1)
    eye = ops.eye(ops.shape(labels)[0], dtype="bool")
    positive = ops.logical_and(same, ops.logical_not(eye))
    negative = ops.logical_not(same)
    has_negative = ops.any(negative, axis=1)
    big = 2.0 * math.pi  # larger than any angle
    easiest_negative = ops.max(ops.where(negative, theta, -big), axis=1)
    if mining == "batch_hard":
        hardest_positive = ops.max(ops.where(positive, theta, -big), axis=1)
        hardest_negative = ops.min(ops.where(negative, theta, big), axis=1)
        valid = ops.logical_and(ops.any(positive, axis=1), has_negative)
        per = ops.relu(hardest_positive - hardest_negative + margin)
    else:
        theta_ap = ops.expand_dims(theta, 2)
        theta_an = ops.expand_dims(theta, 1)
        harder = ops.logical_and(ops.expand_dims(negative, 1), theta_an > theta_ap)
        semi = ops.min(ops.where(harder, theta_an, big), axis=2)
        chosen = ops.where(ops.any(harder, axis=2), semi, ops.expand_dims(easiest_negative, 1))
        valid = ops.logical_and(positive, ops.expand_dims(has_negative, 1))
        per = ops.relu(theta - chosen + margin)
    count = ops.sum(ops.cast(valid, "float32"))
    return ops.sum(ops.where(valid, per, 0.0)) / ops.maximum(count, 1.0)


@keras.saving.register_keras_serializable(package="keras_arcface")
class TripletLoss(keras.losses.Loss):
    """Angular triplet loss: ``y_true`` int labels ``[B]``, ``y_pred`` embeddings ``[B, D]``.

    The margin is on the angle between L2-normalized features: a triplet is satisfied when
    ``theta(anchor, negative) >= theta(anchor, positive) + margin``. The loss is one scalar for
    the batch (the mean over mined triplets), so ``sample_weight`` is not supported. Batches
    need several images per identity (e.g. 8 identities x 4 images) for triplets to exist.
    Combine it with ArcFace through a two-output model (see docs/losses.md).

    Args:
        margin: angular margin in radians, ``[0, pi]``. Defaults to 0.35 (the paper's row).
        mining: ``"batch_hard"`` or ``"semi_hard"``. Defaults to ``"batch_hard"``.
        **kwargs: ``reduction``, ``name``, ``dtype`` of ``keras.losses.Loss``.

    Example:
        >>> model.compile(loss={"cosines": ArcFaceLoss(), "embeddings": TripletLoss(0.35)})

    Reference: Deng et al., arXiv 1801.07698, section 2.3 and Table 3 (Triplet 0.35).
    """

    def __init__(self, margin=0.35, mining="batch_hard", name="triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = check_number("margin", margin, low=0.0, high=math.pi)
        self.mining = check_choice("mining", mining, MINING)

    def call(self, y_true, y_pred):
        return angular_triplet_loss(y_true, y_pred, self.margin, self.mining)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, mining=self.mining)
        return config
