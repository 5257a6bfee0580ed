"""Reader of InsightFace PyTorch checkpoints (``state_dict`` ``.pth``).

The tensors keep their reference names and PyTorch layout; ``mapping.py`` assigns them
to the Keras layers.
"""

import os

import keras
import numpy as np

from keras_arcface.models.imports.mapping import load_reference_tensors

_TORCH_HINT = 'Reading .pth checkpoints needs PyTorch: pip install "keras-arcface[torch]"'


def read_checkpoint(path):
    """Reads a ``.pth`` ``state_dict`` safely and returns ``{name: float32 ndarray}``.

    The file is read with ``torch.load(..., weights_only=True)``: checkpoints come from
    strangers and a full unpickle could run arbitrary code. ``module.`` prefixes (from
    DistributedDataParallel) are removed and ``{"state_dict": ...}`` wrappers unwrapped.

    Args:
        path: path of the checkpoint.

    Returns:
        A dict of NumPy arrays.

    Example:
        >>> tensors = read_checkpoint("backbone.pth")
    """
    try:
        import torch
    except ImportError as error:
        raise ImportError(_TORCH_HINT) from error
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        raise ValueError(
            "Could not read the checkpoint as a plain PyTorch state_dict (a pickled whole "
            "model is refused for safety: save `model.state_dict()` instead). "
            f"Received: path={path!r} ({type(error).__name__}: {str(error)[:200]})"
        ) from error
    return _as_numpy_state(state)


def _as_numpy_state(state):
    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise TypeError(
            f"A checkpoint must hold a dict of tensors. Received: type={type(state).__name__}"
        )
    tensors = {}
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if hasattr(value, "detach"):
            value = value.detach().cpu().float().numpy()
        name = name[len("module.") :] if name.startswith("module.") else name
        tensors[name] = np.asarray(value, dtype=np.float32)
    return tensors


def load_insightface_weights(keras_model, state_dict_or_path, arch):
    """Loads InsightFace PyTorch weights into a Keras backbone built by ``get_backbone``.

    Nothing is assigned unless every tensor matches, so a failed import leaves the model
    as it was.

    Args:
        keras_model: the embedding model, e.g. ``get_backbone("r50")`` (its embedding size
            must be the checkpoint's; iResNets need the "E" head, MobileFaceNets "GDC").
        state_dict_or_path: a path to a ``.pth`` ``state_dict`` (read with
            ``torch.load(weights_only=True)``; needs ``pip install "keras-arcface[torch]"``),
            or a dict of name -> tensor / NumPy array.
        arch: the architecture of the checkpoint: "r18", "r34", "r50", "r100", "r200",
            "mbf" or "mobilefacenet".

    Returns:
        ``keras_model``, with the weights loaded.

    Raises:
        ValueError: naming the first missing or mismatching tensor (with both shapes), or
            the first checkpoint tensor the architecture does not use.

    Example:
        >>> model = get_backbone("r50")
        >>> load_insightface_weights(model, "ms1mv3_arcface_r50/backbone.pth", "r50")

    Reference: the InsightFace ``arcface_torch`` backbones (iresnet.py, mobilefacenet.py).
    """
    if not isinstance(keras_model, keras.Model):
        raise TypeError(
            f"`keras_model` must be a keras.Model. Received: keras_model={keras_model!r}"
        )
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        tensors = read_checkpoint(os.fspath(state_dict_or_path))
    elif isinstance(state_dict_or_path, dict):
        tensors = _as_numpy_state(state_dict_or_path)
    else:
        raise TypeError(
            "`state_dict_or_path` must be a path or a dict of tensors. "
            f"Received: type={type(state_dict_or_path).__name__}"
        )
    return load_reference_tensors(keras_model, tensors, arch)
