"""InsightFace weights -> Keras: one mapping, two readers (``.pth`` and ``.onnx``).

Public API:
    load_insightface_weights(model, state_dict_or_path, arch)  .pth state_dict into a backbone
    load_insightface_pth(path, arch)      build the Keras model of a .pth checkpoint
    load_insightface_onnx(path)           build the Keras model of an ONNX model (arch recognised)
    read_insightface_onnx(path)           what the graph holds: arch, embedding size, tensors
    insightface_module_map(arch)          (reference module, Keras layer) pairs
    convert(...), convert_onnx(...)       the same, saved as .keras
"""

from keras_arcface.models.imports.convert import (
    convert,
    convert_onnx,
    load_insightface_onnx,
    load_insightface_pth,
    save_model_atomically,
)
from keras_arcface.models.imports.mapping import (
    IMPORTABLE_ARCHS,
    embedding_dim_of_checkpoint,
    insightface_module_map,
    load_reference_tensors,
)
from keras_arcface.models.imports.onnx_reader import OnnxImport, read_insightface_onnx
from keras_arcface.models.imports.pth import load_insightface_weights, read_checkpoint

__all__ = [
    "IMPORTABLE_ARCHS",
    "OnnxImport",
    "convert",
    "convert_onnx",
    "embedding_dim_of_checkpoint",
    "insightface_module_map",
    "load_insightface_onnx",
    "load_insightface_pth",
    "load_insightface_weights",
    "load_reference_tensors",
    "read_checkpoint",
    "read_insightface_onnx",
    "save_model_atomically",
]
