"""Deprecated location: use ``keras_arcface.models.imports``."""

import warnings

from keras_arcface.models.imports.mapping import (  # noqa: F401
    embedding_dim_of_checkpoint,
    insightface_module_map,
)
from keras_arcface.models.imports.pth import load_insightface_weights, read_checkpoint  # noqa: F401

warnings.warn(
    "keras_arcface.models.insightface_import is deprecated; import from "
    "keras_arcface.models.imports instead.",
    DeprecationWarning,
    stacklevel=2,
)
