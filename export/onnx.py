"""ONNX export through tf2onnx, checked with ``onnx.checker`` and run by onnxruntime.

tf2onnx converts the float32 TFLite flatbuffer of the model (builtin ops, batch norm folded)
rather than the TensorFlow graph: Keras compiles grouped convolutions (MobileFaceNet's stem)
into XLA-only nested functions that tf2onnx's graph route cannot inline, while the TFLite
route turns them into plain ONNX ``Conv`` nodes with ``group``. The graph keeps the contract:
input ``images`` float32 ``[batch, S, S, 3]`` (dynamic ``batch``), output ``embeddings``
float32 ``[batch, D]``, L2-normalized, plus metadata properties.
"""

import json
import os
import tempfile
import warnings

from keras_arcface._io import atomic_write_bytes
from keras_arcface.export.signatures import check_embedding_model
from keras_arcface.inference.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    contract_metadata,
)

SUPPORTED_OPSETS = (13, 14, 15, 16, 17, 18)
_HINT = 'pip install "keras-arcface[export]"'


def _import_onnx_tools():
    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise ImportError(f"ONNX export needs tf2onnx and onnx: {_HINT}. ({error})") from error
    return onnx, tf2onnx


def _rename(graph, old, new):
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _set_contract_names(proto):
    graph = proto.graph
    for value, name in ((graph.input[0], INPUT_NAME), (graph.output[0], OUTPUT_NAME)):
        _rename(graph, value.name, name)
        value.name = name
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


def onnx_from_tflite(tflite_path, *, opset=17, metadata=None):
    """Converts a float32 ``.tflite`` embedding model to a checked ONNX ``ModelProto``.

    Args:
        tflite_path: A float32 ``.tflite`` file from ``export_tflite``.
        opset: ONNX opset, 17 by default (13-18 work; 21 does not with tf2onnx 1.17).
        metadata: Metadata stored as ``metadata_props`` (``keras_arcface`` holds all of it as
            JSON; scalar entries are also stored one per key).

    Example:
    >>> proto = onnx_from_tflite("out/model_float32.tflite")  # doctest: +SKIP
    """
    if int(opset) not in SUPPORTED_OPSETS:
        raise ValueError(
            f"Expected an ONNX opset in {list(SUPPORTED_OPSETS)}. Received: opset={opset}"
        )
    onnx, tf2onnx = _import_onnx_tools()
    with warnings.catch_warnings():
        # tf2onnx reads shapes with tf.lite.Interpreter, which warns about its deprecation.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        proto, _ = tf2onnx.convert.from_tflite(os.fspath(tflite_path), opset=int(opset))
    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise ValueError(
            "Expected a TFLite model with one input and one output. "
            f"Received: tflite_path={os.fspath(tflite_path)!r}"
        )
    _set_contract_names(proto)
    metadata = metadata or {}
    del proto.metadata_props[:]
    entries = {METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    entries.update({k: str(v) for k, v in metadata.items() if isinstance(v, (str, int, float))})
    for key, value in sorted(entries.items()):
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.producer_name = "keras-arcface (tf2onnx)"
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model, path, *, opset=17, tflite_float32_path=None, metadata=None):
    """Exports a Keras embedding model to ``path`` as ONNX.

    Args:
        model: A Keras embedding model.
        path: Destination ``.onnx`` file.
        opset: ONNX opset, 17 by default.
        tflite_float32_path: A float32 ``.tflite`` of the same model to convert from (saves a
            conversion when the TFLite export already ran); made in a temporary folder if
            ``None``.
        metadata: Extra metadata entries.

    Returns:
        ``path``.

    Example:
    >>> export_onnx(backbone, "out/model.onnx", opset=17)  # doctest: +SKIP
    """
    from keras_arcface.export.tflite import convert_tflite

    image_size, embedding_dim = check_embedding_model(model)
    info = contract_metadata(
        embedding_dim, image_size=image_size, format="onnx", opset=int(opset), **(metadata or {})
    )
    path = os.fspath(path)
    with tempfile.TemporaryDirectory() as scratch:
        if tflite_float32_path is None:
            tflite_float32_path = os.path.join(scratch, "model_float32.tflite")
            with open(tflite_float32_path, "wb") as handle:
                handle.write(convert_tflite(model, "float32"))
        proto = onnx_from_tflite(tflite_float32_path, opset=opset, metadata=info)
    return atomic_write_bytes(path, proto.SerializeToString())
