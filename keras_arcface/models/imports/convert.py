"""Build a Keras embedding model from InsightFace weights, and save it without half-files."""

from keras_arcface._io import atomic_path
from keras_arcface.models.imports.mapping import (
    embedding_dim_of_checkpoint,
    load_reference_tensors,
)
from keras_arcface.models.imports.onnx_reader import read_insightface_onnx
from keras_arcface.models.imports.pth import read_checkpoint


def load_insightface_onnx(path):
    """Builds the Keras embedding model of an InsightFace ONNX recognition model.

    The architecture (iResNet r18/r34/r50/r100/r200 or MobileFaceNet mbf) and the
    embedding size are recognised from the graph. The result follows the package's
    contract: input ``images`` RGB, NHWC, 0..255; the pixel normalization (InsightFace's
    ``(x - 127.5) / 127.5``, or the graph's own Sub/Mul preamble) is its first layer; it
    returns the raw embedding, to be compared by cosine like the ONNX model's.

    Args:
        path: the ``.onnx`` file (e.g. ``w600k_r50.onnx``, ``w600k_mbf.onnx``,
            ``glintr100.onnx``). Needs ``pip install "keras-arcface[export]"`` (onnx).

    Returns:
        A ``keras.Model`` built by ``get_backbone(arch, embedding_dim=...)``.

    Raises:
        ValueError: the file is not ONNX, or the graph matches no supported
            architecture (the message names the first node or shape that did not match).

    Example:
        >>> model = load_insightface_onnx("buffalo_l/w600k_r50.onnx")
        >>> embeddings = model(images_rgb_0_255)
    """
    from keras_arcface.models.factory import get_backbone

    found = read_insightface_onnx(path)
    model = get_backbone(found.arch, embedding_dim=found.embedding_dim)
    if found.normalization_in_graph:
        normalize = next(layer for layer in model.layers if layer.name.endswith("normalize"))
        normalize.scale, normalize.offset = found.input_scale, found.input_offset
    return load_reference_tensors(model, found.tensors, found.arch)


def load_insightface_pth(checkpoint, arch):
    """Builds the Keras embedding model of an InsightFace ``.pth`` ``state_dict``.

    Args:
        checkpoint: path of the ``state_dict`` (read with ``weights_only=True``).
        arch: "r18", "r34", "r50", "r100", "r200", "mbf" or "mobilefacenet".

    Returns:
        The Keras embedding model (embedding size read from the checkpoint).

    Example:
        >>> model = load_insightface_pth("backbone.pth", "r50")
    """
    from keras_arcface.models.factory import get_backbone

    tensors = read_checkpoint(checkpoint)
    model = get_backbone(arch, embedding_dim=embedding_dim_of_checkpoint(tensors, arch))
    return load_reference_tensors(model, tensors, arch)


def save_model_atomically(model, output):
    """Saves ``model`` as ``.keras`` through a temporary file, so a failure leaves nothing."""
    import keras

    if not str(output).endswith(".keras"):
        raise ValueError(f"The output must be a .keras file. Received: output={output!r}")
    with atomic_path(output) as temporary:
        keras.saving.save_model(model, temporary)


def convert(checkpoint, arch, output):
    """Converts a ``.pth`` checkpoint into a ``.keras`` embedding model; returns the model.

    Example:
        >>> convert("backbone.pth", "r50", "r50.keras")
    """
    if not str(output).endswith(".keras"):
        raise ValueError(f"The output must be a .keras file. Received: output={output!r}")
    model = load_insightface_pth(checkpoint, arch)
    save_model_atomically(model, output)
    return model


def convert_onnx(path, output):
    """Converts an InsightFace ONNX model into a ``.keras`` embedding model; returns it.

    Example:
        >>> convert_onnx("w600k_mbf.onnx", "w600k_mbf.keras")
    """
    if not str(output).endswith(".keras"):
        raise ValueError(f"The output must be a .keras file. Received: output={output!r}")
    model = load_insightface_onnx(path)
    save_model_atomically(model, output)
    return model


def load_keras_embedding_model(path):
    """Loads a ``.keras`` embedding model (or a task model's embedding part) for reuse.

    Raises:
        ValueError: the file is not a loadable ``.keras`` model with one embedding output.
    """
    import keras

    import keras_arcface.layers  # noqa: F401  (registers the serializable classes)
    import keras_arcface.models  # noqa: F401

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # zip, JSON or deserialization errors, depending on damage
        raise ValueError(
            "Could not load the file as a .keras model (truncated, or saved by something "
            f"else?). Received: path={str(path)!r} ({type(error).__name__}: {str(error)[:200]})"
        ) from error
    model = getattr(model, "embedding_model", model)
    if not isinstance(model, keras.Model) or len(model.outputs) != 1:
        raise ValueError(
            f"Expected an embedding model with one output [None, D]. Received: path={str(path)!r}"
        )
    return model
