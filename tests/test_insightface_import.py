"""InsightFace PyTorch weight import, checked against PyTorch models of the reference layout.

The PyTorch networks below are written for this test from the published reference
structure (arcface_torch's iresnet.py and mobilefacenet.py: module names, block layout,
padding, eps), with random weights and non-trivial BN statistics. They are the oracle:
the Keras model with the imported weights must give the same L2-normalized embedding.
"""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from insightface_reference import (  # noqa: E402
    TorchIResNet,
    TorchMobileFaceNet,
    keras_embeddings,
    random_images,
    randomize,
    torch_embeddings,
)

from keras_arcface.cli import main as cli_main  # noqa: E402
from keras_arcface.models import get_backbone, load_insightface_weights  # noqa: E402
from keras_arcface.models.imports import insightface_module_map  # noqa: E402

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def torch_r18():
    return randomize(TorchIResNet((2, 2, 2, 2)), seed=1)


@pytest.fixture(scope="module")
def torch_mbf():
    return randomize(TorchMobileFaceNet(num_features=128), seed=2)


@pytest.fixture(scope="module")
def keras_r18():
    # Shared: loading never leaves a model half-assigned, and each test loads what it needs.
    return get_backbone("r18")


# ---------------------------------------------------------------- tests


def test_module_map_covers_every_reference_tensor(torch_r18, torch_mbf):
    for arch, reference in (("r18", torch_r18), ("mbf", torch_mbf)):
        modules = {name for name, _ in insightface_module_map(arch)}
        parametrised = {
            name
            for name, module in reference.named_modules()
            if any(True for _ in module.parameters(recurse=False))
        }
        assert modules == parametrised


def test_r18_import_matches_pytorch(torch_r18, keras_r18):
    images = random_images(3, seed=3)
    model = keras_r18
    load_insightface_weights(model, torch_r18.state_dict(), "r18")
    expected = torch_embeddings(torch_r18, images)
    got = keras_embeddings(model, images)
    assert np.max(np.abs(got - expected)) <= 1e-4
    # The embeddings of different images differ: the comparison is not trivially true.
    assert np.max(np.abs(expected[0] - expected[1])) > 0.1


def test_mbf_import_matches_pytorch_from_pth_file(torch_mbf, tmp_path):
    path = tmp_path / "backbone.pth"
    # DistributedDataParallel checkpoints carry a 'module.' prefix: it is removed.
    torch.save({f"module.{k}": v for k, v in torch_mbf.state_dict().items()}, path)
    images = random_images(2, seed=4)
    model = get_backbone("mbf", embedding_dim=128)
    load_insightface_weights(model, str(path), "mbf")
    got = keras_embeddings(model, images)
    assert np.max(np.abs(got - torch_embeddings(torch_mbf, images))) <= 1e-4


@pytest.mark.slow
def test_r50_import_matches_pytorch():
    reference = randomize(TorchIResNet((3, 4, 14, 3)), seed=5)
    images = random_images(2, seed=6)
    model = get_backbone("r50")
    load_insightface_weights(model, reference.state_dict(), "r50")
    got = keras_embeddings(model, images)
    assert np.max(np.abs(got - torch_embeddings(reference, images))) <= 1e-4


def test_mismatching_shape_names_the_tensor_and_changes_nothing(torch_r18, keras_r18):
    state = {k: v.clone() for k, v in torch_r18.state_dict().items()}
    state["layer2.0.conv1.weight"] = torch.zeros(128, 32, 3, 3)
    model = keras_r18
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"'layer2\.0\.conv1\.weight'.*\(128, 64, 3, 3\)") as info:
        load_insightface_weights(model, state, "r18")
    assert "(128, 32, 3, 3)" in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_missing_and_unused_tensors_are_named(torch_r18, torch_mbf, keras_r18):
    model = keras_r18
    state = dict(torch_r18.state_dict())
    del state["layer3.1.bn2.running_var"]
    with pytest.raises(ValueError, match=r"'layer3\.1\.bn2\.running_var'.*missing"):
        load_insightface_weights(model, state, "r18")
    # A deeper network's checkpoint: every r18 tensor exists, the extra block is reported.
    state = dict(torch_r18.state_dict())
    state["layer1.2.bn1.weight"] = torch.ones(64)
    with pytest.raises(ValueError, match=r"'layer1\.2\.bn1\.weight'"):
        load_insightface_weights(model, state, "r18")
    # A MobileFaceNet checkpoint for an iResNet: the first tensor already fails.
    with pytest.raises(ValueError, match=r"'conv1\.weight'.*missing"):
        load_insightface_weights(model, torch_mbf.state_dict(), "r18")


def test_model_of_another_architecture_is_refused(torch_r18, keras_r18):
    # The reference iResNet has the "E" head; a GDC-headed Keras model cannot take it.
    with pytest.raises(ValueError, match="no layer 'head_bn'"):
        load_insightface_weights(get_backbone("r18", head="GDC"), torch_r18.state_dict(), "r18")
    with pytest.raises(ValueError, match="arch='r51'"):
        load_insightface_weights(keras_r18, torch_r18.state_dict(), "r51")


def test_pickled_whole_model_is_refused(tmp_path, torch_mbf, keras_r18):
    path = tmp_path / "whole_model.pth"
    torch.save(torch_mbf, path)  # a full pickle, not a state_dict: weights_only refuses it
    with pytest.raises(ValueError, match="state_dict"):
        load_insightface_weights(keras_r18, str(path), "r18")


def test_convert_insightface_cli(torch_mbf, tmp_path, capsys):
    import keras

    checkpoint = tmp_path / "mbf.pth"
    torch.save(torch_mbf.state_dict(), checkpoint)
    out = tmp_path / "sub" / "mbf.keras"
    assert cli_main(["convert-insightface", str(checkpoint), "--arch", "mbf", str(out)]) == 0
    assert "embedding 128" in capsys.readouterr().out
    model = keras.saving.load_model(out)
    images = random_images(2, seed=7)
    got = keras_embeddings(model, images)
    assert np.max(np.abs(got - torch_embeddings(torch_mbf, images))) <= 1e-4


def test_convert_insightface_cli_reports_mismatch(torch_mbf, tmp_path, capsys):
    checkpoint = tmp_path / "mbf.pth"
    torch.save(torch_mbf.state_dict(), checkpoint)
    out = tmp_path / "r18.keras"
    code = cli_main(["convert-insightface", str(checkpoint), "--arch", "r18", str(out)])
    assert code != 0
    assert "fc.weight" in capsys.readouterr().err
    assert not out.exists()


def test_missing_torch_gives_install_hint(monkeypatch, tmp_path, keras_r18):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(ImportError, match=r'pip install "keras-arcface\[torch\]"'):
        load_insightface_weights(keras_r18, str(tmp_path / "backbone.pth"), "r18")


def test_convert_insightface_cli_keeps_existing_output(tmp_path, capsys):
    out = tmp_path / "existing.keras"
    out.write_bytes(b"keep me")
    code = cli_main(["convert-insightface", str(tmp_path / "x.pth"), "--arch", "r18", str(out)])
    assert code == 2 and out.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err
