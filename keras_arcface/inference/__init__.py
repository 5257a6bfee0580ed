"""Inference over every keras-arcface model format: ``Embedder`` and the shared contract.

Example:
>>> from keras_arcface.inference import Embedder
>>> embedder = Embedder.load("runs/demo")  # doctest: +SKIP
"""

from keras_arcface.inference.contract import (
    BYTES_INPUT_NAME,
    BYTES_SIGNATURE,
    DEFAULT_THRESHOLD,
    IMAGE_SIZE,
    INPUT_NAME,
    OUTPUT_NAME,
    contract_metadata,
)
from keras_arcface.inference.embedder import Embedder, l2_normalise, l2_normalize
from keras_arcface.inference.images import load_image, to_batch
from keras_arcface.inference.runtimes import SUPPORTED_FORMATS, open_runtime, resolve_model_path

__all__ = [
    "BYTES_INPUT_NAME",
    "BYTES_SIGNATURE",
    "DEFAULT_THRESHOLD",
    "Embedder",
    "IMAGE_SIZE",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "SUPPORTED_FORMATS",
    "contract_metadata",
    "l2_normalise",
    "l2_normalize",
    "load_image",
    "open_runtime",
    "resolve_model_path",
    "to_batch",
]
