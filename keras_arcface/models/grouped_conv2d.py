"""GroupedConv2D: a grouped convolution computed as a depthwise convolution plus a sum."""

import contextlib
import threading

import keras
from keras import ops

_NATIVE = threading.local()


@contextlib.contextmanager
def native_grouped_convolution():
    """Traces ``GroupedConv2D`` layers as one grouped convolution op (TensorFlow backend).

    TensorFlow's CPU kernels cannot run a grouped ``Conv2D``, but the TFLite converter and
    tf2onnx turn it into a single grouped convolution (TFLite ``CONV_2D``, ONNX ``Conv``
    with ``group``), which runs about as fast as the ungrouped one there, whereas the
    depthwise-plus-sum form costs a reshape and a reduction over a tensor ``in / groups``
    times the output (a third of MobileFaceNet's onnxruntime time). Graphs traced inside
    this context are for those converters only: do not run them with TensorFlow on CPU.

    Example:
        >>> with native_grouped_convolution():  # doctest: +SKIP
        ...     write_serving_saved_model(model, "/tmp/for_tflite")
    """
    previous = getattr(_NATIVE, "enabled", False)
    _NATIVE.enabled = True
    try:
        yield
    finally:
        _NATIVE.enabled = previous


@keras.saving.register_keras_serializable(package="keras_arcface")
class GroupedConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with ``groups > 1``, fast to train on CPU.

    TensorFlow's CPU kernels have no fast path for grouped convolutions: the backward pass
    of MobileFaceNet's 64-group stem convolution alone took minutes for one batch of 32
    here. This layer keeps ``Conv2D``'s weights and config (kernel
    ``[kh, kw, in / groups, out]``) but computes the same result as a depthwise
    convolution with ``depth_multiplier = out / groups`` followed by a sum over each
    group's input channels, ops every backend runs quickly.

    Args:
        **kwargs: the arguments of ``keras.layers.Conv2D`` (channels-last only).

    Example:
        >>> y = GroupedConv2D(128, 3, padding="same", groups=64, use_bias=False)(x)
    """

    def call(self, inputs):
        if self.groups == 1 or self.data_format != "channels_last":
            return super().call(inputs)
        if getattr(_NATIVE, "enabled", False) and keras.backend.backend() == "tensorflow":
            return self._native_call(inputs)
        kh, kw, per_group_in, out_channels = self.kernel.shape
        per_group_out = out_channels // self.groups
        # [kh, kw, in/g, g, out/g] -> [kh, kw, g, in/g, out/g] -> [kh, kw, in, out/g]
        kernel = ops.reshape(self.kernel, (kh, kw, per_group_in, self.groups, per_group_out))
        kernel = ops.transpose(kernel, (0, 1, 3, 2, 4))
        kernel = ops.reshape(kernel, (kh, kw, self.groups * per_group_in, per_group_out))
        kernel = ops.cast(kernel, inputs.dtype)
        y = ops.depthwise_conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )
        # Depthwise channel c * (out/g) + j, with c = g_index * (in/g) + i: sum over i.
        height, width = ops.shape(y)[1], ops.shape(y)[2]
        y = ops.reshape(y, (-1, height, width, self.groups, per_group_in, per_group_out))
        y = ops.reshape(ops.sum(y, axis=4), (-1, height, width, out_channels))
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def _native_call(self, inputs):
        """One grouped ``tf.nn.conv2d`` (the kernel's input depth is ``in / groups``)."""
        import tensorflow as tf

        y = tf.nn.conv2d(
            inputs,
            tf.cast(self.kernel, inputs.dtype),
            strides=(1, *self.strides, 1),
            padding=self.padding.upper(),
            data_format="NHWC",
            dilations=(1, *self.dilation_rate, 1),
        )
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        if self.activation is not None:
            y = self.activation(y)
        return y
