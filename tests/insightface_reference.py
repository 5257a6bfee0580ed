"""PyTorch networks of the InsightFace reference layout, the oracle of the import tests.

The networks live in ``keras_arcface.models.torch_reference`` (the benchmarks time the same
ones); this module adds the tests' helpers. Written from the published reference structure
(arcface_torch's iresnet.py and mobilefacenet.py: module names, block layout, padding, eps),
with random weights and non-trivial BN statistics and PReLU slopes (``randomize``).
"""

import numpy as np
import torch

from keras_arcface.models.torch_reference import (  # noqa: F401  (re-exported for the tests)
    TorchIResNet,
    TorchMobileFaceNet,
    randomize,
)


def random_images(count, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 112, 112, 3)).astype(np.float32)


def torch_embeddings(model, images):
    """Reference forward: InsightFace's normalization, NCHW, float64 L2 normalization."""
    x = torch.from_numpy(((images - 127.5) / 127.5).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        out = model(x).double().numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def keras_embeddings(model, images):
    out = np.asarray(model(images, training=False), dtype=np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)
