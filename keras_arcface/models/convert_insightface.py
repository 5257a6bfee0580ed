"""Deprecated location: use ``keras_arcface.models.imports`` (``convert``, ``pth_command``)."""

import warnings

from keras_arcface.models.imports.convert import convert  # noqa: F401
from keras_arcface.models.imports.mapping import IMPORTABLE_ARCHS  # noqa: F401
from keras_arcface.models.imports.pth_command import add_arguments, main  # noqa: F401

warnings.warn(
    "keras_arcface.models.convert_insightface is deprecated; use "
    "keras_arcface.models.imports.convert (Python) or `keras-arcface convert-insightface`.",
    DeprecationWarning,
    stacklevel=2,
)
