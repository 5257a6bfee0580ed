"""NormDense: cosine similarity between embeddings and class centers."""

import keras
import numpy as np
from keras import ops

from keras_arcface._deprecation import warn_renamed
from keras_arcface._math import l2_normalize_ops as l2_normalize
from keras_arcface._validation import check_positive_int

#: The class-center layout of every classifier head: one center per row, ``[classes, D]``.
#: Rows make a sampled subset a contiguous ``gather`` along axis 0 (its gradient is a
#: ``tf.IndexedSlices`` of those rows, which the sparse optimiser kernels update in place),
#: a class shard a contiguous block of rows, and the full matmul costs the same either way
#: (``matmul(embeddings, centers, transpose_b=True)``).
CENTER_LAYOUT = "classes_by_dim"
_LEGACY_LAYOUT = "dim_by_classes"


def __getattr__(name):
    if name == "CENTRE_LAYOUT":  # the spelling of the first version of this constant
        warn_renamed("CENTRE_LAYOUT", "CENTER_LAYOUT")
        return CENTER_LAYOUT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@keras.saving.register_keras_serializable(package="keras_arcface")
class NormDense(keras.layers.Layer):
    """Cosine logits: L2-normalized inputs times L2-normalized class centers, no bias.

    Output ``[B, units]`` float32 cosines in ``[-1, 1]``, also under ``mixed_float16`` /
    ``mixed_bfloat16``: the layer defaults to a float32 dtype policy, keeps its kernel in float32
    (no autocast), and normalizes in float32. With ``sub_centers=k`` each class has ``k``
    centers (kernel rows ``c*k .. c*k + k-1``) and the cosine of a class is the max over its
    centers (sub-center ArcFace). Feed the output to a margin loss such as ``ArcFaceLoss``.

    The kernel holds one class center per **row**, ``(units * sub_centers, D)``: the layout of
    ``PartialFC`` (and of the PyTorch reference's ``weight``), see ``CENTER_LAYOUT``. Files
    saved by older versions with the ``(D, units)`` kernel load (the kernel is transposed on
    load).

    Args:
        units: number of classes, ``>= 1``.
        sub_centers: centers per class, ``>= 1``. Defaults to 1.
        kernel_initializer: initializer of the ``(units * sub_centers, D)`` kernel.
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
            shape=(self.units * self.sub_centers, input_shape[-1]),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            dtype="float32",
            autocast=False,
        )

    def cosine(self, embeddings):
        """Float32 cosines ``[B, units]`` of ``embeddings`` ``[B, D]`` (max over sub-centers)."""
        centers = ops.transpose(l2_normalize(self.kernel, axis=-1))
        cos = ops.matmul(l2_normalize(embeddings, axis=-1), centers)
        if self.sub_centers > 1:
            cos = ops.max(ops.reshape(cos, (-1, self.units, self.sub_centers)), axis=-1)
        return ops.clip(cos, -1.0, 1.0)

    def call(self, inputs):
        return self.cosine(inputs)

    def compute_output_shape(self, input_shape):
        return (self._embedding_shape(input_shape)[0], self.units)

    def load_own_variables(self, store):
        """Loads the kernel, transposing one saved in the old ``(D, units)`` layout."""
        arrays = {key: np.asarray(store[key]) for key in store.keys()}
        if "0" in arrays and _is_legacy_kernel(self, arrays["0"].shape):
            arrays["0"] = np.transpose(arrays["0"])
        super().load_own_variables(arrays)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            sub_centers=self.sub_centers,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            kernel_layout=CENTER_LAYOUT,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Configs written before the row layout have no kernel_layout key.
        layout = config.pop("kernel_layout", _LEGACY_LAYOUT)
        if layout not in (CENTER_LAYOUT, _LEGACY_LAYOUT):
            raise ValueError(
                f"kernel_layout must be {CENTER_LAYOUT!r} or {_LEGACY_LAYOUT!r}. "
                f"Received: kernel_layout={layout!r}"
            )
        layer = cls(**config)
        layer._saved_layout = layout
        return layer


def _is_legacy_kernel(layer, stored_shape):
    """Whether a saved kernel is in the old ``(D, units)`` layout and must be transposed."""
    want = tuple(layer.kernel.shape)
    if stored_shape == want[::-1] and stored_shape != want:
        return True
    # A square kernel is ambiguous by shape: the saved config says which layout it is.
    return stored_shape == want and getattr(layer, "_saved_layout", CENTER_LAYOUT) != CENTER_LAYOUT
