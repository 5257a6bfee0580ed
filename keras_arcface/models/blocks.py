"""Small building blocks shared by the backbones.

Every block is a module-level function that takes a tensor and returns a tensor, so the
backbones stay functional ``keras.Model``s whose layer names are stable (the InsightFace
weight import looks layers up by these names).

Conventions that make imported PyTorch weights give the same numbers:

* Batch normalization uses ``epsilon=1e-5`` and ``momentum=0.9`` (PyTorch's defaults,
  ``momentum=0.1`` there counts the other way round).
* A strided convolution with PyTorch's symmetric ``padding=k // 2`` is an explicit
  ``ZeroPadding2D`` followed by a ``"valid"`` convolution: Keras' ``"same"`` pads only the
  bottom/right when the stride is 2 and the input is even, which shifts the sampling grid.
* PReLU slopes are per channel and start at 0.25 (``torch.nn.PReLU``'s default).
"""

import keras

from keras_arcface.models.fast_batch_normalization import FastBatchNormalization
from keras_arcface.models.fast_prelu import FastPReLU
from keras_arcface.models.grouped_conv2d import GroupedConv2D

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
PRELU_INIT = 0.25
KERNEL_INITIALIZER = "he_normal"


def normalize_pixels(images, name):
    """Maps float32 RGB pixels in 0..255 to (x - 127.5) / 127.5, InsightFace's input scaling."""
    return keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name=name)(images)


# Keras' BN with TensorFlow's fused training kernels: on CPU a training step of mbf and of
# iResNet-50 runs about 1.4x faster than with keras.layers.BatchNormalization
# (benchmarks/backbone_throughput.py --bn both). Same weights, config and inference ops.
BATCH_NORM_CLASS = FastBatchNormalization


def batch_norm(x, name, scale=True, dtype=None):
    """Batch normalization with PyTorch's epsilon and momentum."""
    return BATCH_NORM_CLASS(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=scale, name=name, dtype=dtype
    )(x)


def prelu(x, name):
    """Per-channel PReLU (slopes shared over height and width for feature maps).

    ``FastPReLU``: Keras' layer with a hand-written gradient for training steps.
    """
    shared_axes = [1, 2] if len(x.shape) == 4 else None
    return FastPReLU(
        alpha_initializer=keras.initializers.Constant(PRELU_INIT),
        shared_axes=shared_axes,
        name=name,
    )(x)


def conv2d(x, filters, kernel_size, strides, name, groups=1):
    """Bias-free convolution padded like PyTorch's ``padding=kernel_size // 2``."""
    pad = kernel_size // 2
    if pad and strides == 1:
        padding = "same"  # identical to symmetric padding when the stride is 1
    else:
        if pad:
            x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    conv_class = GroupedConv2D if groups > 1 else keras.layers.Conv2D
    return conv_class(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=False,
        kernel_initializer=KERNEL_INITIALIZER,
        name=name,
    )(x)


def depthwise_conv2d(x, kernel_size, strides, name, padding=None):
    """Bias-free depthwise convolution padded like PyTorch (``padding`` defaults to k // 2)."""
    pad = kernel_size // 2 if padding is None else padding
    if pad and strides == 1 and pad == kernel_size // 2:
        mode = "same"
    else:
        if pad:
            x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        mode = "valid"
    return keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding=mode,
        use_bias=False,
        depthwise_initializer=KERNEL_INITIALIZER,
        name=name,
    )(x)
