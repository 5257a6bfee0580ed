"""ArcMarginProduct: a NormDense head that can also apply the ArcFace margin itself."""

import functools
import math

import keras

from keras_arcface._validation import check_number
from keras_arcface.layers.norm_dense import NormDense
from keras_arcface.losses.margins import (
    additive_angular_margin,
    additive_angular_margin_derivative,
    margin_logits,
)


@keras.saving.register_keras_serializable(package="keras_arcface")
class ArcMarginProduct(NormDense):
    """ArcFace classification head usable in both Keras model styles.

    - Called on ``[embeddings, labels]`` (functional models) it returns the scaled,
      margin-adjusted float32 logits ``s * cos(theta + margin)`` on the target column and
      ``s * cos(theta_j)`` elsewhere: train with a plain
      ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``.
    - Called on embeddings alone (``model.add(ArcMarginProduct(n))`` in a ``Sequential``) it
      returns float32 cosines ``[B, units]`` and ``keras_arcface.losses.ArcFaceLoss`` (same
      margin, scale and easy_margin) applies the margin. Both give the same loss value.

    The margin math is ``margins.additive_angular_margin`` (reference fallback beyond
    ``theta + margin > pi``, true gradient) computed in float32.

    Args:
        units: number of classes, ``>= 1``.
        margin: additive angular margin in radians, ``[0, pi)``. Defaults to 0.5.
        scale: feature scale ``s``, ``> 0``. Defaults to 64.0.
        easy_margin: margin only where ``cos > 0``. Defaults to False.
        sub_centers: centers per class (sub-center ArcFace). Defaults to 1.
        **kwargs: ``NormDense`` arguments (``kernel_initializer``, ``kernel_regularizer``) and
            ``keras.layers.Layer`` arguments.

    Example:
        >>> logits = ArcMarginProduct(1000)([embeddings, labels])
        >>> model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    Reference: Deng et al., arXiv 1801.07698, eq. (3).
    """

    def __init__(self, units, margin=0.5, scale=64.0, easy_margin=False, sub_centers=1, **kwargs):
        super().__init__(units, sub_centers=sub_centers, **kwargs)
        self.margin = check_number("margin", margin, low=0.0, high=math.pi, high_open=True)
        self.scale = check_number("scale", scale, low=0.0, low_open=True)
        self.easy_margin = bool(easy_margin)

    def _embedding_shape(self, input_shape):
        # A list of shapes means the [embeddings, labels] form.
        if input_shape and isinstance(input_shape[0], list | tuple):
            if len(input_shape) != 2:
                raise ValueError(
                    "ArcMarginProduct takes embeddings or [embeddings, labels]. "
                    f"Received: input_shape={input_shape}"
                )
            return tuple(input_shape[0])
        return tuple(input_shape)

    def call(self, inputs):
        if isinstance(inputs, list | tuple):
            if len(inputs) != 2:
                raise ValueError(
                    "ArcMarginProduct takes embeddings or [embeddings, labels]. "
                    f"Received: inputs with {len(inputs)} elements"
                )
            embeddings, labels = inputs
            margin = {"margin": self.margin, "easy_margin": self.easy_margin}
            return margin_logits(
                labels,
                self.cosine(embeddings),
                functools.partial(additive_angular_margin, **margin),
                scale=self.scale,
                target_derivative_fn=functools.partial(
                    additive_angular_margin_derivative, **margin
                ),
            )
        return self.cosine(inputs)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin, scale=self.scale, easy_margin=self.easy_margin)
        return config
