"""``get_backbone``: one factory from a preset name to an embedding model."""

from keras_arcface.models.iresnet import iresnet
from keras_arcface.models.mobilefacenet import mobilefacenet
from keras_arcface.models.presets import PRESETS

_STRUCTURE_KEYS = {
    "iresnet": ("depths", "widths", "stem_channels", "stem_stride", "strides"),
    "mobilefacenet": ("stages", "stem_channels", "stem_groups", "sep_channels"),
}
_BUILDERS = {"iresnet": iresnet, "mobilefacenet": mobilefacenet}


def get_backbone(
    name,
    *,
    embedding_dim=None,
    head=None,
    dropout=None,
    input_shape=(112, 112, 3),
    name_prefix=None,
):
    """Builds the embedding model of a preset (see ``PRESETS`` / ``list_presets()``).

    The model follows the embedding-model contract of ``docs/architecture.md``: one input
    named ``images`` (float32 RGB, NHWC, values 0..255), the normalization
    ``(x - 127.5) / 127.5`` as its first layer, and one float32 output ``[None, D]``, the
    raw (not L2-normalized) embedding. Under a ``mixed_float16`` / ``mixed_bfloat16``
    global policy the body computes in low precision and the embedding stays float32.

    Args:
        name: preset name: "r18", "r34", "r50", "r100", "r200", "mbf", "mobilefacenet",
            "small" or "toy2d".
        embedding_dim: embedding size; default: the preset's (512 for r*/mbf, 128 for
            "mobilefacenet" and "small", 2 for "toy2d").
        head: "E" (BN -> Dropout -> FC -> BN) or "GDC" (global depthwise conv -> BN -> FC
            -> BN); default: the preset's ("E" for iResNets, "GDC" for MobileFaceNets).
        dropout: dropout rate of the head; default: the preset's (0.0).
        input_shape: ``(height, width, 3)``. Default ``(112, 112, 3)``; "toy2d" also works
            on small inputs such as ``(32, 32, 3)``.
        name_prefix: prefix of every layer name, for two backbones in one model.
            Default: none.

    Returns:
        A functional ``keras.Model`` named after the preset.

    Example:
        >>> backbone = get_backbone("r50")
        >>> embeddings = backbone(images)  # images: float32 [B, 112, 112, 3] in 0..255

    Reference: Deng et al., ArcFace, arXiv 1801.07698, section 3.2.
    """
    if name not in PRESETS:
        raise ValueError(
            f"Unknown backbone preset; expected one of {list(PRESETS)}. Received: name={name!r}"
        )
    preset = PRESETS[name]
    family = preset["family"]
    structure = {key: preset[key] for key in _STRUCTURE_KEYS[family] if key in preset}
    prefix = "" if name_prefix is None else str(name_prefix)
    return _BUILDERS[family](
        **structure,
        embedding_dim=preset["embedding_dim"] if embedding_dim is None else embedding_dim,
        head=preset["head"] if head is None else head,
        dropout=preset["dropout"] if dropout is None else dropout,
        input_shape=input_shape,
        name=f"{prefix}{name}",
        name_prefix=prefix,
    )
