"""Embedding heads: the paper's "E" head and MobileFaceNet's GDC head.

Both heads take the last feature map ``[B, H, W, C]`` of a backbone and return the raw
(not L2-normalized) embedding ``[B, embedding_dim]``. The fully connected layer and the
final batch normalization always compute in float32 (as the reference casts to float32
before its ``fc``), so under a mixed policy the embedding is float32.
"""

import keras

from keras_arcface.models.blocks import batch_norm, depthwise_conv2d, normalize_pixels

HEADS = ("E", "GDC")


def validate_head(head):
    """Returns ``head`` if it is a known head name, else raises ``ValueError``."""
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {list(HEADS)}. Received: head={head!r}")
    return head


def embedding_head_e(x, embedding_dim, dropout=0.0, name="head"):
    """The paper's "E" head: BN -> Dropout -> Flatten -> FC(embedding_dim) -> BN.

    The last batch normalization has no learnable scale (its gamma is fixed at 1.0, as in
    the reference implementations), so it only centers and whitens the embedding.

    Args:
        x: feature map ``[B, H, W, C]``.
        embedding_dim: size of the embedding.
        dropout: dropout rate between the BN and the FC. Default 0.0 (the PyTorch
            reference); the paper's MXNet recipe used 0.4.
        name: prefix of the layer names.

    Returns:
        The float32 embedding ``[B, embedding_dim]``.

    Example:
        >>> features = keras.Input((7, 7, 512))
        >>> embedding = embedding_head_e(features, 512)

    Reference: Deng et al., ArcFace, arXiv 1801.07698, section 3.2 (option "E").
    """
    x = batch_norm(x, f"{name}_bn")
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(
        embedding_dim, kernel_initializer="glorot_normal", name=f"{name}_fc", dtype="float32"
    )(x)
    return batch_norm(x, f"{name}_features", scale=False, dtype="float32")


def embedding_head_gdc(x, embedding_dim, dropout=0.0, name="head"):
    """The GDC head: global depthwise conv -> BN -> Dropout -> FC(embedding_dim) -> BN.

    The depthwise convolution's kernel covers the whole feature map, so every channel
    learns its own spatial weighting instead of the uniform one of global average pooling.

    Args:
        x: feature map ``[B, H, W, C]``.
        embedding_dim: size of the embedding.
        dropout: dropout rate before the FC. Default 0.0 (the reference has none).
        name: prefix of the layer names.

    Returns:
        The float32 embedding ``[B, embedding_dim]``.

    Example:
        >>> features = keras.Input((7, 7, 512))
        >>> embedding = embedding_head_gdc(features, 128)

    Reference: Chen et al., MobileFaceNets, arXiv 1804.07573, section 3.2.
    """
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise ValueError(
            "The GDC head needs a fixed input size (its kernel covers the whole feature map). "
            f"Received: feature_map_shape={tuple(x.shape[1:])}"
        )
    x = depthwise_conv2d(x, (height, width), strides=1, padding=0, name=f"{name}_gdc")
    x = batch_norm(x, f"{name}_gdc_bn")
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = keras.layers.Dense(
        embedding_dim,
        use_bias=False,
        kernel_initializer="glorot_normal",
        name=f"{name}_fc",
        dtype="float32",
    )(x)
    return batch_norm(x, f"{name}_features", dtype="float32")


def embedding_head(x, head, embedding_dim, dropout=0.0, name="head"):
    """Applies the head called ``head`` ("E" or "GDC"); see the two functions above."""
    validate_head(head)
    build = embedding_head_e if head == "E" else embedding_head_gdc
    return build(x, embedding_dim, dropout=dropout, name=name)


def validate_input_shape(input_shape):
    """Returns ``input_shape`` as a tuple ``(height, width, 3)`` or raises ``ValueError``."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(v, int) and v > 0 for v in shape)
        or shape[2] != 3
    ):
        raise ValueError(
            "`input_shape` must be (height, width, 3): RGB images, channels last. "
            f"Received: input_shape={input_shape!r}"
        )
    return shape


def build_embedding_model(
    features_fn, *, head, embedding_dim, dropout, input_shape, name, name_prefix=""
):
    """Assembles input -> pixel normalization -> ``features_fn`` -> head -> embedding model.

    This is the one place where the embedding-model contract of ``docs/architecture.md``
    is implemented: one float32 input named ``images`` (RGB, NHWC, 0..255), the scaling
    ``(x - 127.5) / 127.5`` as the first layer, and one float32 output ``[None, D]``.

    Args:
        features_fn: ``features_fn(x, name_prefix) -> feature map`` building the body.
        head: "E" or "GDC".
        embedding_dim: size of the embedding (positive int).
        dropout: dropout rate of the head, in [0, 1).
        input_shape: ``(height, width, 3)``.
        name: the model's name.
        name_prefix: prefix of every layer name (lets two backbones live in one model).

    Returns:
        A functional ``keras.Model``.
    """
    validate_head(head)
    input_shape = validate_input_shape(input_shape)
    if not isinstance(embedding_dim, int) or isinstance(embedding_dim, bool) or embedding_dim < 1:
        raise ValueError(
            f"`embedding_dim` must be a positive int. Received: embedding_dim={embedding_dim!r}"
        )
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be a float in [0, 1). Received: dropout={dropout!r}")
    images = keras.Input(shape=input_shape, dtype="float32", name="images")
    x = normalize_pixels(images, name=f"{name_prefix}normalize")
    x = features_fn(x, name_prefix)
    x = embedding_head(x, head, embedding_dim, dropout=float(dropout), name=f"{name_prefix}head")
    # The head's last layers compute in float32; the explicit cast keeps the contract even
    # if a caller swaps the policy of those layers.
    embedding = keras.layers.Activation("linear", dtype="float32", name=f"{name_prefix}embedding")(
        x
    )
    return keras.Model(images, embedding, name=name)
