"""The export stage: SavedModel (TF Serving), TFLite (mobile), ONNX, behind a parity gate.

Installed as ``keras_arcface.export``. Every artifact carries only the embedding model and
follows one contract (``docs/export.md``): input ``images`` RGB NHWC 112x112 with values 0..255,
normalization inside the graph, output ``embeddings`` float32 L2-normalized, dynamic batch.

Example:
>>> from keras_arcface.export import export_model
>>> report = export_model("runs/demo", "runs/demo/export", data_dir="data/train")  # doctest: +SKIP
"""

import importlib

_LAZY = {
    "export_model": "keras_arcface.export.exporter",
    "check_export": "keras_arcface.export.exporter",
    "draw_sample_images": "keras_arcface.export.exporter",
    "FORMATS": "keras_arcface.export.exporter",
    "export_saved_model": "keras_arcface.export.saved_model",
    "export_tflite": "keras_arcface.export.tflite",
    "convert_tflite": "keras_arcface.export.tflite",
    "QUANTIZATIONS": "keras_arcface.export.tflite",
    "export_onnx": "keras_arcface.export.onnx",
    "check_parity": "keras_arcface.export.parity",
    "ParityReport": "keras_arcface.export.parity",
    "ArtifactParity": "keras_arcface.export.parity",
    "ParityGateError": "keras_arcface.export.parity",
    "COSINE_GATES": "keras_arcface.export.parity",
    "ACCURACY_TOLERANCE_POINTS": "keras_arcface.export.parity",
}

__all__ = list(_LAZY)


def __getattr__(name):
    # Lazy: `keras-arcface --help` and the embed/verify commands must not import TensorFlow.
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_arcface.export' has no attribute '{name}'")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
