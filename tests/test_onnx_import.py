"""InsightFace ONNX import, checked against onnxruntime on the source graph.

The ONNX files are exported here with ``torch.onnx`` (TorchScript exporter) from the
reference PyTorch architectures of ``insightface_reference`` with random weights,
non-trivial BN statistics and PReLU slopes, in the export styles people hold:

* "torch2onnx": arcface_torch's ``torch2onnx.py`` (input ``data``, dynamic batch, opset 11,
  constant folding on, eval mode: torch folds each BN that follows a Conv into it);
* "legacy": an older export (input ``input.1``, constant folding off so every BN stays a
  BatchNormalization node, PReLU slopes behind an Unsqueeze, initializers also listed as
  graph inputs);
* "submul": a graph that normalizes its own input with Sub/Mul nodes (as MXNet conversions
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
        helper.make_node("Sub", ["raw", "mean_127_5"], ["centered"], name="_minusscalar0"),
        helper.make_node("Mul", ["centered", "scale_1_127_5"], [image.name], name="_mulscalar0"),
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
    """onnxruntime on the source file, fed as InsightFace feeds it; float64 L2-normalized."""
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


@pytest.mark.slow
def test_r18_legacy_style_unfolded_bn(torch_r18, tmp_path):
    path = export(torch_r18, tmp_path / "r18_legacy.onnx", "legacy")
    assert _op_counts(path)["BatchNormalization"] == 1 + 8 * 3 + 4 + 2  # every BN kept
    found = read_insightface_onnx(path)
    assert (found.arch, found.input_name) == ("r18", "input.1")
    check_parity(path, raw_pixels=False, seed=22)


@pytest.mark.slow  # the command-line test checks the same file's parity in the default run
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


# ---------------------------------------------------------------- command line and bad input


def test_convert_onnx_cli_writes_a_model_with_the_package_contract(mbf_legacy, tmp_path, capsys):
    import keras

    out = tmp_path / "sub" / "mbf.keras"
    assert cli_main(["convert-onnx", str(mbf_legacy), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "arch mbf" in printed and "embedding 128" in printed
    model = keras.saving.load_model(out)
    assert model.input.shape[1:] == (112, 112, 3) and model.input.name == "images"
    images = random_images(2, seed=25)
    expected = ort_embeddings(mbf_legacy, images, raw_pixels=False)
    assert np.max(np.abs(keras_embeddings(model, images) - expected)) <= TOLERANCE


def _assert_refused(path, tmp_path, capsys, *patterns):
    out = tmp_path / "out.keras"
    assert cli_main(["convert-onnx", str(path), str(out)]) == 1
    message = capsys.readouterr().err
    for pattern in patterns:
        assert pattern in message, message
    assert not out.exists() and not list(tmp_path.glob("*.keras"))  # nothing written
    with pytest.raises(ValueError):
        read_insightface_onnx(path)


def test_truncated_and_non_onnx_files_are_refused(mbf_legacy, tmp_path, capsys):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(mbf_legacy.read_bytes()[:50_000])
    _assert_refused(truncated, tmp_path, capsys, "Could not read the file as an ONNX model")
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 10)
    _assert_refused(text, tmp_path, capsys, "Could not read the file as an ONNX model")


@pytest.mark.slow
def test_deeper_iresnet_names_the_first_extra_block(tmp_path, capsys):
    # An iResNet with one block too many in the last stage: no preset has these depths.
    model = randomize(TorchIResNet((2, 2, 2, 3), num_features=64), seed=13)
    path = export(model, tmp_path / "r19.onnx", "torch2onnx")
    _assert_refused(path, tmp_path, capsys, "closest architecture is 'r18'", "extra block")


def test_graph_of_another_network_names_the_node(tmp_path, capsys):
    other = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()
    path = export(other, tmp_path / "classifier.onnx", "torch2onnx")
    _assert_refused(path, tmp_path, capsys, "not an InsightFace iResNet", "Relu")


def test_old_import_paths_still_work_with_a_deprecation_warning():
    import importlib
    import sys

    for name in ("insightface_import", "convert_insightface"):
        sys.modules.pop(f"keras_arcface.models.{name}", None)
        with pytest.warns(DeprecationWarning, match="keras_arcface.models.imports"):
            module = importlib.import_module(f"keras_arcface.models.{name}")
        assert callable(getattr(module, "convert", None) or module.load_insightface_weights)


@pytest.mark.slow
def test_onnx_to_tflite_command_chain(mbf_legacy, tmp_path):
    """The documented chain: convert-onnx, then export to TFLite behind the parity gate."""
    from ai_edge_litert.interpreter import Interpreter

    keras_path = tmp_path / "w600k_mbf.keras"
    assert cli_main(["convert-onnx", str(mbf_legacy), str(keras_path)]) == 0
    out = tmp_path / "export"
    code = cli_main(
        ["export", str(keras_path), "--out", str(out), "--formats", "tflite", "--quantize", ""]
    )
    assert code == 0
    interpreter = Interpreter(model_path=str(next(out.glob("*float32*.tflite"))))
    interpreter.allocate_tensors()
    images = random_images(1, seed=26)
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], images)
    interpreter.invoke()
    got = interpreter.get_tensor(outp["index"]).astype(np.float64)
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    expected = ort_embeddings(mbf_legacy, images, raw_pixels=False)
    assert np.max(np.abs(got - expected)) <= 1e-3  # float32 TFLite vs the source ONNX graph
