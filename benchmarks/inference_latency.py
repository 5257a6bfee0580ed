"""Inference latency and throughput of every export format, side by side.

For each backbone (default mbf and r50) the script exports the embedding model to SavedModel,
TFLite (float32, float16, int8) and ONNX, then times each runtime on the same float32 batch:
latency is the median time of one batch-1 call (ms), throughput is images per second at
batch 32 (median over repeats). The Keras model runs through ``predict_on_batch``. Only the
model call is timed (no image decoding). Compared with the PyTorch reference implementation
measured on this machine type (2 threads, same CPU type). Targets: TFLite float32 mbf batch-1
latency <= 15 ms; the best exported format beats PyTorch.

Usage:
    python benchmarks/inference_latency.py [--models mbf,r50] [--repeats 20] [--threads 2]

Prints a markdown table and writes benchmarks/results/inference_latency.json.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_arcface._io import atomic_write_json

# PyTorch reference implementation on this machine type: img/s at batch 32 and 1, fp32.
PYTORCH_REFERENCE = {"r50": {"b32": 7.2, "b1": 6.7}, "mbf": {"b32": 49.0, "b1": 28.0}}
FORMATS = ("keras", "saved_model", "tflite_float32", "tflite_float16", "tflite_int8", "onnx")
MBF_TFLITE_FP32_TARGET_MS = 15.0


def _size_mb(path):
    if os.path.isdir(path):
        total = sum(
            os.path.getsize(os.path.join(r, n)) for r, _, names in os.walk(path) for n in names
        )
    else:
        total = os.path.getsize(path)
    return total / 2**20


def _export(model, fmt, workdir, calibration):
    from keras_arcface.export.onnx import export_onnx
    from keras_arcface.export.saved_model import export_saved_model
    from keras_arcface.export.tflite import export_tflite

    saved = os.path.join(workdir, "saved_model")
    if fmt == "saved_model" or not os.path.isdir(saved):
        export_saved_model(model, saved)
    if fmt == "saved_model":
        return saved
    if fmt.startswith("tflite_"):
        precision = fmt.split("_", 1)[1]
        path = os.path.join(workdir, f"model_{precision}.tflite")
        export_tflite(model, path, precision, representative_images=calibration, saved_model=saved)
        return path
    fp32 = os.path.join(workdir, "model_float32.tflite")
    if not os.path.isfile(fp32):
        export_tflite(model, fp32, "float32", saved_model=saved)
    return export_onnx(model, os.path.join(workdir, "model.onnx"), tflite_float32_path=fp32)


def _time(run, batch, repeats, warmup=3):
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _runtime(fmt, model, path, threads):
    from keras_arcface.inference.runtimes import (
        KerasRuntime,
        OnnxRuntime,
        SavedModelRuntime,
        TFLiteRuntime,
    )

    if fmt == "keras":
        return KerasRuntime(model)
    if fmt == "saved_model":
        return SavedModelRuntime(path)
    if fmt.startswith("tflite_"):
        return TFLiteRuntime(path, num_threads=threads)
    return OnnxRuntime(path, num_threads=threads)


def benchmark_model(name, formats, repeats, threads, calibration):
    """Exports ``name`` to every format and times each; returns one row per format."""
    from keras_arcface.models import get_backbone

    model = get_backbone(name)
    rng = np.random.default_rng(0)
    batch1 = rng.uniform(0, 255, (1, 112, 112, 3)).astype(np.float32)
    batch32 = rng.uniform(0, 255, (32, 112, 112, 3)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for fmt in formats:
            started = time.perf_counter()
            path = None if fmt == "keras" else _export(model, fmt, workdir, calibration)
            export_seconds = time.perf_counter() - started
            runtime = _runtime(fmt, model, path, threads)
            latency = _time(runtime, batch1, repeats)
            throughput_time = _time(runtime, batch32, max(3, repeats // 4))
            rows.append(
                {
                    "model": name,
                    "format": fmt,
                    "size_mb": None if path is None else round(_size_mb(path), 2),
                    "export_seconds": round(export_seconds, 1),
                    "latency_b1_ms": round(1000 * latency, 2),
                    "b1_img_per_s": round(1 / latency, 1),
                    "throughput_b32_img_per_s": round(32 / throughput_time, 1),
                }
            )
            print(f"  {name} {fmt}: {rows[-1]}", file=sys.stderr, flush=True)
            del runtime
    return rows


def _table(rows):
    lines = [
        "| model | format | size (MB) | latency b1 (ms, median) | b1 img/s | b32 img/s "
        "| vs PyTorch b1 | vs PyTorch b32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = PYTORCH_REFERENCE.get(r["model"])
        b1 = f"{r['b1_img_per_s'] / ref['b1']:.1f}x" if ref else "-"
        b32 = f"{r['throughput_b32_img_per_s'] / ref['b32']:.1f}x" if ref else "-"
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.1f}"
        lines.append(
            f"| {r['model']} | {r['format']} | {size} | {r['latency_b1_ms']:.2f} | "
            f"{r['b1_img_per_s']:.1f} | {r['throughput_b32_img_per_s']:.1f} | {b1} | {b32} |"
        )
    for name, ref in PYTORCH_REFERENCE.items():
        lines.append(
            f"| {name} | PyTorch reference | - | {1000 / ref['b1']:.1f} | {ref['b1']} | "
            f"{ref['b32']} | 1.0x | 1.0x |"
        )
    return "\n".join(lines)


def _verdicts(rows):
    out = {}
    mbf = [r for r in rows if r["model"] == "mbf" and r["format"] == "tflite_float32"]
    if mbf:
        out["mbf_tflite_fp32_b1_ms"] = mbf[0]["latency_b1_ms"]
        out["mbf_tflite_fp32_target_met"] = mbf[0]["latency_b1_ms"] <= MBF_TFLITE_FP32_TARGET_MS
    for name, ref in PYTORCH_REFERENCE.items():
        exported = [r for r in rows if r["model"] == name and r["format"] != "keras"]
        if exported:
            best_b1 = max(exported, key=lambda r: r["b1_img_per_s"])
            best_b32 = max(exported, key=lambda r: r["throughput_b32_img_per_s"])
            out[f"{name}_best_b1"] = [best_b1["format"], best_b1["b1_img_per_s"], ref["b1"]]
            out[f"{name}_best_b32"] = [
                best_b32["format"],
                best_b32["throughput_b32_img_per_s"],
                ref["b32"],
            ]
            out[f"{name}_beats_pytorch"] = (
                best_b1["b1_img_per_s"] > ref["b1"]
                and best_b32["throughput_b32_img_per_s"] > ref["b32"]
            )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mbf,r50")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--repeats", type=int, default=20, help="batch-1 timing repeats")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT/onnxruntime threads")
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "results", "inference_latency.json"),
    )
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from keras_arcface.data import render_identities

    calibration = render_identities(
        max(1, args.calibration_images // 4), 4, seed=0, heldout=True, num_workers=1
    )[0].astype(np.float32)
    rows = []
    for name in args.models.split(","):
        rows += benchmark_model(
            name, args.formats.split(","), args.repeats, args.threads, calibration
        )
    table = _table(rows)
    verdicts = _verdicts(rows)
    print(table)
    print("\n" + json.dumps(verdicts, indent=1))
    import ai_edge_litert
    import onnxruntime

    result = {
        "benchmark": "inference_latency",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "onnxruntime": onnxruntime.__version__,
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", "unknown"),
        },
        "threads": args.threads,
        "rows": rows,
        "pytorch_reference": PYTORCH_REFERENCE,
        "verdicts": verdicts,
        "table": table,
    }
    atomic_write_json(args.out, result)
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
