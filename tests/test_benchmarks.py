"""Every benchmark script runs end to end with tiny settings, so none can rot unnoticed.

No timing is asserted (timings belong to the benchmarks themselves); each run must finish,
print its table and write a JSON result holding what the README quotes from it. The side by
side helpers are checked on fake steps: rounds alternate, the ratio is ours over theirs.
"""

import importlib
import json
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _script(name):
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    return importlib.import_module(name)


def _run(name, args, tmp_path, output_flag="--output"):
    out = tmp_path / f"{name}.json"
    code = _script(name).main([*args, output_flag, str(out)])
    assert code in (None, 0)
    return json.loads(out.read_text())


def test_interleaved_rounds_alternate_and_ratio_is_ours_over_reference():
    reference = _script("_reference")
    calls = []
    sides = {"ours": lambda: calls.append("A"), "reference": lambda: calls.append("B")}
    rates = reference.interleaved(sides, 4, rounds=3, round_seconds=0.0, warmup=1)
    # Warm-up once each, then A, B, A, B, A, B (one call per zero-length round).
    assert calls == ["A", "B"] + ["A", "B"] * 3
    assert [len(r) for r in rates.values()] == [3, 3]
    row = reference.compare([30.0, 10.0, 20.0], [10.0, 10.0, 40.0])
    assert row["img_per_s"] == 20.0 and row["reference_img_per_s"] == 10.0
    assert row["ratio"] == 2.0  # ratio of the medians
    assert row["paired_ratio_median"] == 1.0  # median of 3.0, 1.0, 0.5
    assert "ratio" not in reference.compare([5.0], None)


def test_backbone_throughput_runs(tmp_path, capsys):
    # Inference only in the default suite: tracing a training step is the slow part.
    result = _run(
        "backbone_throughput",
        ["--presets", "small", "--modes", "inference", "--batch-size", "2"]
        + ["--round-seconds", "0", "--repeats", "1"],
        tmp_path,
    )
    assert [(r["preset"], r["mode"]) for r in result["results"]] == [("small", "inference")]
    assert "load_average_before" in result["results"][0]
    assert "| small | inference |" in capsys.readouterr().out


@pytest.mark.slow
def test_backbone_throughput_runs_the_pytorch_reference(tmp_path):
    pytest.importorskip("torch")
    result = _run(
        "backbone_throughput",
        ["--presets", "mbf", "--batch-size", "2", "--round-seconds", "0", "--repeats", "1"],
        tmp_path,
    )
    for row in result["results"]:
        assert row["reference_img_per_s"] > 0 and row["ratio"] > 0
    assert [row["mode"] for row in result["results"]] == ["train", "inference"]


def test_inference_latency_runs(tmp_path):
    result = _run(
        "inference_latency",
        ["--models", "small", "--formats", "keras,keras_folded,onnx,onnx_prelu", "--rounds", "1"]
        + ["--calls", "1", "--profile-onnx"],
        tmp_path,
        output_flag="--out",
    )
    rows = {r["format"]: r for r in result["rows"]}
    assert list(rows) == ["keras", "keras_folded", "onnx", "onnx_prelu"]
    assert "onnx_kernel_time_shares" not in rows["keras"]
    for name in ("onnx", "onnx_prelu"):
        shares = rows[name]["onnx_kernel_time_shares"]
        assert sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    # The ablation keeps PRelu kernels; the default export has none left to run.
    assert "PRelu" in rows["onnx_prelu"]["onnx_kernel_time_shares"]
    assert "PRelu" not in rows["onnx"]["onnx_kernel_time_shares"]


@pytest.mark.slow
def test_inference_latency_runs_the_pytorch_reference(tmp_path):
    pytest.importorskip("torch")
    result = _run(
        "inference_latency",
        ["--models", "mbf", "--formats", "keras,tflite_float32,onnx"]
        + ["--rounds", "1", "--calls", "1", "--batch-size", "2"],
        tmp_path,
        output_flag="--out",
    )
    rows = {r["format"]: r for r in result["rows"]}
    assert set(rows) == {"keras", "tflite_float32", "onnx", "pytorch_eager", "pytorch_onnx"}
    assert rows["onnx"]["compared_with"] == "pytorch_onnx"
    assert rows["keras"]["compared_with"] == "pytorch_eager"


def test_input_pipeline_runs(tmp_path):
    result = _run(
        "input_pipeline",
        ["--images", "32", "--identities", "4", "--batch-size", "4"]
        + ["--warmup", "1", "--batches", "2", "--repeats", "1"],
        tmp_path,
    )
    assert result["ratio_to_bare_decode"] > 0


def test_margin_overhead_runs(tmp_path):
    _run(
        "margin_overhead",
        ["--batch", "4", "--dim", "8", "--classes", "32", "--repeats", "1", "--warmup", "0"]
        + ["--modes", "graph"],
        tmp_path,
    )


def test_eval_speed_runs(tmp_path):
    _run(
        "eval_speed",
        ["--pairs", "60", "--dim", "8", "--gallery", "50", "--queries", "5", "--repeats", "1"],
        tmp_path,
    )


@pytest.mark.slow  # one TensorFlow process per sample rate
def test_partial_fc_runs(tmp_path):
    result = _run(
        "partial_fc",
        ["--num-classes", "64", "--dim", "8", "--batch", "4", "--rates", "1.0", "0.5"]
        + ["--steps", "1", "--warmup", "0"],
        tmp_path,
        output_flag="--out",
    )
    assert [r["sample_rate"] for r in result["results"]] == [1.0, 0.5]


@pytest.mark.slow  # traces the full Trainer step
def test_training_throughput_runs(tmp_path):
    _run(
        "training_throughput",
        ["--batch", "4", "--steps", "1", "--warmup", "0", "--rounds", "1"]
        + ["--identities", "4", "--images-per-identity", "2"],
        tmp_path,
        output_flag="--out",
    )


def test_synthetic_difficulty_runs(tmp_path):
    _run(
        "synthetic_difficulty",
        ["--identities", "4", "--images-per-identity", "4", "--heldout-identities", "4"]
        + ["--pairs", "20", "--train-seconds", "1", "--epochs", "1", "--batch-size", "8"]
        + ["--out", str(tmp_path / "data")],
        tmp_path,
    )


@pytest.mark.slow
def test_alignment_runs(tmp_path):
    pytest.importorskip("yuface")
    faces = os.path.join(os.path.dirname(BENCHMARKS), "tests", "data", "faces")
    result = _run(
        "alignment",
        ["--photos", faces, "--repeats", "1", "--folder-photos", "3"],
        tmp_path,
        output_flag="--out",
    )
    assert result["one_photo_640x480"]["faces"] == 1
    assert all(row["crops"] == 3 for row in result["align_folder"].values())
    assert result["alignment_step"]["crop_mean_abs_difference"] < 1.0


@pytest.mark.slow  # one TensorFlow process per layout
def test_partial_fc_sharded_runs(tmp_path):
    result = _run(
        "partial_fc_sharded",
        ["--num-classes", "64", "--dim", "8", "--batch", "4", "--rates", "1.0"]
        + ["--steps", "1", "--warmup", "0"],
        tmp_path,
        output_flag="--out",
    )
    rows = {r["layout"]: r for r in result["results"]}
    assert rows["sharded"]["head_bytes_per_replica"] == 32 * 8 * 8  # 32 rows x 8 x (w + m)
    assert rows["replicated"]["head_bytes_per_replica"] == 64 * 8 * 8
