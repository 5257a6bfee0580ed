"""The one input/output contract every exported keras-arcface model follows.

Every artifact (``.keras`` embedding model aside, whose output is the raw embedding) takes RGB
NHWC images of 112x112 pixels with values 0..255 under the input name ``images`` and returns the
L2-normalized float32 embedding under the output name ``embeddings``. The normalization
``(x - 127.5) / 127.5`` is the first layer of every backbone, so it is inside every exported graph.
See ``docs/export.md``.
"""

import json
import os

from keras_arcface._io import atomic_write_json

IMAGE_SIZE = 112
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
BYTES_INPUT_NAME = "image_bytes"
BYTES_SIGNATURE = "serving_bytes"
PIXEL_CONVENTION = "RGB, NHWC, float32 (or uint8) values 0..255; normalization inside the model"
METADATA_KEY = "keras_arcface"
DEFAULT_THRESHOLD = 0.3  # cosine similarity; see Embedder.verify for how to calibrate it.
# Metadata keys renamed since 0.1 (old -> new). Readers take an older export's old key under the
# new name. The writer keeps writing the old key too until 0.3: the metadata travels inside the
# .tflite file onto phones, where an app written against 0.1 reads it and no warning can reach it.
RENAMED_METADATA_KEYS = {"output_l2_normalised": "output_l2_normalized"}


def contract_metadata(embedding_dim, *, image_size=IMAGE_SIZE, input_dtype="float32", **extra):
    """Returns the metadata dict stored beside (or inside) every exported artifact.

    Args:
        embedding_dim: Size ``D`` of the output embedding.
        image_size: Side of the square input image, 112 by default.
        input_dtype: Dtype of the ``images`` input (``"float32"`` or ``"uint8"``).
        **extra: Further JSON-serialisable entries (format, quantisation, threshold ...).

    Example:
    >>> contract_metadata(512)["output_name"]
    'embeddings'
    """
    from keras_arcface.faces.align import alignment_metadata
    from keras_arcface.version import __version__

    metadata = {
        "producer": f"keras-arcface {__version__}",
        "input_name": INPUT_NAME,
        "input_shape": [None, int(image_size), int(image_size), 3],
        "input_dtype": input_dtype,
        "pixel_convention": PIXEL_CONVENTION,
        "output_name": OUTPUT_NAME,
        "output_shape": [None, int(embedding_dim)],
        "output_dtype": "float32",
        "output_l2_normalized": True,
        # The old spelling, still written for apps that read 0.1 metadata; removed in 0.3.
        "output_l2_normalised": True,
        "embedding_dim": int(embedding_dim),
        # How an app must crop faces for this model (docs/faces.md).
        "alignment": alignment_metadata(int(image_size)),
    }
    metadata.update(extra)
    return metadata


def upgrade_metadata(metadata):
    """Returns ``metadata`` with every renamed key of an older export also under its new name.

    Args:
        metadata: a dict read from an artifact (sidecar, TFLite or ONNX entry).

    Example:
    >>> upgrade_metadata({"output_l2_normalised": True})["output_l2_normalized"]
    True
    """
    metadata = dict(metadata)
    for old, new in RENAMED_METADATA_KEYS.items():
        if old in metadata and new not in metadata:
            metadata[new] = metadata[old]
    return metadata


def sidecar_path(artifact_path):
    """Path of the JSON metadata sidecar of an artifact (``model.tflite`` -> ``model.json``).

    A SavedModel directory keeps its sidecar inside it as ``keras_arcface.json``.

    Args:
        artifact_path: Path of a ``.tflite``/``.onnx`` file or a SavedModel directory.

    Example:
    >>> sidecar_path("out/model_int8.tflite")
    'out/model_int8.json'
    """
    artifact_path = os.fspath(artifact_path)
    if os.path.isdir(artifact_path):
        return os.path.join(artifact_path, f"{METADATA_KEY}.json")
    return os.path.splitext(artifact_path)[0] + ".json"


def write_json_atomic(path, payload):
    """Writes ``payload`` as indented JSON to ``path`` through a temporary name and a rename.

    Args:
        path: Destination file.
        payload: JSON-serialisable object.

    Example:
    >>> write_json_atomic("/tmp/example.json", {"a": 1})
    """
    atomic_write_json(path, payload, sort_keys=True)


def read_sidecar(artifact_path):
    """Reads an artifact's JSON sidecar; returns ``{}`` when there is none.

    Args:
        artifact_path: Path of the artifact (see :func:`sidecar_path`).

    Example:
    >>> read_sidecar("/nonexistent/model.tflite")
    {}
    """
    path = sidecar_path(artifact_path)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return upgrade_metadata(json.load(handle))
