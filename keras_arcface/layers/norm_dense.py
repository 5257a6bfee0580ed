"""NormDense: cosine similarity between embeddings and class centres."""

import keras
from keras import ops

from keras_arcface._math import l2_normalize_ops as l2_normalize
from keras_arcface._validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_arcface")
class NormDense(keras.layers.Layer):
    """Cosine logits: L2-normalised inputs times L2-normalised class centres, no bias.

    Output ``[B, units]`` float32 cosines in ``[-1, 1]``, also under ``mixed_float16`` /
    ``mixed_bfloat16``: the layer defaults to a float32 dtype policy, keeps its kernel in float32
    (no autocast), and normalises in float32. With ``sub_centers=k`` each class has ``k``
    centres (kernel columns ``c*k .. c*k + k-1``) and the cosine of a class is the max over its
    centres (sub-center ArcFace). Feed the output to a margin loss such as ``ArcFaceLoss``.

    Args:
        units: number of classes, ``>= 1``.
        sub_centers: centres per class, ``>= 1``. Defaults to 1.
        kernel_initializer: initializer of the ``(D, units * sub_centers)`` kernel.
            Defaults to ``"glorot_uniform"``.
        kernel_regularizer: optional regulariser of the kernel, e.g.
            ``keras_arcface.losses.InterClassRegularizer``. Defaults to None.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Example:
        >>> cosines = NormDense(1000)(embeddings)  # [B, 1000] in [-1, 1]

    Reference: Deng et al., arXiv 1801.07698, section 2.1; sub-center ArcFace, ECCV 2020.
    """

    def __init__(
        self,
        units,
        sub_centers=1,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "float32"  # the head stays float32 under mixed policies
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.sub_centers = check_positive_int("sub_centers", sub_centers)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _embedding_shape(self, input_shape):
        return input_shape

    def build(self, input_shape):
        input_shape = self._embedding_shape(input_shape)
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "NormDense expects embeddings of shape [batch, dim] with a known dim. "
                f"Received: input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.units * self.sub_centers),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            dtype="float32",
            autocast=False,
        )

    def cosine(self, embeddings):
        """Float32 cosines ``[B, units]`` of ``embeddings`` ``[B, D]`` (max over sub-centres)."""
        cos = ops.matmul(l2_normalize(embeddings, axis=-1), l2_normalize(self.kernel, axis=0))
        if self.sub_centers > 1:
            cos = ops.max(ops.reshape(cos, (-1, self.units, self.sub_centers)), axis=-1)
        return ops.clip(cos, -1.0, 1.0)

    def call(self, inputs):
        return self.cosine(inputs)

    def compute_output_shape(self, input_shape):
        return (self._embedding_shape(input_shape)[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            sub_centers=self.sub_centers,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config
