"""The ``keras-arcface demo`` command end to end in --quick mode (slow: CI runs it)."""

import json
import os

import pytest

pytestmark = pytest.mark.slow


def test_demo_quick_end_to_end(tmp_path, capsys):
    from keras_arcface.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "held-out verification (10-fold)" in printed and "raw-pixel baseline" in printed
    summary = json.loads((out / "demo_summary.json").read_text())
    run = summary["run_dir"]
    for name in ("config.yaml", "embedding_latest.keras", "metrics.csv", "training_curve.png"):
        assert os.path.exists(os.path.join(run, name)), name
    assert summary["training"]["steps"] == 6
    accuracy = summary["verification"]["accuracy"]
    assert accuracy is not None and 0.0 <= accuracy <= 1.0
    assert 0.0 <= summary["verification"]["raw_pixel_accuracy"] <= 1.0
    export = summary["export"]
    assert export["parity_passed"], export
    assert export["formats"] == ["saved_model", "tflite", "onnx"]
    assert len(export["artifacts"]) >= 3
    assert os.listdir(export["dir"])
    # A second run reuses the generated data and replaces its own earlier run folder.
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--skip-export"]) == 0
    again = json.loads((out / "demo_summary.json").read_text())
    assert again["data"]["reused"] and again["export"] is None
