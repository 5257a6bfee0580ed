"""SphereFace: multiplicative angular margin loss (combined-framework form)."""

import keras

from keras_arcface._validation import check_number
from keras_arcface.losses.margin_loss import MarginLoss
from keras_arcface.losses.margins import combined_margin, combined_margin_derivative


@keras.saving.register_keras_serializable(package="keras_arcface")
class SphereFaceLoss(MarginLoss):
    """Multiplicative angular margin loss: target logit ``s * psi(theta)``.

    ``psi(theta) = (-1)^k cos(margin * theta) - 2k`` with ``k = floor(margin * theta / pi)``
    (SphereFace's monotone extension, valid for non-integer margins), on normalized features
    and weights with scale ``s`` as in the ArcFace paper's combined framework (m1 = 1.35). The
    angle comes from ``margins.safe_angle`` (finite gradient at ``cos = +-1``). Unlike the
    original SphereFace there is no softmax annealing (lambda).

    Args:
        margin: multiplicative angular margin ``m1``, ``[1, 10]``. Defaults to 1.35.
        scale: feature scale ``s``. Defaults to 64.0.
        intra_weight: weight of the Intra-Loss term. Defaults to 0.
        detach_margin: reference no-grad shortcut. Defaults to False.
        **kwargs: ``reduction``, ``name``, ``dtype`` of ``keras.losses.Loss``.

    Example:
        >>> model.compile(optimizer="sgd", loss=SphereFaceLoss(margin=1.35))

    Reference: Liu et al., SphereFace (arXiv 1704.08063); ArcFace paper eq. (4) with m1.
    """

    def __init__(
        self,
        margin=1.35,
        scale=64.0,
        intra_weight=0.0,
        detach_margin=False,
        name="sphereface_loss",
        **kwargs,
    ):
        super().__init__(
            scale=scale, intra_weight=intra_weight, detach_margin=detach_margin, name=name, **kwargs
        )
        self.margin = check_number("margin", margin, low=1.0, high=10.0)

    def margin_cosine(self, cosine):
        return combined_margin(cosine, m1=self.margin, m2=0.0, m3=0.0)

    def margin_cosine_derivative(self, cosine):
        return combined_margin_derivative(cosine, m1=self.margin, m2=0.0, m3=0.0)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin)
        return config
