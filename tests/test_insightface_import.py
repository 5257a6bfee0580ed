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

from keras_arcface.cli import main as cli_main  # noqa: E402
from keras_arcface.models import get_backbone, load_insightface_weights  # noqa: E402
from keras_arcface.models.insightface_import import insightface_module_map  # noqa: E402

# ---------------------------------------------------------------- PyTorch reference nets


class TorchIBasicBlock(nn.Module):
    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels, eps=1e-5),
            )

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.prelu(self.bn2(self.conv1(self.bn1(x))))
        return self.bn3(self.conv2(y)) + shortcut


class TorchIResNet(nn.Module):
    def __init__(self, depths, num_features=512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        in_channels = 64
        for stage, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512)), 1):
            blocks = [TorchIBasicBlock(in_channels, width, 2)]
            blocks += [TorchIBasicBlock(width, width, 1) for _ in range(depth - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            in_channels = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class TorchConvBlock(nn.Module):
    def __init__(self, in_c, out_c, kernel=1, stride=1, padding=0, groups=1, activation=True):
        super().__init__()
        modules = [
            nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
        ]
        if activation:
            modules.append(nn.PReLU(out_c))
        self.layers = nn.Sequential(*modules)

    def forward(self, x):
        return self.layers(x)


class TorchDepthWise(nn.Module):
    def __init__(self, in_c, out_c, residual, stride, groups):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            TorchConvBlock(in_c, groups),
            TorchConvBlock(groups, groups, 3, stride, 1, groups=groups),
            TorchConvBlock(groups, out_c, activation=False),
        )

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


class TorchResidual(nn.Module):
    def __init__(self, channels, num_block, groups):
        super().__init__()
        blocks = [TorchDepthWise(channels, channels, True, 1, groups) for _ in range(num_block)]
        self.layers = nn.Sequential(*blocks)

    def forward(self, x):
        return self.layers(x)


class TorchGDC(nn.Module):
    def __init__(self, num_features):
        super().__init__()
        self.layers = nn.Sequential(
            TorchConvBlock(512, 512, 7, 1, 0, groups=512, activation=False),
            nn.Flatten(),
            nn.Linear(512, num_features, bias=False),
            nn.BatchNorm1d(num_features),
        )

    def forward(self, x):
        return self.layers(x)


class TorchMobileFaceNet(nn.Module):
    """The reference 'mbf' (scale 2, blocks (1, 4, 6, 2))."""

    def __init__(self, num_features=512):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                TorchConvBlock(3, 128, 3, 2, 1),
                TorchConvBlock(128, 128, 3, 1, 1, groups=64),
                TorchDepthWise(128, 128, False, 2, 128),
                TorchResidual(128, 4, 128),
                TorchDepthWise(128, 256, False, 2, 256),
                TorchResidual(256, 6, 256),
                TorchDepthWise(256, 256, False, 2, 512),
                TorchResidual(256, 2, 256),
            ]
        )
        self.conv_sep = TorchConvBlock(256, 512)
        self.features = TorchGDC(num_features)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


# ---------------------------------------------------------------- helpers


def randomize(model, seed):
    """Random weights with non-trivial BN statistics and PReLU slopes; eval mode."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(tensor, low, high):
        tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                if module.bias is not None:
                    uniform(module.bias, -0.2, 0.2)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                uniform(module.weight, 0.5, 1.5)
                uniform(module.bias, -0.3, 0.3)
                uniform(module.running_mean, -0.3, 0.3)
                uniform(module.running_var, 0.5, 2.0)
            elif isinstance(module, nn.PReLU):
                uniform(module.weight, 0.05, 0.45)
    return model.eval()


def random_images(count, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 112, 112, 3)).astype(np.float32)


def torch_embeddings(model, images):
    """Reference forward: InsightFace's normalization, NCHW, float64 L2 normalization."""
    x = torch.from_numpy(((images - 127.5) / 127.5).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        out = model(x).double().numpy()
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def keras_embeddings(model, images):
    out = np.asarray(model(images, training=False), dtype=np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


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
