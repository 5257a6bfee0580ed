"""Threshold calibration: ``calibrate_threshold`` against NumPy oracles on embeddings whose
cosines are set by hand, and ``keras-arcface calibrate`` -> sidecar -> ``verify``/``Embedder``."""

import json
import warnings

import numpy as np
import pytest

from keras_arcface.cli import main as cli_main
from keras_arcface.evaluation.calibration import calibrate_threshold

SIZE = 4


def _pairs_with_cosines(cosines):
    """Images that encode their index, and an embed_fn giving each pair the chosen cosine."""
    count = len(cosines)
    images = np.zeros((2 * count, SIZE, SIZE, 3), np.float32)
    index = np.arange(2 * count)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = index // 256, index % 256
    vectors = np.zeros((2 * count, 2))
    vectors[0::2, 0] = 1.0
    vectors[1::2, 0] = cosines
    vectors[1::2, 1] = np.sqrt(1.0 - np.asarray(cosines) ** 2)

    def embed_fn(batch):
        ids = (batch[:, 0, 0, 0] * 256 + batch[:, 0, 0, 1]).astype(int)
        return vectors[ids].astype(np.float32)

    return images, embed_fn


def test_best_accuracy_threshold_separates_well_separated_pairs():
    rng = np.random.default_rng(0)
    issame = np.arange(400) % 2 == 0
    cosines = np.where(issame, rng.uniform(0.6, 0.9, 400), rng.uniform(-0.2, 0.3, 400))
    images, embed_fn = _pairs_with_cosines(cosines)
    record = calibrate_threshold(embed_fn, images, issame, source="hand-made")
    assert record["accuracy"] == 1.0 and record["criterion"] == "best_accuracy"
    # Any threshold in the gap separates; the protocol's lies inside it.
    assert cosines[~issame].max() < record["threshold"] <= cosines[issame].min()
    assert (
        "best accuracy" in record["threshold_source"] and "hand-made" in record["threshold_source"]
    )


def test_far_threshold_matches_the_impostor_quantile():
    rng = np.random.default_rng(1)
    issame = np.arange(4000) % 2 == 0
    cosines = np.where(issame, rng.uniform(0.2, 0.9, 4000), rng.uniform(-0.5, 0.5, 4000))
    images, embed_fn = _pairs_with_cosines(cosines)
    record = calibrate_threshold(embed_fn, images, issame, far=1e-2)
    # Oracle: the cosine above which 1% of the impostor pairs lie (the FAR is the fraction of
    # impostors accepted, similarity >= threshold), from all impostors at once.
    oracle = np.quantile(cosines[~issame], 0.99)
    assert record["threshold"] == pytest.approx(oracle, abs=0.01)
    accepted = (cosines[~issame] >= record["threshold"]).mean()
    assert accepted == pytest.approx(1e-2, abs=4e-3)
    tar_oracle = (cosines[issame] >= record["threshold"]).mean()
    assert record["tar"] == pytest.approx(tar_oracle, abs=0.02)


def test_only_genuine_pairs_or_too_few_impostors_are_refused():
    issame = np.ones(50, bool)
    images, embed_fn = _pairs_with_cosines(np.full(50, 0.5))
    with pytest.raises(ValueError, match="both genuine .* and impostor .*50 genuine and 0"):
        calibrate_threshold(embed_fn, images, issame)
    issame = np.arange(50) % 2 == 0
    with pytest.raises(ValueError, match="FAR 1e-3 cannot be measured with 25 impostor"):
        calibrate_threshold(embed_fn, images, issame, far=1e-3)


# ---------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def model_and_pairs(tmp_path_factory):
    import keras

    from keras_arcface.data.verification_bin import write_bin
    from keras_arcface.models import get_backbone

    folder = tmp_path_factory.mktemp("calibrate")
    model_path = folder / "model.keras"
    keras.utils.set_random_seed(0)
    keras.saving.save_model(get_backbone("toy2d"), model_path)
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (60, 112, 112, 3)).astype(np.uint8)
    images, issame = [], []
    for k in range(60):  # genuine: the same image slightly changed; impostor: another image
        same = k % 2 == 0
        other = base[k] if same else base[(k + 7) % 60]
        noisy = np.clip(other.astype(int) + rng.integers(-10, 11, other.shape), 0, 255)
        images += [base[k], noisy.astype(np.uint8)]
        issame.append(same)
    write_bin(str(folder / "pairs.bin"), np.stack(images), issame, image_format="png")
    write_bin(str(folder / "genuine.bin"), np.stack(images[:20]), [True] * 10, image_format="png")
    return model_path, folder


def test_calibrate_stores_the_threshold_and_verify_uses_it(model_and_pairs, capsys):
    from keras_arcface.inference import Embedder

    model_path, folder = model_and_pairs
    sidecar = folder / "model.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uncalibrated = Embedder.load(model_path)
        uncalibrated.verify(np.zeros((112, 112, 3)), np.zeros((112, 112, 3)))
    assert "a guess" in uncalibrated.threshold_source
    assert any("a guess" in str(w.message) for w in caught)

    assert cli_main(["calibrate", str(model_path), "--bin", str(folder / "pairs.bin")]) == 0
    printed = capsys.readouterr().out
    stored = json.loads(sidecar.read_text())
    assert stored["calibration"]["criterion"] == "best_accuracy"
    assert f"threshold {stored['threshold']:.4f}" in printed

    embedder = Embedder.load(model_path)
    assert embedder.threshold == pytest.approx(stored["threshold"])
    assert embedder.threshold_source.startswith("calibrated for best accuracy (")
    assert "on pairs.bin" in embedder.threshold_source
    image = str(folder / "a.png")
    import cv2

    cv2.imwrite(image, np.full((112, 112, 3), 90, np.uint8))
    assert cli_main(["verify", str(model_path), image, image]) == 0
    out = capsys.readouterr().out
    assert f"threshold {stored['threshold']:.4f}" in out and "calibrated for best accuracy" in out


def test_calibrate_refuses_a_set_of_genuine_pairs_and_writes_nothing(
    tmp_path, model_and_pairs, capsys
):
    import shutil

    model_path, folder = model_and_pairs
    fresh = tmp_path / "fresh.keras"
    shutil.copy(model_path, fresh)
    code = cli_main(["calibrate", str(fresh), "--bin", str(folder / "genuine.bin")])
    assert code == 2
    assert "10 genuine and 0 impostor" in capsys.readouterr().err
    assert not (tmp_path / "fresh.json").exists()


@pytest.mark.slow
def test_exported_models_keep_the_calibrated_threshold(model_and_pairs, tmp_path):
    from keras_arcface.inference import Embedder

    model_path, folder = model_and_pairs
    assert cli_main(["calibrate", str(model_path), "--bin", str(folder / "pairs.bin")]) == 0
    stored = json.loads((folder / "model.json").read_text())
    out = tmp_path / "export"
    args = ["export", str(model_path), "--out", str(out), "--formats", "tflite", "--quantize", ""]
    assert cli_main(args) == 0
    exported = Embedder.load(next(out.glob("*float32*.tflite")))
    assert exported.threshold == pytest.approx(stored["threshold"])
    assert exported.threshold_source == stored["threshold_source"]
