"""Combined margin loss ``cos(m1 * theta + m2) - m3`` (the paper's CM1, CM2)."""

import math

import keras

from keras_arcface._validation import check_number
from keras_arcface.losses.margin_loss import MarginLoss
from keras_arcface.losses.margins import combined_margin, combined_margin_derivative


@keras.saving.register_keras_serializable(package="keras_arcface")
class CombinedMarginLoss(MarginLoss):
    """Combined margin loss: target logit ``s * (cos(m1 * theta + m2) - m3)``.

    All three margins are applied together (some references silently drop ``m1``/``m2`` when
    ``m3 > 0``). Beyond ``m1 * theta + m2 > pi`` the monotone, continuous extension
    ``(-1)^k cos(phi) - 2k`` is used (see ``margins.combined_margin``). The paper's CM1 is
    ``(1, 0.3, 0.2)`` and CM2 ``(0.9, 0.4, 0.15)``; ``(1, 0.5, 0)`` is ArcFace,
    ``(1, 0, 0.35)`` CosFace and ``(1.35, 0, 0)`` SphereFace.

    Args:
        m1: multiplicative angular margin, ``(0, 10]``. Defaults to 1.0.
        m2: additive angular margin in radians, ``(-pi, pi)``. Defaults to 0.5.
        m3: additive cosine margin, ``[-2, 2]``. Defaults to 0.0.
        scale: feature scale ``s``. Defaults to 64.0.
        intra_weight: weight of the Intra-Loss term. Defaults to 0.
        detach_margin: reference no-grad shortcut. Defaults to False.
        **kwargs: ``reduction``, ``name``, ``dtype`` of ``keras.losses.Loss``.

    Example:
        >>> cm1 = CombinedMarginLoss(m1=1.0, m2=0.3, m3=0.2)

    Reference: Deng et al., arXiv 1801.07698, eq. (4) and Table 1.
    """

    def __init__(
        self,
        m1=1.0,
        m2=0.5,
        m3=0.0,
        scale=64.0,
        intra_weight=0.0,
        detach_margin=False,
        name="combined_margin_loss",
        **kwargs,
    ):
        super().__init__(
            scale=scale, intra_weight=intra_weight, detach_margin=detach_margin, name=name, **kwargs
        )
        self.m1 = check_number("m1", m1, low=0.0, high=10.0, low_open=True)
        self.m2 = check_number("m2", m2, low=-math.pi, high=math.pi, low_open=True, high_open=True)
        self.m3 = check_number("m3", m3, low=-2.0, high=2.0)

    def margin_cosine(self, cosine):
        return combined_margin(cosine, self.m1, self.m2, self.m3)

    def margin_cosine_derivative(self, cosine):
        return combined_margin_derivative(cosine, self.m1, self.m2, self.m3)

    def get_config(self):
        config = super().get_config()
        config.update(m1=self.m1, m2=self.m2, m3=self.m3)
        return config
