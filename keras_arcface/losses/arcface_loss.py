"""ArcFace: additive angular margin loss."""

import math

import keras

from keras_arcface._validation import check_number
from keras_arcface.losses.margin_loss import MarginLoss
from keras_arcface.losses.margins import additive_angular_margin, additive_angular_margin_derivative


@keras.saving.register_keras_serializable(package="keras_arcface")
class ArcFaceLoss(MarginLoss):
    """Additive angular margin loss: target logit ``s * cos(theta + margin)``.

    Takes cosine logits (``NormDense`` or ``ArcMarginProduct`` called on embeddings alone) and
    sparse integer labels. Where ``theta + margin > pi`` the reference's monotone fallback
    ``cos - sin(pi - margin) * margin`` is used (see ``margins.additive_angular_margin``);
    ``easy_margin=True`` applies the margin only where ``cos > 0``. The gradient through the
    margin is the true one unless ``detach_margin=True``.

    Args:
        margin: additive angular margin in radians, ``[0, pi)``. Defaults to 0.5 (28.6 deg).
        scale: feature scale ``s``. Defaults to 64.0.
        easy_margin: margin only for positive cosines. Defaults to False.
        intra_weight: weight of the Intra-Loss term (paper's ArcFace+Intra). Defaults to 0.
        detach_margin: reference no-grad shortcut. Defaults to False.
        **kwargs: ``reduction``, ``name``, ``dtype`` of ``keras.losses.Loss``.

    Example:
        >>> model.compile(optimizer="sgd", loss=ArcFaceLoss(margin=0.5, scale=64.0))

    Reference: Deng et al., arXiv 1801.07698, eq. (3).
    """

    def __init__(
        self,
        margin=0.5,
        scale=64.0,
        easy_margin=False,
        intra_weight=0.0,
        detach_margin=False,
        name="arcface_loss",
        **kwargs,
    ):
        super().__init__(
            scale=scale, intra_weight=intra_weight, detach_margin=detach_margin, name=name, **kwargs
        )
        self.margin = check_number("margin", margin, low=0.0, high=math.pi, high_open=True)
        self.easy_margin = bool(easy_margin)

    def margin_cosine(self, cosine):
        return additive_angular_margin(cosine, self.margin, self.easy_margin)

    def margin_cosine_derivative(self, cosine):
        return additive_angular_margin_derivative(cosine, self.margin, self.easy_margin)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, easy_margin=self.easy_margin)
        return config
