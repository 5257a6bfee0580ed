"""``keras-arcface eval`` end to end: a tiny saved Keras embedding model and a small .bin."""

import json
import os

import numpy as np
import pytest

from keras_arcface.cli import main as cli_main
from keras_arcface.evaluation import verification_metrics


def tiny_embedding_model(seed=0):
    import keras

    images = keras.Input(shape=(112, 112, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(images)
    x = keras.layers.AveragePooling2D(pool_size=8)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, kernel_initializer=keras.initializers.GlorotNormal(seed))(x)
    x = keras.layers.Dense(16, kernel_initializer=keras.initializers.GlorotNormal(seed + 1))(x)
    return keras.Model(images, x, name="tiny_embedding")


def face_like_images(num_identities, per_identity, seed=0):
    """Blocky 112x112 images: one random 14x14 pattern per identity plus per-image noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, size=(num_identities, 14, 14, 3))
    labels = np.repeat(np.arange(num_identities), per_identity)
    small = patterns[labels] + rng.integers(-60, 61, size=(len(labels), 14, 14, 3))
    images = np.clip(small, 0, 255).repeat(8, axis=1).repeat(8, axis=2).astype(np.uint8)
    return images, labels


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from keras_arcface.data import write_bin

    root = tmp_path_factory.mktemp("eval_cli")
    model = tiny_embedding_model()
    model_path = str(root / "tiny.keras")
    model.save(model_path)
    run_dir = root / "run"
    run_dir.mkdir()
    tiny_embedding_model(seed=7).save(str(run_dir / "embedding_latest.keras"))

    faces, labels = face_like_images(20, 2)
    rng = np.random.default_rng(1)
    issame = np.arange(40) % 2 == 0
    first = rng.integers(0, 20, size=40)
    second = np.where(issame, first, (first + rng.integers(1, 20, size=40)) % 20)
    pair_images = np.empty((80, 112, 112, 3), np.uint8)
    pair_images[0::2] = faces[2 * first]
    pair_images[1::2] = faces[2 * second + 1]
    bin_path = str(root / "pairs.bin")
    write_bin(bin_path, pair_images, issame, image_format="png")

    folder_images, folder_labels = face_like_images(6, 3, seed=2)
    image_dir = root / "faces"
    from PIL import Image

    for index, (image, label) in enumerate(zip(folder_images, folder_labels)):
        (image_dir / f"person_{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(image_dir / f"person_{label}" / f"{index}.png")
    return {
        "root": root,
        "model": model_path,
        "run": str(run_dir),
        "bin": bin_path,
        "images": str(image_dir),
        "pair_images": pair_images,
        "issame": issame,
    }


def test_eval_cli_matches_hand_composed_protocol(workspace, capsys):
    import keras

    out = workspace["root"] / "out"
    status = cli_main(
        [
            "eval",
            workspace["model"],
            "--bin",
            workspace["bin"],
            "--json",
            str(out / "eval.json"),
            "--no-progress",
            "--batch-size",
            "16",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "| tiny.keras [keras] | pairs | 40 |" in printed

    report = json.loads((out / "eval.json").read_text())
    (entry,) = report["verification"]
    assert entry["set"] == "pairs" and entry["num_pairs"] == 40
    assert report["settings"]["fusion"] == "normalized"

    # Hand-composed: raw embeddings of images and mirrors, each normalized, summed.
    model = keras.saving.load_model(workspace["model"], compile=False)
    pixels = workspace["pair_images"].astype(np.float32)
    raw = np.asarray(model.predict(pixels, verbose=0), np.float64)
    mirrored = np.asarray(model.predict(pixels[:, :, ::-1], verbose=0), np.float64)
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)  # noqa: E731
    fused = unit(raw) + unit(mirrored)
    expected = verification_metrics(fused[0::2], fused[1::2], workspace["issame"])
    assert entry["fold_accuracies"] == pytest.approx(expected["fold_accuracies"], abs=1e-12)
    assert entry["auc"] == pytest.approx(expected["auc"], abs=1e-6)
    norms = np.r_[np.linalg.norm(raw, axis=1), np.linalg.norm(mirrored, axis=1)]
    assert entry["mean_norm"] == pytest.approx(norms.mean(), rel=1e-5)
    assert entry["accuracy"] > 0.7, "the tiny model must separate the blocky identities"


def test_eval_cli_two_models_identification_and_plots(workspace, capsys):
    out = workspace["root"] / "out2"
    status = cli_main(
        [
            "eval",
            workspace["model"],
            workspace["run"],
            "--bin",
            workspace["bin"],
            "--images",
            workspace["images"],
            "--open-set-fraction",
            "0.34",
            "--json",
            str(out / "eval.json"),
            "--plot-dir",
            str(out / "plots"),
            "--no-progress",
            "--no-flip",
        ]
    )
    assert status == 0
    report = json.loads((out / "eval.json").read_text())
    assert [m["label"] for m in report["models"]] == ["tiny.keras [keras]", "run [keras]"]
    assert len(report["verification"]) == 2
    assert report["settings"]["flip"] is False
    (first, second) = report["identification"]
    assert first["num_gallery"] == 4 and first["num_probes"] == 4 * 2 + 2 * 3
    assert first["num_nonmated"] == 6
    assert first["rank_1"] is not None
    plots = sorted(os.listdir(out / "plots"))
    assert plots == [
        "roc_pairs.png",
        "scores_pairs_run_keras.png",
        "scores_pairs_tiny.keras_keras.png",
    ]
    assert all((out / "plots" / p).stat().st_size > 5000 for p in plots)
    printed = capsys.readouterr().out
    assert "rank-1 %" in printed and "TPIR@FPIR" in printed


def test_eval_cli_errors_are_reported_not_raised(workspace, capsys):
    assert cli_main(["eval", workspace["model"]]) == 2
    assert "Nothing to evaluate" in capsys.readouterr().err
    assert cli_main(["eval", workspace["model"], "--bin", "missing.bin"]) == 2
    assert "Received: bin='missing.bin'" in capsys.readouterr().err
    assert cli_main(["eval", "nope.keras", "--bin", workspace["bin"]]) == 2
    assert "MODEL not found" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_cli_gives_the_same_numbers_for_every_format(workspace):
    from keras_arcface.export import export_model

    export_dir = workspace["root"] / "export"
    export_model(
        workspace["model"],
        str(export_dir),
        quantize=(),
        sample_images=workspace["pair_images"][:8],
        gate=False,
        progress=False,
        verbose=False,
    )
    models = [
        workspace["model"],
        str(export_dir / "saved_model"),
        str(export_dir / "model_float32.tflite"),
        str(export_dir / "model.onnx"),
    ]
    out = workspace["root"] / "formats"
    status = cli_main(
        ["eval", *models, "--bin", workspace["bin"], "--json", str(out / "eval.json")]
        + ["--plot-dir", str(out), "--no-progress"]
    )
    assert status == 0
    report = json.loads((out / "eval.json").read_text())
    formats = [m["format"] for m in report["models"]]
    assert formats == ["keras", "saved_model", "tflite", "onnx"]
    reference, *others = report["verification"]
    for entry in others:
        assert entry["fold_accuracies"] == reference["fold_accuracies"], entry["model"]
        assert entry["auc"] == pytest.approx(reference["auc"], abs=1e-3), entry["model"]
        assert entry["eer"] == pytest.approx(reference["eer"], abs=1e-3), entry["model"]
        assert entry["mean_norm"] is None  # exported graphs return normalized embeddings
    assert reference["mean_norm"] > 0
    assert (out / "roc_pairs.png").stat().st_size > 5000
