"""ONNX export through tf2onnx, checked with ``onnx.checker`` and run by onnxruntime.

tf2onnx converts the float32 TFLite flatbuffer of the model (builtin ops, batch norm folded)
rather than the TensorFlow graph: Keras compiles grouped convolutions (MobileFaceNet's stem)
into XLA-only nested functions that tf2onnx's graph route cannot inline, while the TFLite
route turns them into plain ONNX ``Conv`` nodes with ``group``. Every ``PRelu`` with constant
slopes is then rewritten as ``a * x + relu((1 - a) * x)`` (``_decompose_prelu``): the same
function in operators that onnxruntime runs inside its blocked (NCHWc) convolution layout,
which roughly halves MobileFaceNet's time there (``benchmarks/inference_latency.py``). The
graph keeps the contract:
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


def _unique_name(taken, stem):
    name, count = stem, 0
    while name in taken:
        count += 1
        name = f"{stem}_{count}"
    taken.add(name)
    return name


def _prelu_replacement(helper, numpy_helper, node, slopes, taken):
    """Nodes and initializers computing ``PRelu(x, a)`` as ``a * x + g(x)``.

    ``g(x) = relu((1 - a) * x)`` when every ``1 - a >= 0`` (the usual learned slopes), so that
    onnxruntime fuses the relu into the depthwise convolution it makes of the product;
    ``(1 - a) * relu(x)`` otherwise. Both equal ``(1 - a) * relu(x)``, and ``a * x + (1 - a)
    * relu(x)`` is ``x`` for ``x >= 0`` and ``a * x`` below.
    """
    x, out = node.input[0], node.output[0]
    stem = node.name or out
    names = {
        key: _unique_name(taken, f"{stem}/prelu_{key}") for key in ("a", "1ma", "ax", "s", "g")
    }
    complement = (1.0 - slopes.astype("float64")).astype(slopes.dtype)
    initializers = [
        numpy_helper.from_array(slopes, names["a"]),
        numpy_helper.from_array(complement, names["1ma"]),
    ]
    if (complement >= 0).all():
        second = [
            helper.make_node("Mul", [x, names["1ma"]], [names["s"]]),
            helper.make_node("Relu", [names["s"]], [names["g"]]),
        ]
    else:
        second = [
            helper.make_node("Relu", [x], [names["s"]]),
            helper.make_node("Mul", [names["s"], names["1ma"]], [names["g"]]),
        ]
    nodes = [
        helper.make_node("Mul", [x, names["a"]], [names["ax"]]),
        *second,
        helper.make_node("Add", [names["ax"], names["g"]], [out]),
    ]
    return nodes, initializers


def _decompose_prelu(onnx, proto):
    """Rewrites every ``PRelu`` whose slopes are a float initializer (see the module
    docstring) and drops the slope initializers no node reads any more. Returns the number
    rewritten.

    onnxruntime has no blocked-layout ``PRelu``: each one reorders the tensor out of and back
    into the NCHWc layout of the convolutions around it and runs a broadcasting kernel, about
    half of MobileFaceNet's inference time. ``Mul`` by a per-channel constant and ``Relu``
    stay in that layout.
    """
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    taken = {name for node in graph.node for name in (*node.input, *node.output, node.name)}
    taken.update(initializers)
    nodes, added, replaced, rewritten = [], [], set(), 0
    for node in graph.node:
        slopes = initializers.get(node.input[1]) if node.op_type == "PRelu" else None
        if slopes is None or slopes.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        new_nodes, new_initializers = _prelu_replacement(
            onnx.helper, onnx.numpy_helper, node, onnx.numpy_helper.to_array(slopes), taken
        )
        nodes.extend(new_nodes)
        added.extend(new_initializers)
        replaced.add(slopes.name)
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used or t.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    return rewritten


def onnx_from_tflite(tflite_path, *, opset=17, metadata=None, decompose_prelu=True):
    """Converts a float32 ``.tflite`` embedding model to a checked ONNX ``ModelProto``.

    Args:
        tflite_path: A float32 ``.tflite`` file from ``export_tflite``.
        opset: ONNX opset, 17 by default (13-18 work; 21 does not with tf2onnx 1.17).
        metadata: Metadata stored as ``metadata_props`` (``keras_arcface`` holds all of it as
            JSON; scalar entries are also stored one per key).
        decompose_prelu: rewrite ``PRelu`` nodes as ``a * x + relu((1 - a) * x)`` (default),
            the fast form for onnxruntime on the CPU; ``False`` keeps the ``PRelu`` nodes.

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
    if decompose_prelu:
        _decompose_prelu(onnx, proto)
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


def export_onnx(
    model, path, *, opset=17, tflite_float32_path=None, metadata=None, decompose_prelu=True
):
    """Exports a Keras embedding model to ``path`` as ONNX.

    Args:
        model: A Keras embedding model.
        path: Destination ``.onnx`` file.
        opset: ONNX opset, 17 by default.
        tflite_float32_path: A float32 ``.tflite`` of the same model to convert from (saves a
            conversion when the TFLite export already ran); made in a temporary folder if
            ``None``.
        metadata: Extra metadata entries.
        decompose_prelu: rewrite ``PRelu`` as ``a * x + relu((1 - a) * x)`` (default; the
            fast form in onnxruntime); ``False`` keeps ``PRelu`` nodes.

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
        proto = onnx_from_tflite(
            tflite_float32_path, opset=opset, metadata=info, decompose_prelu=decompose_prelu
        )
    return atomic_write_bytes(path, proto.SerializeToString())
