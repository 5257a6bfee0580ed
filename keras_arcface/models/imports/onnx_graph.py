"""A read-only view of an ONNX graph for the structural importer.

The importer follows the data flow from the image input, one parametrised unit at a time
(convolution, batch norm, PReLU, fully connected). This module gives it what it needs and
nothing about node names: who consumes a tensor, the constant value of a tensor (an
initializer, a ``Constant`` node, or a small constant sub-graph such as the ``Unsqueeze``
that ``torch.onnx`` puts in front of PReLU slopes, evaluated with ``onnx.reference``), and
the units themselves with the batch norm folded or not.

Node names appear only in error messages, to say where a graph stopped matching.
"""

import collections
import os

import numpy as np

_ONNX_HINT = 'Reading ONNX graphs needs the onnx package: pip install "keras-arcface[export]"'
# Nodes that pass their first input through unchanged at inference.
_PASS_THROUGH = ("Identity", "Dropout")
# Nodes that only read a tensor's shape (a Reshape's shape sub-graph): not data flow.
_SHAPE_READERS = ("Shape", "Size")
KERAS_BN_EPSILON = 1e-5


class GraphMismatch(ValueError):
    """The graph differs from the expected structure; ``depth`` is how far matching got."""

    def __init__(self, message, depth=0):
        super().__init__(message)
        self.depth = depth


def import_onnx():
    """Imports ``onnx`` or raises ``ImportError`` with the install hint."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError(_ONNX_HINT) from error
    return onnx


def load_model(path):
    """Reads and checks an ONNX file; a truncated or non-ONNX file is a ``ValueError``."""
    onnx = import_onnx()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No ONNX file at {path!r}")
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as error:  # DecodeError, ValidationError, ... depending on the damage
        raise ValueError(
            "Could not read the file as an ONNX model (truncated, or not ONNX at all?); "
            "expected an ONNX recognition model such as InsightFace's w600k_r50.onnx. "
            f"Received: path={path!r} ({type(error).__name__}: {str(error)[:200]})"
        ) from error
    if not model.graph.node:
        raise ValueError(f"The ONNX file holds an empty graph. Received: path={path!r}")
    return model


def _describe(node):
    return f"node '{node.name or '(unnamed)'}' ({node.op_type})"


class OnnxGraph:
    """Consumers, producers and constants of one ONNX graph.

    Args:
        model: an ``onnx.ModelProto``.
    """

    def __init__(self, model):
        onnx = import_onnx()
        self.model = model
        self.graph = model.graph
        self._to_array = onnx.numpy_helper.to_array
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers = collections.defaultdict(list)
        for node in self.graph.node:
            for index, name in enumerate(node.input):
                self.consumers[name].append((node, index))
        self._constants = {}
        self.depth = 0  # parametrised units matched so far (for the error of the best guess)

    # ------------------------------------------------------------ inputs and constants

    def image_input(self):
        """The one graph input that is not an initializer: ``(name, shape)``."""
        inputs = [i for i in self.graph.input if i.name not in self.initializers]
        if len(inputs) != 1:
            raise GraphMismatch(
                "A recognition graph has one image input; expected 1 non-constant input. "
                f"Received: inputs={[i.name for i in inputs]}"
            )
        dims = inputs[0].type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        return inputs[0].name, shape

    def constant(self, name):
        """The value of ``name`` if it is constant (float64 NumPy), else ``None``."""
        if name in self._constants:
            return self._constants[name]
        value = None
        if name in self.initializers:
            value = self._to_array(self.initializers[name])
        elif name in self.producer:
            value = self._fold(self.producer[name], name)
        self._constants[name] = value
        return value

    def _fold(self, node, name):
        if node.op_type == "Constant":
            attribute = next(a for a in node.attribute if a.name == "value")
            return self._to_array(attribute.t)
        inputs = [self.constant(i) if i else None for i in node.input]
        if not node.input or any(v is None for v, i in zip(inputs, node.input) if i):
            return None
        outputs = self._evaluate(node, inputs)
        return outputs[list(node.output).index(name)]

    def _evaluate(self, node, inputs):
        """Runs one node on constant inputs with ``onnx.reference`` at the graph's opsets."""
        onnx = import_onnx()
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        value_infos = [
            helper.make_tensor_value_info(
                i, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.shape(v)
            )
            for i, v in zip(node.input, inputs)
            if i
        ]
        outputs = [helper.make_empty_tensor_value_info(o) for o in node.output]
        graph = helper.make_graph([node], "fold", value_infos, outputs)
        single = helper.make_model(graph, opset_imports=list(self.model.opset_import))
        single.ir_version = self.model.ir_version
        feeds = {i: np.asarray(v) for i, v in zip(node.input, inputs) if i}
        del onnx
        return ReferenceEvaluator(single).run(None, feeds)

    def required_constant(self, node, index, what):
        """The constant input ``index`` of ``node``, or a mismatch naming the node."""
        value = self.constant(node.input[index]) if index < len(node.input) else None
        if value is None:
            raise self.mismatch(node, f"a constant {what}", "a computed input")
        return np.asarray(value, dtype=np.float64)

    # ------------------------------------------------------------ data flow

    def data_consumers(self, tensor):
        """Nodes reading ``tensor`` as data, looking through Identity/Dropout."""
        found = []
        for node, index in self.consumers.get(tensor, []):
            if node.op_type in _SHAPE_READERS or (node.op_type == "Reshape" and index == 1):
                continue
            if node.op_type in _PASS_THROUGH and index == 0:
                found += self.data_consumers(node.output[0])
            else:
                found.append(node)
        return found

    def is_output(self, tensor):
        """Whether ``tensor`` (possibly through Identity/Dropout) is a graph output."""
        outputs = {o.name for o in self.graph.output}
        if tensor in outputs:
            return True
        return any(
            n.op_type in _PASS_THROUGH and self.is_output(n.output[0])
            for n, i in self.consumers.get(tensor, [])
            if i == 0
        )

    def next_node(self, tensor, op_types, expected):
        """The single data consumer of ``tensor``, which must be one of ``op_types``."""
        nodes = self.data_consumers(tensor)
        if len(nodes) != 1 or nodes[0].op_type not in op_types:
            received = ", ".join(_describe(n) for n in nodes) or "the end of the graph"
            raise GraphMismatch(
                f"The graph does not match at tensor '{tensor}': expected {expected}. "
                f"Received: {received}",
                self.depth,
            )
        return nodes[0]

    def mismatch(self, node, expected, received):
        """A ``GraphMismatch`` naming ``node``."""
        return GraphMismatch(
            f"The graph does not match at {_describe(node)}: expected {expected}. "
            f"Received: {received}",
            self.depth,
        )

    # ------------------------------------------------------------ parametrised units

    def conv(self, tensor, expected="a convolution"):
        """Conv (+ BN, folded or not) reading ``tensor``.

        Returns:
            ``(attributes, modules, output)``: the Conv's ``kernel``, ``stride``, ``pads``,
            ``group`` and weight ``shape``; the reference modules ``[("conv", ...),
            ("bn", ...)]`` (a BN folded into the Conv comes back as a BN with unit
            statistics whose shift is the Conv's bias); the output tensor.
        """
        return self.conv_at(self.next_node(tensor, ("Conv",), expected))

    def conv_at(self, node):
        """``conv`` starting at the Conv ``node`` (for a tensor read by several nodes)."""
        weight = self.required_constant(node, 1, "convolution weight")
        bias = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        attrs = _conv_attributes(node, weight.shape)
        attrs["node"] = node
        if attrs["dilations"] != (1, 1) or weight.ndim != 4:
            raise self.mismatch(node, "an undilated 2-D convolution", attrs)
        self.depth += 1
        following = self.data_consumers(node.output[0])
        if len(following) == 1 and following[0].op_type == "BatchNormalization":
            bn, output = self._batch_norm(following[0])
            if bias is not None:  # BN(z + b) == BN with running_mean - b
                bn["running_mean"] = bn["running_mean"] - bias
        else:
            channels = weight.shape[0]
            bn = _identity_bn(channels, np.zeros(channels) if bias is None else bias)
            output = node.output[0]
        return attrs, [("conv", {"weight": weight}), ("bn", bn)], output

    def batch_norm(self, tensor, expected="a batch norm"):
        """A BatchNormalization reading ``tensor``: ``(modules, output)``."""
        return self.batch_norm_at(self.next_node(tensor, ("BatchNormalization",), expected))

    def batch_norm_at(self, node):
        """``batch_norm`` starting at the BatchNormalization ``node``."""
        bn, output = self._batch_norm(node)
        return [("bn", bn)], output

    def _batch_norm(self, node):
        names = ("weight", "bias", "running_mean", "running_var")
        bn = {
            n: self.required_constant(node, i + 1, f"batch norm {n}") for i, n in enumerate(names)
        }
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        # Keras uses epsilon 1e-5: var + eps is what divides, so move the difference into var.
        bn["running_var"] = bn["running_var"] + (epsilon - KERAS_BN_EPSILON)
        self.depth += 1
        return bn, node.output[0]

    def prelu(self, tensor, channels, expected="a PReLU"):
        """A PRelu reading ``tensor`` with per-channel (or one shared) slopes."""
        node = self.next_node(tensor, ("PRelu",), expected)
        slope = self.required_constant(node, 1, "PReLU slope").reshape(-1)
        if slope.size == 1:
            slope = np.full(channels, slope[0])
        if slope.size != channels:
            raise self.mismatch(node, f"{channels} PReLU slopes", f"{slope.size}")
        self.depth += 1
        return [("prelu", {"weight": slope})], node.output[0]


def _conv_attributes(node, weight_shape):
    attrs = {a.name: a for a in node.attribute}

    def ints(name, default):
        return tuple(attrs[name].ints) if name in attrs else default

    group = attrs["group"].i if "group" in attrs else 1
    if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
        pads = ("auto_pad", attrs["auto_pad"].s.decode())
    else:
        pads = ints("pads", (0, 0, 0, 0))
    return {
        "kernel": tuple(weight_shape[2:]),
        "stride": ints("strides", (1, 1)),
        "pads": pads,
        "group": group,
        "dilations": ints("dilations", (1, 1)),
        "shape": tuple(weight_shape),
    }


def _identity_bn(channels, shift):
    """A BN that adds ``shift``: unit scale, zero mean, variance 1 - eps (Keras' epsilon)."""
    return {
        "weight": np.ones(channels),
        "bias": np.asarray(shift, dtype=np.float64),
        "running_mean": np.zeros(channels),
        "running_var": np.full(channels, 1.0 - KERAS_BN_EPSILON),
    }
