"""InsightFace ONNX import, checked against onnxruntime on the source graph.

The ONNX files are exported here with ``torch.onnx`` (TorchScript exporter) from the
reference PyTorch architectures of ``insightface_reference`` with random weights,
non-trivial BN statistics and PReLU slopes, in the export styles people hold:

* "torch2onnx": arcface_torch's ``torch2onnx.py`` (input ``data``, dynamic batch, opset 11,
  constant folding on, eval mode: torch folds each BN that follows a Conv into it);
* "legacy": an older export (input ``input.1``, constant folding off so every BN stays a
  BatchNormalization node, PReLU slopes behind an Unsqueeze, initializers also listed as
  graph inputs);
* "submul": a graph that normalises its own input with Sub/Mul nodes (as MXNet conversions
  do); it is fed 0..255.

The oracle is onnxruntime running the source file; the Keras model is fed RGB NHWC 0..255.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from insightface_reference import (  # noqa: E402
    TorchIResNet,
    TorchMobileFaceNet,
    keras_embeddings,
    random_images,
    randomize,
)

from keras_arcface.cli import main as cli_main  # noqa: E402
from keras_arcface.models import load_insightface_onnx  # noqa: E402
from keras_arcface.models.imports import read_insightface_onnx  # noqa: E402

TOLERANCE = 1e-4


def export(model, path, style):
    """Writes ``model`` as ONNX in one of the export styles; returns the path."""
    example = torch.zeros(1, 3, 112, 112)
    common = dict(training=torch.onnx.TrainingMode.EVAL, dynamo=False)
    if style == "torch2onnx":
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=["data"],
            dynamic_axes={"data": {0: "batch"}},
            opset_version=11,
            do_constant_folding=True,
            **common,
        )
    else:
        torch.onnx.export(
            model,
            example,
            str(path),
            opset_version=11,
            do_constant_folding=False,
            keep_initializers_as_inputs=True,
            **common,
        )
    if style == "submul":
        _prepend_sub_mul(path)
    return path


def _prepend_sub_mul(path):
    """Puts Sub(127.5) and Mul(1/127.5) in front of the graph, as MXNet conversions have."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    image = next(i for i in graph.input if i.name not in initializers)
    raw = helper.make_tensor_value_info("raw", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(127.5, np.float32), "mean_127_5"),
            numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale_1_127_5"),
        ]
    )
    nodes = [
        helper.make_node("Sub", ["raw", "mean_127_5"], ["centred"], name="_minusscalar0"),
        helper.make_node("Mul", ["centred", "scale_1_127_5"], [image.name], name="_mulscalar0"),
    ]
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    inputs = [raw] + [i for i in graph.input if i.name != image.name]
    del graph.input[:]
    graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def ort_embeddings(path, images, raw_pixels):
    """onnxruntime on the source file, fed as InsightFace feeds it; float64 L2-normalised."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # initializers listed as inputs (legacy style) warn per tensor
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    nchw = images.transpose(0, 3, 1, 2)
    feed = nchw if raw_pixels else (nchw - 127.5) / 127.5
    name = session.get_inputs()[0].name
    out = np.concatenate([session.run(None, {name: x[None]})[0] for x in feed]).astype(np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def check_parity(path, raw_pixels, seed):
    images = random_images(2, seed=seed)
    model = load_insightface_onnx(path)
    got = keras_embeddings(model, images)
    expected = ort_embeddings(path, images, raw_pixels)
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    # Different images give different embeddings: the comparison is not trivially true.
    assert np.max(np.abs(expected[0] - expected[1])) > 100 * TOLERANCE
    return model


@pytest.fixture(scope="module")
def torch_r18():
    return randomize(TorchIResNet((2, 2, 2, 2), num_features=128), seed=11)


@pytest.fixture(scope="module")
def torch_mbf():
    return randomize(TorchMobileFaceNet(num_features=128), seed=12)


@pytest.fixture(scope="module")
def mbf_legacy(torch_mbf, tmp_path_factory):
    return export(torch_mbf, tmp_path_factory.mktemp("onnx") / "mbf_legacy.onnx", "legacy")


def _op_counts(path):
    counts = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def test_r18_torch2onnx_style_folded_bn(torch_r18, tmp_path):
    path = export(torch_r18, tmp_path / "r18.onnx", "torch2onnx")
    # The exporter folded the BNs after convolutions: only the pre-activation ones remain.
    assert _op_counts(path)["BatchNormalization"] == 8 + 2  # each block's bn1, the head's two
    found = read_insightface_onnx(path)
    assert (found.arch, found.embedding_dim, found.input_name) == ("r18", 128, "data")
    assert not found.normalization_in_graph
    check_parity(path, raw_pixels=False, seed=21)


def test_r18_legacy_style_unfolded_bn(torch_r18, tmp_path):
    path = export(torch_r18, tmp_path / "r18_legacy.onnx", "legacy")
    assert _op_counts(path)["BatchNormalization"] == 1 + 8 * 3 + 4 + 2  # every BN kept
    found = read_insightface_onnx(path)
    assert (found.arch, found.input_name) == ("r18", "input.1")
    check_parity(path, raw_pixels=False, seed=22)


def test_mbf_legacy_style(mbf_legacy):
    found = read_insightface_onnx(mbf_legacy)
    assert (found.arch, found.embedding_dim) == ("mbf", 128)
    check_parity(mbf_legacy, raw_pixels=False, seed=23)


def test_mbf_torch2onnx_style_with_sub_mul_preamble(torch_mbf, tmp_path):
    path = export(torch_mbf, tmp_path / "mbf_submul.onnx", "submul")
    found = read_insightface_onnx(path)
    assert found.arch == "mbf" and found.normalization_in_graph
    assert found.input_scale == pytest.approx(1 / 127.5) and found.input_offset == pytest.approx(-1)
    check_parity(path, raw_pixels=True, seed=24)
