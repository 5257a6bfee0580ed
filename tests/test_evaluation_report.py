"""Reports, plots and evaluate_model."""

import json
import os
import sys

import numpy as np
import pytest

from keras_arcface.evaluation import (
    evaluate_model,
    identification_metrics,
    plot_roc,
    plot_score_histogram,
    summarize,
    to_jsonable,
    verification_metrics,
    verification_table,
    write_json,
)
from keras_arcface.evaluation.report import identification_table, notes_of

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_result(seed=0, num_pairs=400, noise=1.0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(num_pairs, 32))
    issame = np.arange(num_pairs) % 2 == 0
    other = np.where(issame[:, None], base, rng.normal(size=base.shape))
    return verification_metrics(base, other + noise * rng.normal(size=base.shape), issame)


def test_to_jsonable_and_summarize():
    value = {"a": np.float32(0.25), "b": (np.int64(3), np.inf), "c": np.arange(3)}
    assert to_jsonable(value) == {"a": 0.25, "b": [3, None], "c": [0, 1, 2]}
    summary = summarize(small_result())
    assert "distances" not in summary and "roc" not in summary and "issame" not in summary
    json.dumps(summary, allow_nan=False)  # plain JSON, no NaN
    assert summary["num_pairs"] == 400


def test_write_json_is_atomic_and_creates_folders(tmp_path):
    path = tmp_path / "deep" / "report.json"
    write_json(path, {"x": np.float64(1.5)})
    assert json.loads(path.read_text()) == {"x": 1.5}
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})  # not serialisable: the old file survives intact
    assert json.loads(path.read_text()) == {"x": 1.5}
    assert os.listdir(path.parent) == ["report.json"], "no temporary file left behind"


def test_verification_table_formats_and_marks_unresolvable():
    result = small_result()
    result["mean_norm"] = 12.345
    table = verification_table([("m [keras]", "lfw", result)])
    header, rule, row = table.splitlines()
    assert header.startswith("| model | set | pairs | accuracy % |")
    assert "TAR@FAR=1e-1 %" in header and "TAR@FAR=1e-4 %" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["m [keras]", "lfw", "400"]
    assert cells[3] == f"{100 * result['accuracy']:.2f} ± {100 * result['accuracy_std']:.2f}"
    assert cells[-2] == "n/a"  # 1e-4 with 180 training impostors
    assert cells[-1] == "12.35"
    assert any("1e-4" in note for note in notes_of(result))


def test_identification_table():
    result = identification_metrics(np.eye(3), [0, 1, 9], np.eye(3)[:2], [0, 1])
    table = identification_table([("m", "faces", result)])
    row = table.splitlines()[2]
    assert "| m | faces | 2 (2 ids) | 3 (2/1) | 100.00 | 100.00 |" in row


def test_plots_write_png(tmp_path):
    first, second = small_result(0), small_result(1, noise=1.4)
    path = plot_roc({"keras": first, "onnx": second}, tmp_path / "roc.png")
    assert open(path, "rb").read(8) == PNG_MAGIC
    fpr, tpr = first["roc"]["fpr"], first["roc"]["tpr"]
    path = plot_roc({"pair": (fpr, tpr)}, tmp_path / "sub" / "roc2.png", title="t")
    assert open(path, "rb").read(8) == PNG_MAGIC
    path = plot_score_histogram(first, tmp_path / "hist.png")
    assert open(path, "rb").read(8) == PNG_MAGIC
    assert sorted(os.listdir(tmp_path)) == ["hist.png", "roc.png", "sub"]
    with pytest.raises(ValueError, match="Received: keys="):
        plot_score_histogram({"accuracy": 1.0}, tmp_path / "x.png")
    with pytest.raises(TypeError, match="Received: bad="):
        plot_roc({"bad": 3}, tmp_path / "x.png")


def test_plots_without_matplotlib_give_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "keras-arcface\[plot\]"'):
        plot_roc({"a": small_result()}, tmp_path / "roc.png")


def test_evaluate_model_with_keras_model_bin_file_and_embedder_like(tmp_path):
    import keras

    from keras_arcface.data import write_bin

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 112, 112, 3), dtype=np.uint8)
    images[1::4] = images[0::4]  # pairs 0, 2, 4, ... are identical images (genuine)
    issame = np.arange(20) % 2 == 0
    inputs = keras.Input(shape=(112, 112, 3), name="images")
    centered = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    pooled = keras.layers.AveragePooling2D(16)(centered)
    outputs = keras.layers.Dense(8)(keras.layers.Flatten()(pooled))
    model = keras.Model(inputs, outputs)

    from_arrays = evaluate_model(model, (images, issame), progress=False, nfolds=5)
    path = tmp_path / "set.bin"
    write_bin(str(path), images, issame, image_format="png")
    from_file = evaluate_model(model, str(path), progress=False, nfolds=5)
    assert from_file["fold_accuracies"] == from_arrays["fold_accuracies"]
    assert from_arrays["accuracy"] == 1.0  # identical images vs random ones

    class EmbedderLike:
        def embed(self, batch):
            out = np.asarray(model.predict_on_batch(batch), np.float64)
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    normalized = evaluate_model(EmbedderLike(), (images, issame), progress=False, nfolds=5)
    assert normalized["mean_norm"] == pytest.approx(1.0)
    with pytest.raises(TypeError, match="Received: bin_path_or_set=int"):
        evaluate_model(model, 5)
