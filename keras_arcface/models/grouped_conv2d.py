"""GroupedConv2D: a grouped convolution computed as a depthwise convolution plus a sum."""

import keras
from keras import ops


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
