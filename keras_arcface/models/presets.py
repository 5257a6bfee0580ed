"""Backbone presets: plain dicts (data, not code) that ``get_backbone`` turns into models.

Each preset names its ``family`` ("iresnet" or "mobilefacenet"), the structural arguments
of that family's builder, and the defaults of the head (``head``, ``embedding_dim``,
``dropout``) that ``get_backbone`` lets callers override. ``reference_params`` is the
parameter count of the published model the preset reproduces (PyTorch convention: weights
and biases, BN scale and shift, no BN running statistics), or ``None`` for this project's
own small nets.
"""

PRESETS = {
    "r18": {
        "family": "iresnet",
        "depths": [2, 2, 2, 2],
        "widths": [64, 128, 256, 512],
        "head": "E",
        "embedding_dim": 512,
        "dropout": 0.0,
        "reference_params": 24_000_000,
        "description": "iResNet-18 (InsightFace reference structure)",
    },
    "r34": {
        "family": "iresnet",
        "depths": [3, 4, 6, 3],
        "widths": [64, 128, 256, 512],
        "head": "E",
        "embedding_dim": 512,
        "dropout": 0.0,
        "reference_params": 34_100_000,
        "description": "iResNet-34",
    },
    "r50": {
        "family": "iresnet",
        "depths": [3, 4, 14, 3],
        "widths": [64, 128, 256, 512],
        "head": "E",
        "embedding_dim": 512,
        "dropout": 0.0,
        "reference_params": 43_590_000,
        "description": "iResNet-50, the paper's ResNet50 (LResNet50E-IR)",
    },
    "r100": {
        "family": "iresnet",
        "depths": [3, 13, 30, 3],
        "widths": [64, 128, 256, 512],
        "head": "E",
        "embedding_dim": 512,
        "dropout": 0.0,
        "reference_params": 65_100_000,
        "description": "iResNet-100 (LResNet100E-IR)",
    },
    "r200": {
        "family": "iresnet",
        "depths": [6, 26, 60, 6],
        "widths": [64, 128, 256, 512],
        "head": "E",
        "embedding_dim": 512,
        "dropout": 0.0,
        "reference_params": None,
        "description": "iResNet-200",
    },
    "mbf": {
        "family": "mobilefacenet",
        "stem_channels": 128,
        "stem_groups": 64,
        "stages": [[128, 128, 4, 128], [256, 256, 6, 256], [256, 512, 2, 256]],
        "sep_channels": 512,
        "head": "GDC",
        "embedding_dim": 512,
        "dropout": 0.0,
        "reference_params": 2_060_000,
        "description": "MobileFaceNet as InsightFace's 'mbf' (128-channel variant)",
    },
    "mobilefacenet": {
        "family": "mobilefacenet",
        "stem_channels": 64,
        "stem_groups": 64,
        "stages": [[64, 128, 4, 128], [128, 256, 6, 256], [128, 512, 2, 256]],
        "sep_channels": 512,
        "head": "GDC",
        "embedding_dim": 128,
        "dropout": 0.0,
        "reference_params": 990_000,
        "description": "MobileFaceNet of the original paper (128-d embedding)",
    },
    "small": {
        "family": "iresnet",
        "stem_channels": 16,
        "stem_stride": 2,
        "depths": [1, 1, 1],
        "widths": [16, 32, 64],
        "head": "E",
        "embedding_dim": 128,
        "dropout": 0.0,
        "reference_params": None,
        "description": "narrow iResNet for CPU demos and tests",
    },
    "toy2d": {
        "family": "iresnet",
        # 16 stem channels, not 8: TF 2.21's oneDNN build segfaults on the input gradient
        # of a stride-2 1x1 convolution with 8 input channels.
        "stem_channels": 16,
        "stem_stride": 2,
        "depths": [1, 1, 1],
        "widths": [16, 32, 32],
        "head": "E",
        "embedding_dim": 2,
        "dropout": 0.0,
        "reference_params": None,
        "description": "tiny net with a 2-D embedding (paper's 8-identity toy experiment)",
    },
}


def list_presets():
    """Returns the preset names, in the order of ``PRESETS``.

    Example:
        >>> "r50" in list_presets()
        True
    """
    return list(PRESETS)
