"""TFLite export for mobile: float32, float16, dynamic-range and full-integer int8.

Every model is converted with builtin ops only (``TFLITE_BUILTINS``, or ``TFLITE_BUILTINS_INT8``
for int8), never ``SELECT_TF_OPS``, so the standalone LiteRT runtime (``ai-edge-litert``) and
mobile runtimes without the Flex delegate run it. The signature is ``serving_default``:
``images`` -> ``embeddings``. The int8 model takes **uint8** pixels 0..255 directly (input scale
1, zero point 0; calibration always includes black and white images so the range is 0..255)
and returns float32 embeddings. Metadata (input size, pixel convention, embedding size ...)
is stored twice: as a ``keras_arcface`` entry of the flatbuffer's metadata table (JSON bytes),
which travels with the file onto a phone, and as a JSON sidecar next to it.
"""

import json
import os
import tempfile

import numpy as np

from keras_arcface._io import atomic_write_bytes
from keras_arcface.export.signatures import check_embedding_model, embedding_function
from keras_arcface.inference.contract import (
    METADATA_KEY,
    contract_metadata,
    sidecar_path,
    write_json_atomic,
)
from keras_arcface.models.grouped_conv2d import GroupedConv2D, native_grouped_convolution

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def check_quantization(quantization):
    """Validates a TFLite quantisation name (one of ``QUANTIZATIONS``).

    Example:
    >>> check_quantization("int8")
    'int8'
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"Unknown TFLite quantisation; expected one of {list(QUANTIZATIONS)}. "
            f"Received: quantization={quantization!r}"
        )
    return quantization


def _representative_dataset(images, image_size):
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (image_size, image_size, 3) or not len(images):
        raise ValueError(
            f"Expected int8 calibration images [N, {image_size}, {image_size}, 3] (RGB 0..255). "
            f"Received: shape={images.shape}"
        )
    extremes = [np.zeros, lambda s, d: np.full(s, 255.0, d)]

    def generate():
        # The black and white images pin the input range to exactly 0..255 (scale 1).
        for make in extremes:
            yield [make((1, image_size, image_size, 3), np.float32)]
        for image in images:
            yield [image[None]]

    return generate


def write_serving_saved_model(model, path):
    """Writes a SavedModel holding only ``serving_default`` (the TFLite converter's input).

    Args:
        model: A Keras embedding model.
        path: Destination directory.

    Example:
    >>> write_serving_saved_model(backbone, "/tmp/serving")  # doctest: +SKIP
    """
    import keras

    archive = keras.export.ExportArchive()  # endpoints track their variables (see saved_model)
    archive.add_endpoint("serving_default", embedding_function(model))
    archive.write_out(os.fspath(path), verbose=False)
    return path


def convert_tflite(model, quantization="float32", *, representative_images=None, saved_model=None):
    """Converts a Keras embedding model to TFLite flatbuffer bytes.

    The converter reads a SavedModel's ``serving_default`` signature, so the ``.tflite`` keeps
    the signature ``serving_default`` with input ``images`` and output ``embeddings``.

    Args:
        model: A Keras embedding model (docs/architecture.md).
        quantization: ``"float32"`` (default), ``"float16"`` (float16 weights),
            ``"dynamic"`` (int8 weights, float activations) or ``"int8"`` (full integer;
            uint8 input, float32 output).
        representative_images: ``[N, S, S, 3]`` RGB 0..255 calibration images, required for
            ``"int8"`` (a few hundred real faces from the training data are best).
        saved_model: A SavedModel of ``model`` with a ``serving_default`` signature (from
            ``export_saved_model`` or :func:`write_serving_saved_model`); one is written to a
            temporary folder when ``None``.

    Returns:
        The ``.tflite`` bytes.

    Example:
    >>> data = convert_tflite(backbone, "int8", representative_images=faces)  # doctest: +SKIP
    """

    check_quantization(quantization)
    image_size, _ = check_embedding_model(model)
    if quantization == "int8" and representative_images is None:
        raise ValueError(
            "Full-integer int8 conversion needs calibration images "
            "(representative_images, or --data / --bin on the command line). "
            "Received: representative_images=None"
        )
    if saved_model is None or _has_grouped_convolutions(model):
        # Grouped convolutions convert to one TFLite CONV_2D only when traced as such; the
        # SavedModel for TensorFlow itself keeps the depthwise form its CPU kernels can run.
        with tempfile.TemporaryDirectory() as scratch, native_grouped_convolution():
            write_serving_saved_model(model, scratch)
            return _convert(os.fspath(scratch), quantization, representative_images, image_size)
    return _convert(os.fspath(saved_model), quantization, representative_images, image_size)


def _has_grouped_convolutions(model):
    return any(isinstance(layer, GroupedConv2D) for layer in _all_layers(model))


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def _convert(saved_model, quantization, representative_images, image_size):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model, signature_keys=["serving_default"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.representative_dataset = _representative_dataset(
            representative_images, image_size
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    return converter.convert()


def add_tflite_metadata(flatbuffer, metadata):
    """Returns ``flatbuffer`` with ``metadata`` (JSON) stored under the ``keras_arcface`` name.

    The entry lives in the model's ``metadata`` table (a named buffer), which TFLite runtimes
    ignore and tools read with the flatbuffer schema (see
    ``keras_arcface.inference.runtimes.read_tflite_metadata``).

    Args:
        flatbuffer: ``.tflite`` bytes.
        metadata: JSON-serialisable dict.

    Example:
    >>> data = add_tflite_metadata(data, {"embedding_dim": 512})  # doctest: +SKIP
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export_tflite(
    model,
    path,
    quantization="float32",
    *,
    representative_images=None,
    saved_model=None,
    metadata=None,
):
    """Converts ``model`` (see :func:`convert_tflite`) and writes ``path`` plus its sidecar.

    Args:
        model: A Keras embedding model.
        path: Destination ``.tflite`` file; the sidecar is the same name with ``.json``.
        quantization: One of ``QUANTIZATIONS`` (default ``"float32"``).
        representative_images: Calibration images for ``"int8"``.
        saved_model: See :func:`convert_tflite`.
        metadata: Extra metadata entries.

    Returns:
        ``path``.

    Example:
    >>> export_tflite(backbone, "out/model_float16.tflite", "float16")  # doctest: +SKIP
    """
    image_size, embedding_dim = check_embedding_model(model)
    data = convert_tflite(
        model,
        quantization,
        representative_images=representative_images,
        saved_model=saved_model,
    )
    info = contract_metadata(
        embedding_dim,
        image_size=image_size,
        input_dtype="uint8" if quantization == "int8" else "float32",
        format="tflite",
        quantization=quantization,
        **(metadata or {}),
    )
    data = add_tflite_metadata(data, info)
    path = os.fspath(path)
    atomic_write_bytes(path, data)
    write_json_atomic(sidecar_path(path), info)
    return path
