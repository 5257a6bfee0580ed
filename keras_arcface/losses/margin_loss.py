"""Base class shared by every softmax-family loss on cosine logits."""

import math

import keras
from keras import ops

from keras_arcface._deprecation import warn_renamed
from keras_arcface._validation import check_number
from keras_arcface.losses.margins import (
    margin_logits,
    safe_angle,
    sparse_softmax_cross_entropy,
    target_cosine,
    unit_derivative,
)


class MarginLoss(keras.losses.Loss):
    """Softmax cross-entropy on scaled, margin-adjusted cosine logits.

    Subclasses define the margin transform ``margin_cosine(cosine)`` on the target column
    (the margin-adjusted, unscaled target cosine, e.g. ``cos(theta + m)`` for ArcFace);
    this class keeps the two other seams: ``logits(y_true, y_pred)`` (scale + margin, float32)
    and ``call`` (sparse cross-entropy, plus the optional Intra-Loss term). ``y_true`` holds
    integer class ids of shape ``[B]`` or ``[B, 1]`` (Keras hands them over as float32, exact
    below 2**24 classes); ``y_pred`` holds cosines ``[B, N]``, as from ``NormDense``.

    Args:
        scale: the feature scale ``s`` (radius of the hypersphere), ``> 0``. Defaults to 64.0.
        intra_weight: weight of the paper's Intra-Loss term ``mean(theta_y) / pi`` added to the
            cross-entropy (section 2.3, eq. 5; 1.0 gives the paper's "+Intra"). Defaults to 0.
        detach_margin: if True the margin shifts the target logit's value but not its gradient
            (the PyTorch reference's no-grad shortcut). Defaults to False: the true gradient.
        reduction: Keras loss reduction. Defaults to ``"sum_over_batch_size"``.
        name: loss name.
        dtype: loss dtype; keep float32 (the default) under mixed precision.
    """

    def __init__(
        self,
        scale=64.0,
        intra_weight=0.0,
        detach_margin=False,
        reduction="sum_over_batch_size",
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.scale = check_number("scale", scale, low=0.0, low_open=True)
        self.intra_weight = check_number("intra_weight", intra_weight, low=0.0)
        self.detach_margin = bool(detach_margin)

    def margin_cosine(self, cosine):
        """The margin transform of target cosines: unscaled float32 cosines. Identity here.

        ``logits`` multiplies the result by ``scale``; ArcFace gives ``cos(theta + m)``,
        CosFace ``cos(theta) - m``.
        """
        return ops.cast(cosine, "float32")

    def margin_cosine_derivative(self, cosine):
        """``d margin_cosine / d cosine``, or None to let autodiff derive it. Ones here."""
        return unit_derivative(cosine)

    def target_logit(self, cosine):
        """Deprecated name of :meth:`margin_cosine` (it never was a scaled logit)."""
        warn_renamed("MarginLoss.target_logit", "MarginLoss.margin_cosine")
        return self.margin_cosine(cosine)

    def target_logit_derivative(self, cosine):
        """Deprecated name of :meth:`margin_cosine_derivative`."""
        warn_renamed("MarginLoss.target_logit_derivative", "MarginLoss.margin_cosine_derivative")
        return self.margin_cosine_derivative(cosine)

    def _margin_functions(self):
        # A subclass written against the old names overrides target_logit; keep honouring it.
        cls = type(self)
        if cls.target_logit is MarginLoss.target_logit:
            return self.margin_cosine, self.margin_cosine_derivative
        warn_renamed(f"{cls.__name__}.target_logit", f"{cls.__name__}.margin_cosine", 4)
        if cls.target_logit_derivative is MarginLoss.target_logit_derivative:
            return self.target_logit, self.margin_cosine_derivative
        return self.target_logit, self.target_logit_derivative

    def logits(self, y_true, y_pred):
        """Scaled, margin-adjusted float32 logits ``[B, N]`` from labels and cosines.

        Args:
            y_true: int class ids ``[B]`` or ``[B, 1]`` (indices into the columns of y_pred).
            y_pred: cosines ``[B, N]``, any float dtype.
        """
        margin_fn, derivative_fn = self._margin_functions()
        return margin_logits(
            y_true,
            y_pred,
            margin_fn,
            scale=self.scale,
            detach_margin=self.detach_margin,
            target_derivative_fn=derivative_fn,
        )

    def call(self, y_true, y_pred):
        loss = sparse_softmax_cross_entropy(y_true, self.logits(y_true, y_pred))
        if self.intra_weight:
            loss = loss + self.intra_weight * intra_angle(y_true, y_pred)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            scale=self.scale, intra_weight=self.intra_weight, detach_margin=self.detach_margin
        )
        return config


def intra_angle(y_true, y_pred):
    """Per-sample target angle divided by pi: the paper's Intra-Loss term (eq. 5).

    Args:
        y_true: int class ids ``[B]`` or ``[B, 1]``.
        y_pred: cosines ``[B, N]``.

    Returns:
        float32 ``[B]`` values in ``[0, 1]``.

    Example:
        >>> intra_angle([0], ops.convert_to_tensor([[0.0, 1.0]]))  # [0.5]
    """
    return safe_angle(ops.clip(target_cosine(y_true, ops.cast(y_pred, "float32")), -1, 1)) / (
        math.pi
    )
