"""Reader of InsightFace ONNX recognition models (``w600k_r50.onnx``, ``glintr100.onnx`` ...).

InsightFace's model packs hold ONNX graphs only. This reader recognises the architecture
from the graph's structure (initializer shapes and the data flow from the image input),
never from node or tensor names, which differ between exporters: it walks the graph
unit by unit (convolution with its batch norm, folded or not; PReLU; residual additions;
the embedding head), compares the stages it found with the presets, and returns the
parameters under their reference names, in the PyTorch layout. ``mapping.py`` then
assigns them to the Keras backbone, exactly as for a ``.pth`` checkpoint.

Handled: ``torch.onnx`` exports with and without constant folding (batch norm folded into
the preceding convolution, or kept), any input name, dynamic or fixed batch, and graphs
converted from MXNet whose first nodes normalize the pixels (``Sub``/``Mul``: these take
0..255 input, which the Keras model's normalization layer then reproduces).
"""

import dataclasses

import numpy as np

from keras_arcface.models.imports.mapping import insightface_module_map
from keras_arcface.models.imports.onnx_graph import GraphMismatch, OnnxGraph, load_model
from keras_arcface.models.presets import PRESETS

IRESNET_ARCHS = ("r18", "r34", "r50", "r100", "r200")
MOBILEFACENET_ARCHS = ("mbf", "mobilefacenet")
_AFFINE_OPS = ("Sub", "Add", "Mul", "Div")


@dataclasses.dataclass
class OnnxImport:
    """What the reader recovered from a graph.

    Attributes:
        arch: the matching preset ("r50", "mbf" ...).
        embedding_dim: the embedding size.
        tensors: reference parameter name -> float32 array (PyTorch layout).
        input_name: the graph's image input.
        input_scale, input_offset: the pixel normalization ``x * scale + offset`` the model
            applies to 0..255 RGB input: read from the graph's Sub/Mul preamble, or
            InsightFace's ``(x - 127.5) / 127.5`` when the graph has none.
        normalization_in_graph: whether the graph carries the normalization itself (then
            it is fed 0..255; otherwise it is fed normalized pixels).
    """

    arch: str
    embedding_dim: int
    tensors: dict
    input_name: str
    input_scale: float = 1.0 / 127.5
    input_offset: float = -1.0
    normalization_in_graph: bool = False


def read_insightface_onnx(path):
    """Reads an ONNX recognition model and recognises its architecture.

    Args:
        path: the ``.onnx`` file.

    Returns:
        An ``OnnxImport``.

    Raises:
        ValueError: the file is not a readable ONNX model, or its graph matches no
            supported architecture (the message names the first node or shape that did
            not match).

    Example:
        >>> found = read_insightface_onnx("buffalo_l/w600k_r50.onnx")
        >>> found.arch, found.embedding_dim
        ('r50', 512)
    """
    graph = OnnxGraph(load_model(path))
    name, shape = graph.image_input()
    if len(shape) != 4 or shape[1] != 3 or any(d not in (None, 112) for d in shape[2:]):
        raise ValueError(
            "Expected an image input of shape [N, 3, 112, 112] (NCHW, as InsightFace's "
            f"recognition models take). Received: input '{name}' with shape {shape}"
        )
    scale, offset, start = _preamble(graph, name)
    failures = []
    for walk in (_walk_iresnet, _walk_mobilefacenet):
        graph.depth = 0
        try:
            arch, modules = walk(graph, start)
        except GraphMismatch as error:
            failures.append(error)
            continue
        found = OnnxImport(arch, 0, _reference_tensors(arch, modules), name)
        found.embedding_dim = int(found.tensors[_fc_name(arch)].shape[0])
        if scale is not None:
            found.input_scale, found.input_offset = scale, offset
            found.normalization_in_graph = True
        return found
    best = max(failures, key=lambda error: error.depth)
    raise ValueError(
        f"The ONNX graph in {str(path)!r} is not an InsightFace iResNet "
        f"(r18/r34/r50/r100/r200) or MobileFaceNet (mbf). {best}"
    ) from best


def _fc_name(arch):
    torch_fc = next(t for t, k in insightface_module_map(arch) if k == "head_fc")
    return f"{torch_fc}.weight"


def _reference_tensors(arch, modules):
    """Names the walked units with the reference map (the one mapping, shared with .pth)."""
    names = [torch_name for torch_name, _ in insightface_module_map(arch)]
    if len(names) != len(modules):
        raise GraphMismatch(
            f"The graph has {len(modules)} parametrised units where arch={arch!r} has "
            f"{len(names)}. Received: {len(modules)} units"
        )
    tensors = {}
    for torch_name, (_, values) in zip(names, modules):
        for suffix, value in values.items():
            tensors[f"{torch_name}.{suffix}"] = np.asarray(value, dtype=np.float32)
    return tensors


# ---------------------------------------------------------------- input normalization


def _preamble(graph, tensor):
    """Composes leading Sub/Add/Mul/Div-by-constant nodes into ``x * scale + offset``."""
    scale, offset, seen = 1.0, 0.0, False
    while True:
        nodes = graph.data_consumers(tensor)
        if len(nodes) != 1 or nodes[0].op_type not in _AFFINE_OPS:
            break
        node = nodes[0]
        data_index = list(node.input).index(tensor)
        constant = graph.constant(node.input[1 - data_index])
        if constant is None or (node.op_type in ("Sub", "Div") and data_index != 0):
            break
        value = _uniform(graph, node, np.asarray(constant, dtype=np.float64))
        if node.op_type == "Sub":
            offset -= value
        elif node.op_type == "Add":
            offset += value
        elif node.op_type == "Mul":
            scale, offset = scale * value, offset * value
        else:
            scale, offset = scale / value, offset / value
        tensor, seen = node.output[0], True
    return (scale, offset, tensor) if seen else (None, None, tensor)


def _uniform(graph, node, constant):
    if constant.size != 1 and not np.allclose(constant, constant.reshape(-1)[0]):
        raise ValueError(
            f"The graph normalizes each colour channel differently at node '{node.name}' "
            f"({node.op_type}); expected one value for all channels, as InsightFace's "
            f"models use. Received: {constant.reshape(-1).tolist()}"
        )
    return float(constant.reshape(-1)[0])


# ---------------------------------------------------------------- shared pieces


def _op_types(nodes):
    return [f"{n.op_type} '{n.name}'" for n in nodes]


def _shown(attrs, keys=("kernel", "stride", "pads", "group", "shape")):
    return {key: attrs[key] for key in keys}


def _check_conv(graph, attrs, kernel, stride=None, group=1, pad=None, what="convolution"):
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    pad = kernel[0] // 2 if pad is None else pad
    expected = {"kernel": kernel, "pads": (pad,) * 4, "group": group}
    if stride is not None:
        expected["stride"] = (stride, stride)
    got = _shown(attrs, expected)
    if got != expected:
        raise graph.mismatch(attrs["node"], f"a {what} with {expected}", got)


def _head_fc(graph, tensor, has_bias):
    """Flatten -> Gemm/MatMul(+Add) -> BatchNormalization -> graph output."""
    flatten = graph.next_node(tensor, ("Flatten", "Reshape"), "the flatten before the FC")
    node = graph.next_node(flatten.output[0], ("Gemm", "MatMul"), "the embedding FC")
    weight = graph.required_constant(node, 1, "FC weight")
    attrs = {a.name: a for a in node.attribute}
    bias, output = None, node.output[0]
    if node.op_type == "Gemm":
        if "transA" in attrs and attrs["transA"].i:
            raise graph.mismatch(node, "a Gemm with transA=0", "transA=1")
        transposed = "transB" in attrs and attrs["transB"].i
        weight = (weight if transposed else weight.T) * (
            attrs["alpha"].f if "alpha" in attrs else 1
        )
        if len(node.input) > 2 and node.input[2]:
            beta = attrs["beta"].f if "beta" in attrs else 1.0
            bias = graph.required_constant(node, 2, "FC bias") * beta
    else:
        weight = weight.T
        following = graph.data_consumers(output)
        if len(following) == 1 and following[0].op_type == "Add":
            other = [i for i in following[0].input if i != output]
            bias = graph.constant(other[0]) if other else None
            output = following[0].output[0] if bias is not None else output
    graph.depth += 1
    bn_modules, output = graph.batch_norm(output, "the embedding batch norm after the FC")
    if not graph.is_output(output):
        nodes = graph.data_consumers(output)
        raise graph.mismatch(nodes[0], "the embedding to be the graph's output", "more nodes")
    if bias is not None and not has_bias:  # BN(z + b) == BN with running_mean - b
        bn_modules[0][1]["running_mean"] = bn_modules[0][1]["running_mean"] - bias.reshape(-1)
    fc = {"weight": weight}
    if has_bias:
        fc["bias"] = np.zeros(weight.shape[0]) if bias is None else bias.reshape(-1)
    return [("fc", fc)] + bn_modules


def _match(graph, observed, starts, candidates):
    """The candidate whose block signature equals ``observed``, or a mismatch naming where."""
    best, best_length = None, -1
    for arch, expected in candidates.items():
        if observed == expected:
            return arch
        length = next(
            (i for i, (a, b) in enumerate(zip(observed, expected)) if a != b),
            min(len(observed), len(expected)),
        )
        if length > best_length:
            best, best_length = arch, length
    expected = candidates[best]
    if best_length < len(observed) and best_length < len(expected):
        where = f"the block starting at node '{starts[best_length].name}'"
        detail = f"expected {expected[best_length]}. Received: {observed[best_length]}"
    elif len(observed) > len(expected):
        where = f"the extra block starting at node '{starts[best_length].name}'"
        detail = f"expected the head after {len(expected) - 1} blocks. Received: another block"
    else:
        where = "the end of the body"
        detail = f"expected {expected[best_length]}. Received: the head"
    raise GraphMismatch(
        f"The closest architecture is {best!r}, which differs at {where}: {detail}",
        graph.depth,
    )


# ---------------------------------------------------------------- iResNet


def _iresnet_signature(preset):
    strides = preset.get("strides") or [2] * len(preset["depths"])
    signature = [("stem", preset.get("stem_channels", 64), preset.get("stem_stride", 1))]
    for depth, width, stride in zip(preset["depths"], preset["widths"], strides):
        signature.append(("block", width, stride, True))
        signature += [("block", width, 1, False)] * (depth - 1)
    return signature


def _walk_iresnet(graph, tensor):
    attrs, modules, tensor = graph.conv(tensor, "the stem convolution")
    _check_conv(graph, attrs, 3, what="3x3 stem convolution")
    channels = attrs["shape"][0]
    prelu, tensor = graph.prelu(tensor, channels, "the stem PReLU")
    modules += prelu
    signature, starts = [("stem", channels, attrs["stride"][0])], [attrs["node"]]
    while len(graph.data_consumers(tensor)) > 1:
        start = graph.data_consumers(tensor)
        block, tensor, entry = _iresnet_block(graph, tensor)
        modules += block
        signature.append(entry)
        starts.append(start[0])
    arch = _match(
        graph, signature, starts, {a: _iresnet_signature(PRESETS[a]) for a in IRESNET_ARCHS}
    )
    bn, tensor = graph.batch_norm(tensor, "the head's batch norm")
    return arch, modules + bn + _head_fc(graph, tensor, has_bias=True)


def _iresnet_block(graph, tensor):
    """BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the shortcut, -> Add."""
    nodes = graph.data_consumers(tensor)
    bns = [n for n in nodes if n.op_type == "BatchNormalization"]
    others = [n for n in nodes if n.op_type != "BatchNormalization"]
    if len(bns) != 1 or len(others) != 1 or others[0].op_type not in ("Add", "Conv"):
        raise graph.mismatch(
            nodes[0],
            "a residual block (a batch norm plus an Add or 1x1 Conv shortcut)",
            _op_types(nodes),
        )
    modules, y = graph.batch_norm_at(bns[0])
    conv1, conv1_modules, y = graph.conv(y, "the block's first 3x3 convolution")
    _check_conv(graph, conv1, 3, stride=1)
    width = conv1["shape"][0]
    prelu, y = graph.prelu(y, width, "the block's PReLU")
    conv2, conv2_modules, y = graph.conv(y, "the block's second 3x3 convolution")
    _check_conv(graph, conv2, 3)
    stride = conv2["stride"][0]
    modules += conv1_modules + prelu + conv2_modules
    add = graph.next_node(y, ("Add",), "the residual addition")
    if others[0].op_type == "Conv":
        down, down_modules, shortcut = graph.conv_at(others[0])
        _check_conv(graph, down, 1, stride=stride, what="1x1 shortcut convolution")
        if add not in graph.data_consumers(shortcut):
            raise graph.mismatch(add, "the shortcut to join the residual addition", "another input")
        modules += down_modules
    elif others[0] is not add:
        raise graph.mismatch(others[0], "the block input to join the residual addition", add.name)
    return modules, add.output[0], ("block", width, stride, others[0].op_type == "Conv")


# ---------------------------------------------------------------- MobileFaceNet


def _mobilefacenet_signature(preset):
    signature = [("stem", preset["stem_channels"], preset["stem_groups"])]
    for channels, down_expansion, num_residual, expansion in preset["stages"]:
        signature.append(("bottleneck", False, channels, down_expansion))
        signature += [("bottleneck", True, channels, expansion)] * num_residual
    return signature + [("sep", preset["sep_channels"])]


def _walk_mobilefacenet(graph, tensor):
    stem, modules, tensor = graph.conv(tensor, "the stem convolution")
    _check_conv(graph, stem, 3, stride=2, what="3x3 stride-2 stem convolution")
    channels = stem["shape"][0]
    prelu, tensor = graph.prelu(tensor, channels, "the stem PReLU")
    modules += prelu
    stem_dw, dw_modules, tensor = graph.conv(tensor, "the grouped stem convolution")
    group = stem_dw["group"]
    _check_conv(graph, stem_dw, 3, stride=1, group=group, what="grouped 3x3 convolution")
    prelu, tensor = graph.prelu(tensor, stem_dw["shape"][0], "the grouped stem's PReLU")
    modules += dw_modules + prelu
    signature, starts = [("stem", channels, group)], [stem["node"]]
    while True:
        starts.append(next(iter(graph.data_consumers(tensor)), stem["node"]))
        block, tensor, entry, head = _mobilefacenet_block(graph, tensor)
        modules += block
        signature.append(entry)
        if head is not None:
            break
    arch = _match(
        graph,
        signature,
        starts,
        {a: _mobilefacenet_signature(PRESETS[a]) for a in MOBILEFACENET_ARCHS},
    )
    return arch, modules + head + _head_fc(graph, tensor, has_bias=False)


def _mobilefacenet_block(graph, tensor):
    """A bottleneck (1x1 -> depthwise 3x3 -> 1x1, + input if residual) or the sep+GDC end."""
    nodes = graph.data_consumers(tensor)
    residual = sorted(n.op_type for n in nodes) == ["Add", "Conv"]
    if not residual and (len(nodes) != 1 or nodes[0].op_type != "Conv"):
        graph.next_node(tensor, ("Conv",), "a 1x1 convolution (bottleneck or final 1x1)")
    conv_node = next(n for n in nodes if n.op_type == "Conv")
    expand, modules, y = graph.conv_at(conv_node)
    _check_conv(graph, expand, 1, stride=1, what="1x1 convolution")
    expansion = expand["shape"][0]
    prelu, y = graph.prelu(y, expansion)
    modules += prelu
    dw, dw_modules, y = graph.conv(y, "a depthwise convolution")
    if dw["group"] != expansion or dw["shape"][1] != 1:
        raise graph.mismatch(
            dw["node"], f"a depthwise convolution ({expansion} groups)", _shown(dw)
        )
    if dw["kernel"] != (3, 3) and not residual:  # conv_sep, then the GDC head's 7x7
        _check_conv(graph, dw, 7, stride=1, group=expansion, pad=0, what="GDC convolution")
        return modules, y, ("sep", expansion), dw_modules
    _check_conv(graph, dw, 3, stride=1 if residual else 2, group=expansion, what="depthwise")
    prelu, y = graph.prelu(y, expansion)
    project, project_modules, y = graph.conv(y, "the 1x1 projection")
    _check_conv(graph, project, 1, stride=1, what="1x1 projection")
    modules += dw_modules + prelu + project_modules
    if residual:
        add = graph.next_node(y, ("Add",), "the residual addition")
        if add not in nodes:
            raise graph.mismatch(add, "the block input to join the residual addition", add.input)
        y = add.output[0]
    return modules, y, ("bottleneck", residual, project["shape"][0], expansion), None
