"""iResNet: the "improved" ResNet that ArcFace's reference results use.

Layout (Deng et al., arXiv 1801.07698, section 3.2, and the InsightFace reference):

* stem: conv3x3(64, stride 1) -> BN -> PReLU, so the 112x112 input keeps full resolution
  until the first stage;
* four stages of widths 64, 128, 256, 512, each starting with stride 2 (112 -> 7);
* block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, added to the input
  (through conv1x1(stride) -> BN when the shape changes); no activation after the add;
* head: "E" (BN -> Dropout -> Flatten -> FC(512) -> BN) by default.

Layer names (``stem_conv``, ``stage2_block3_conv1``, ``head_fc`` ...) are part of the
interface: ``load_insightface_weights`` maps the PyTorch tensors onto them.
"""

import keras

from keras_arcface.models.blocks import batch_norm, conv2d, prelu
from keras_arcface.models.heads import build_embedding_model

IRESNET_DEPTHS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}


def ibasic_block(x, filters, strides, name):
    """One iResNet block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(strides) -> BN (+ shortcut).

    Args:
        x: input feature map ``[B, H, W, C]``.
        filters: output channels.
        strides: stride of the second convolution (and of the shortcut).
        name: prefix of the layer names.

    Returns:
        The output feature map ``[B, H / strides, W / strides, filters]``.
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv2d(x, filters, 1, strides, name=f"{name}_downsample_conv")
        shortcut = batch_norm(shortcut, f"{name}_downsample_bn")
    y = batch_norm(x, f"{name}_bn1")
    y = conv2d(y, filters, 3, 1, name=f"{name}_conv1")
    y = batch_norm(y, f"{name}_bn2")
    y = prelu(y, f"{name}_prelu")
    y = conv2d(y, filters, 3, strides, name=f"{name}_conv2")
    y = batch_norm(y, f"{name}_bn3")
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def iresnet_features(x, depths, widths, stem_channels=64, stem_stride=1, strides=None, prefix=""):
    """The iResNet body: stem and stages, from normalized pixels to the last feature map.

    Args:
        x: normalized images ``[B, H, W, 3]``.
        depths: blocks per stage, e.g. ``(3, 4, 14, 3)`` for iResNet-50.
        widths: channels per stage, e.g. ``(64, 128, 256, 512)``.
        stem_channels: channels of the stem convolution. Default 64.
        stem_stride: stride of the stem convolution. Default 1 (the reference).
        strides: stride of each stage's first block. Default 2 for every stage.
        prefix: prefix of every layer name.

    Returns:
        The last feature map.
    """
    strides = (2,) * len(depths) if strides is None else tuple(strides)
    x = conv2d(x, stem_channels, 3, stem_stride, name=f"{prefix}stem_conv")
    x = batch_norm(x, f"{prefix}stem_bn")
    x = prelu(x, f"{prefix}stem_prelu")
    for stage, (depth, width, stride) in enumerate(zip(depths, widths, strides), start=1):
        for block in range(1, depth + 1):
            x = ibasic_block(
                x,
                width,
                stride if block == 1 else 1,
                name=f"{prefix}stage{stage}_block{block}",
            )
    return x


def iresnet(
    depths,
    widths=(64, 128, 256, 512),
    *,
    stem_channels=64,
    stem_stride=1,
    strides=None,
    embedding_dim=512,
    head="E",
    dropout=0.0,
    input_shape=(112, 112, 3),
    name="iresnet",
    name_prefix="",
):
    """Builds an iResNet embedding model (functional ``keras.Model``).

    Most users call ``get_backbone("r50")``; this function takes the structure directly.

    Args:
        depths: blocks per stage, e.g. ``(3, 4, 14, 3)`` (see ``IRESNET_DEPTHS``).
        widths: channels per stage. Default ``(64, 128, 256, 512)``.
        stem_channels: channels of the stem convolution. Default 64.
        stem_stride: stride of the stem convolution. Default 1.
        strides: stride of each stage's first block. Default 2 everywhere.
        embedding_dim: embedding size. Default 512.
        head: "E" (default) or "GDC".
        dropout: dropout rate of the head. Default 0.0.
        input_shape: ``(height, width, 3)``. Default ``(112, 112, 3)``.
        name: model name. Default "iresnet".
        name_prefix: prefix of every layer name. Default "".

    Returns:
        An embedding model: input ``images`` float32 0..255, output float32 ``[None, D]``.

    Example:
        >>> model = iresnet((2, 2, 2, 2), embedding_dim=128)  # iResNet-18

    Reference: Deng et al., ArcFace, arXiv 1801.07698, section 3.2; Duta et al.,
    Improved Residual Networks, arXiv 2004.04989.
    """
    depths, widths = tuple(depths), tuple(widths)
    if not depths or len(depths) != len(widths) or min(depths) < 1:
        raise ValueError(
            "`depths` and `widths` must be equally long, non-empty and depths >= 1. "
            f"Received: depths={depths}, widths={widths}"
        )

    def features(x, prefix):
        return iresnet_features(x, depths, widths, stem_channels, stem_stride, strides, prefix)

    return build_embedding_model(
        features,
        head=head,
        embedding_dim=embedding_dim,
        dropout=dropout,
        input_shape=input_shape,
        name=name,
        name_prefix=name_prefix,
    )
