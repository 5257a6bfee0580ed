"""CosFace: additive cosine margin loss."""

import keras

from keras_arcface._validation import check_number
from keras_arcface.losses.margin_loss import MarginLoss
from keras_arcface.losses.margins import additive_cosine_margin, unit_derivative


@keras.saving.register_keras_serializable(package="keras_arcface")
class CosFaceLoss(MarginLoss):
    """Additive cosine margin loss: target logit ``s * (cos(theta) - margin)``.

    Args:
        margin: cosine margin (an offset on the cosine, not an angle), ``[0, 2]``.
            Defaults to 0.35.
        scale: feature scale ``s``. Defaults to 64.0.
        intra_weight: weight of the Intra-Loss term. Defaults to 0.
        detach_margin: reference no-grad shortcut (identical gradient here: the margin is a
            constant). Defaults to False.
        **kwargs: ``reduction``, ``name``, ``dtype`` of ``keras.losses.Loss``.

    Example:
        >>> model.compile(optimizer="sgd", loss=CosFaceLoss(margin=0.35))

    Reference: Wang et al., arXiv 1801.09414; ArcFace paper eq. (4) with m3.
    """

    def __init__(
        self,
        margin=0.35,
        scale=64.0,
        intra_weight=0.0,
        detach_margin=False,
        name="cosface_loss",
        **kwargs,
    ):
        super().__init__(
            scale=scale, intra_weight=intra_weight, detach_margin=detach_margin, name=name, **kwargs
        )
        self.margin = check_number("margin", margin, low=0.0, high=2.0)

    def margin_cosine(self, cosine):
        return additive_cosine_margin(cosine, self.margin)

    def margin_cosine_derivative(self, cosine):
        return unit_derivative(cosine, self.margin)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin)
        return config
