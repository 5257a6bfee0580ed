"""MobileFaceNet: the mobile backbone with the GDC head.

Layout (Chen et al., MobileFaceNets, arXiv 1804.07573, table 1, as the InsightFace
reference builds it):

* stem: conv3x3(stride 2) -> BN -> PReLU, then a grouped conv3x3 (64 groups) -> BN -> PReLU;
* three stages, each one stride-2 bottleneck followed by residual bottlenecks. A bottleneck
  is conv1x1(expansion) -> BN -> PReLU -> depthwise3x3 -> BN -> PReLU -> conv1x1 -> BN
  (linear projection, no activation), plus the input when shapes match;
* conv1x1(512) -> BN -> PReLU, then the GDC head (depthwise 7x7 -> BN -> FC -> BN).

Stages are data: ``(channels, expansion of the stride-2 block, residual blocks,
expansion of the residual blocks)``. The reference "mbf" is the 128-channel variant
(scale 2); the original paper's network is the 64-channel one.
"""

import keras

from keras_arcface.models.blocks import batch_norm, conv2d, depthwise_conv2d, prelu
from keras_arcface.models.heads import build_embedding_model


def conv_bn(x, filters, kernel_size, strides, name, groups=1, activation=True):
    """Convolution -> BN (-> PReLU); a depthwise convolution when ``groups == filters``."""
    if groups > 1 and groups == filters == x.shape[-1]:
        x = depthwise_conv2d(x, kernel_size, strides, name=f"{name}_conv")
    else:
        x = conv2d(x, filters, kernel_size, strides, name=f"{name}_conv", groups=groups)
    x = batch_norm(x, f"{name}_bn")
    return prelu(x, f"{name}_prelu") if activation else x


def bottleneck_block(x, filters, expansion, strides, name):
    """Inverted residual: expand 1x1 -> depthwise 3x3 -> linear project 1x1 (+ input).

    Args:
        x: input feature map ``[B, H, W, C]``.
        filters: output channels.
        expansion: channels of the expanded (depthwise) part.
        strides: stride of the depthwise convolution.
        name: prefix of the layer names.

    Returns:
        The output feature map; the input is added when ``strides == 1`` and the channels
        agree (a residual bottleneck).
    """
    y = conv_bn(x, expansion, 1, 1, name=f"{name}_expand")
    y = conv_bn(y, expansion, 3, strides, name=f"{name}_dw", groups=expansion)
    y = conv_bn(y, filters, 1, 1, name=f"{name}_project", activation=False)
    if strides == 1 and x.shape[-1] == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def mobilefacenet_features(x, stem_channels, stem_groups, stages, sep_channels=512, prefix=""):
    """The MobileFaceNet body, from normalized pixels to the ``sep_channels`` feature map.

    Args:
        x: normalized images ``[B, H, W, 3]``.
        stem_channels: channels of the two stem convolutions.
        stem_groups: groups of the second stem convolution (64 in both references).
        stages: list of ``(channels, down_expansion, num_residual, residual_expansion)``.
        sep_channels: channels of the final 1x1 convolution. Default 512.
        prefix: prefix of every layer name.

    Returns:
        The last feature map (112x112 input -> 7x7).
    """
    x = conv_bn(x, stem_channels, 3, 2, name=f"{prefix}stem")
    x = conv_bn(x, stem_channels, 3, 1, name=f"{prefix}stem_dw", groups=stem_groups)
    for stage, (channels, down_expansion, num_residual, expansion) in enumerate(stages, 1):
        x = bottleneck_block(x, channels, down_expansion, 2, name=f"{prefix}stage{stage}_block1")
        for block in range(2, num_residual + 2):
            x = bottleneck_block(x, channels, expansion, 1, f"{prefix}stage{stage}_block{block}")
    return conv_bn(x, sep_channels, 1, 1, name=f"{prefix}sep")


def mobilefacenet(
    stages,
    *,
    stem_channels=128,
    stem_groups=64,
    sep_channels=512,
    embedding_dim=512,
    head="GDC",
    dropout=0.0,
    input_shape=(112, 112, 3),
    name="mobilefacenet",
    name_prefix="",
):
    """Builds a MobileFaceNet embedding model (functional ``keras.Model``).

    Most users call ``get_backbone("mbf")`` or ``get_backbone("mobilefacenet")``.

    Args:
        stages: list of ``(channels, down_expansion, num_residual, residual_expansion)``.
        stem_channels: channels of the stem. Default 128 (the reference "mbf").
        stem_groups: groups of the second stem convolution. Default 64.
        sep_channels: channels of the last 1x1 convolution. Default 512.
        embedding_dim: embedding size. Default 512.
        head: "GDC" (default) or "E".
        dropout: dropout rate of the head. Default 0.0.
        input_shape: ``(height, width, 3)``. Default ``(112, 112, 3)``.
        name: model name. Default "mobilefacenet".
        name_prefix: prefix of every layer name. Default "".

    Returns:
        An embedding model: input ``images`` float32 0..255, output float32 ``[None, D]``.

    Example:
        >>> model = mobilefacenet([(64, 128, 4, 128), (128, 256, 6, 256), (128, 512, 2, 256)],
        ...                       stem_channels=64, embedding_dim=128)

    Reference: Chen et al., MobileFaceNets, arXiv 1804.07573.
    """
    stages = _checked_stages(stages, stem_channels, stem_groups)

    def features(x, prefix):
        return mobilefacenet_features(x, stem_channels, stem_groups, stages, sep_channels, prefix)

    return build_embedding_model(
        features,
        head=head,
        embedding_dim=embedding_dim,
        dropout=dropout,
        input_shape=input_shape,
        name=name,
        name_prefix=name_prefix,
    )


def _checked_stages(stages, stem_channels, stem_groups):
    """Validates the stage list and the stem grouping; returns the stages as tuples."""
    stages = [tuple(stage) for stage in stages]
    if not stages or any(len(stage) != 4 or min(stage) < 0 for stage in stages):
        raise ValueError(
            "`stages` must be a non-empty list of (channels, down_expansion, num_residual, "
            f"residual_expansion) tuples of non-negative ints. Received: stages={stages}"
        )
    if stem_channels % stem_groups:
        raise ValueError(
            "`stem_channels` must be divisible by `stem_groups`. "
            f"Received: stem_channels={stem_channels}, stem_groups={stem_groups}"
        )
    return stages
