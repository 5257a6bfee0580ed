"""Inference latency and throughput of every export format, side by side with PyTorch.

For each backbone (default mbf and r50) the script exports the embedding model to SavedModel,
TFLite (float32, float16, int8) and ONNX, and builds the InsightFace PyTorch reference of the
same architecture (``keras_arcface.models.torch_reference``, wrapped to the same contract:
NHWC pixels 0..255 in, L2-normalized embeddings out) twice: eager PyTorch and its
``torch.onnx`` export (same opset) run by the same onnxruntime class and thread settings as
ours. Then, round after round, every runtime in turn times batch-1 calls (median latency, ms)
and batch-32 calls (img/s) on the same float32 images; each figure is the median over rounds.
Only the model call is timed. Ratios (> 1: this package faster):

* Keras and SavedModel against eager PyTorch (batch 1 and 32). ``keras`` is the embedding
  model as built (BN as separate ops), ``keras_folded`` the same model through
  ``keras_arcface.models.fold_batch_norm`` (what ``Embedder.load`` runs for a ``.keras``
  file); the SavedModel is exported folded (``export_saved_model``'s default);
* ONNX and TFLite against the reference's ONNX in onnxruntime (batch 1 and 32).
  ``onnx_prelu`` (not in the default list) is the ablation of ``onnx``: the same export with
  ``decompose_prelu=False``, ``PRelu`` nodes kept.

``--profile-onnx`` adds, for every onnxruntime session, the share of kernel time per operator
type (onnxruntime's own profiler, batch 32), to the JSON and below the table.

Without torch it prints this package's numbers alone and says so.

Usage:
    python benchmarks/inference_latency.py [--models mbf,r50] [--rounds 5] [--threads 2]
    python benchmarks/inference_latency.py --models mbf --formats onnx,onnx_prelu --profile-onnx

Prints a markdown table and writes benchmarks/results/inference_latency.json.
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from _reference import (  # noqa: E402
    TORCH_MISSING,
    export_torch_onnx,
    load_average,
    prepare_sides,
    torch_eager_runner,
    torch_inference_model,
)
from _results import write_json  # noqa: E402

FORMATS = (
    "keras",
    "keras_folded",
    "saved_model",
    "tflite_float32",
    "tflite_float16",
    "tflite_int8",
    "onnx",
)
REFERENCE_ARCHS = ("mbf", "r18", "r34", "r50")
# Which reference runtime each format is compared with.
COMPARED_WITH = {
    "keras": "pytorch_eager",
    "keras_folded": "pytorch_eager",
    "saved_model": "pytorch_eager",
    "onnx": "pytorch_onnx",
    "onnx_prelu": "pytorch_onnx",
    "tflite_float32": "pytorch_onnx",
    "tflite_float16": "pytorch_onnx",
    "tflite_int8": "pytorch_onnx",
}


def _size_mb(path):
    if os.path.isdir(path):
        total = sum(
            os.path.getsize(os.path.join(r, n)) for r, _, names in os.walk(path) for n in names
        )
    else:
        total = os.path.getsize(path)
    return total / 2**20


def _export(model, fmt, workdir, calibration, opset):
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
    return export_onnx(
        model,
        os.path.join(workdir, f"{fmt}.onnx"),
        opset=opset,
        tflite_float32_path=fp32,
        decompose_prelu=fmt != "onnx_prelu",
    )


def onnx_op_shares(path, images, threads, calls=4):
    """``{operator type: share of kernel time}`` of ``calls`` runs on ``images``, from
    onnxruntime's profiler (the optimized graph's kernels: NCHWc convolutions, reorders)."""
    import collections
    import json

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(os.path.dirname(path), "profile")
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(calls):
        session.run(None, {name: images})
    with open(session.end_profiling()) as handle:
        events = json.load(handle)
    micros = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            micros[event["args"]["op_name"]] += event["dur"]
    total = sum(micros.values()) or 1
    return {op: round(value / total, 3) for op, value in micros.most_common()}


def _median_call(run, batch, calls):
    times = []
    for _ in range(calls):
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
    if fmt == "keras_folded":
        from keras_arcface.models import fold_batch_norm

        return KerasRuntime(fold_batch_norm(model))
    if fmt == "saved_model":
        return SavedModelRuntime(path)
    if fmt.startswith("tflite_"):
        return TFLiteRuntime(path, num_threads=threads)
    return OnnxRuntime(path, num_threads=threads)


def build_runtimes(name, formats, workdir, threads, calibration, torch, opset):
    """``{runtime name: (run, size MB, export seconds)}`` for ours and the reference."""
    from keras_arcface.inference.runtimes import OnnxRuntime
    from keras_arcface.models import get_backbone

    model = get_backbone(name)
    runtimes = {}
    for fmt in formats:
        started = time.perf_counter()
        in_memory = fmt in ("keras", "keras_folded")
        path = None if in_memory else _export(model, fmt, workdir, calibration, opset)
        seconds = time.perf_counter() - started
        size = None if path is None else round(_size_mb(path), 2)
        runtimes[fmt] = (_runtime(fmt, model, path, threads), size, round(seconds, 1))
        print(f"  {name} {fmt}: exported in {seconds:.1f} s", file=sys.stderr, flush=True)
    if torch is not None and name in REFERENCE_ARCHS:
        reference = torch_inference_model(torch, name)
        runtimes["pytorch_eager"] = (torch_eager_runner(torch, reference), None, 0.0)
        started = time.perf_counter()
        path = export_torch_onnx(torch, reference, os.path.join(workdir, "torch.onnx"), opset)
        seconds = round(time.perf_counter() - started, 1)
        onnx_runtime = OnnxRuntime(path, num_threads=threads)
        runtimes["pytorch_onnx"] = (onnx_runtime, round(_size_mb(path), 2), seconds)
    return runtimes


def time_interleaved(runtimes, rounds, calls, images):
    """Every runtime in turn, ``rounds`` times: median batch-1 and batch-32 seconds per round."""
    batch1, batch32 = images[:1], images
    timings = {name: {"b1": [], "b32": []} for name in runtimes}
    for run, _, _ in runtimes.values():  # warm-up: first calls allocate and trace
        for _ in range(2):
            run(batch1)
        run(batch32)
    for _ in range(rounds):
        for name, (run, _, _) in runtimes.items():
            timings[name]["b1"].append(_median_call(run, batch1, calls))
            timings[name]["b32"].append(_median_call(run, batch32, max(1, calls // 4)))
    return timings


def benchmark_model(name, formats, args, calibration, torch):
    """Exports ``name`` to every format, builds the reference, times all interleaved."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch_size, 112, 112, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as workdir:
        runtimes = build_runtimes(
            name, formats, workdir, args.threads, calibration, torch, args.opset
        )
        load_before = load_average()
        timings = time_interleaved(runtimes, args.rounds, args.calls, images)
        load_after = load_average()
        profiles = {}
        if args.profile_onnx:
            from keras_arcface.inference.runtimes import OnnxRuntime

            for runtime, (run, _, _) in runtimes.items():
                if isinstance(run, OnnxRuntime):
                    profiles[runtime] = onnx_op_shares(run.path, images, args.threads)
    rows = []
    for runtime, (_, size, seconds) in runtimes.items():
        b1 = statistics.median(timings[runtime]["b1"])
        b32 = statistics.median(timings[runtime]["b32"])
        rows.append(
            {
                "model": name,
                "format": runtime,
                "size_mb": size,
                "export_seconds": seconds,
                "latency_b1_ms": round(1000 * b1, 2),
                "latency_b1_ms_rounds": [round(1000 * t, 2) for t in timings[runtime]["b1"]],
                "b1_img_per_s": round(1 / b1, 1),
                "throughput_b32_img_per_s": round(args.batch_size / b32, 1),
                "b32_img_per_s_rounds": [
                    round(args.batch_size / t, 1) for t in timings[runtime]["b32"]
                ],
                "load_average_before": load_before,
                "load_average_after": load_after,
            }
        )
        if runtime in profiles:
            rows[-1]["onnx_kernel_time_shares"] = profiles[runtime]
    _add_ratios(rows)
    return rows


def _add_ratios(rows):
    by_format = {row["format"]: row for row in rows}
    for row in rows:
        reference = by_format.get(COMPARED_WITH.get(row["format"]))
        if reference is None:
            continue
        row["compared_with"] = reference["format"]
        row["ratio_b1"] = round(reference["latency_b1_ms"] / row["latency_b1_ms"], 3)
        row["ratio_b32"] = round(
            row["throughput_b32_img_per_s"] / reference["throughput_b32_img_per_s"], 3
        )


def _table(rows):
    lines = [
        "| model | runtime | size (MB) | latency b1 (ms) | b32 img/s | compared with "
        "| ratio b1 | ratio b32 | load before / after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.1f}"
        ratio_b1 = f"{r['ratio_b1']:.2f}x" if "ratio_b1" in r else "-"
        ratio_b32 = f"{r['ratio_b32']:.2f}x" if "ratio_b32" in r else "-"
        lines.append(
            f"| {r['model']} | {r['format']} | {size} | {r['latency_b1_ms']:.2f} | "
            f"{r['throughput_b32_img_per_s']:.1f} | {r.get('compared_with', '-')} | "
            f"{ratio_b1} | {ratio_b32} | {r['load_average_before']} / "
            f"{r['load_average_after']} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mbf,r50")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=8, help="batch-1 calls per round")
    parser.add_argument("--batch-size", type=int, default=32, help="the throughput batch")
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset of both exports")
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument(
        "--profile-onnx",
        action="store_true",
        help="profile every onnxruntime session: kernel time per operator type",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "results", "inference_latency.json"),
    )
    args = parser.parse_args(argv)

    import keras
    import onnxruntime
    import tensorflow as tf

    from keras_arcface.data import render_identities

    torch, machine = prepare_sides(tf, keras, args.threads, onnxruntime=onnxruntime.__version__)
    calibration = render_identities(
        max(1, args.calibration_images // 4), 4, seed=0, heldout=True, num_workers=1
    )[0].astype(np.float32)
    rows = []
    for name in args.models.split(","):
        rows += benchmark_model(name, args.formats.split(","), args, calibration, torch)
    table = _table(rows)
    print(f"\n{machine['cpu']}, {args.threads} threads, median of {args.rounds} rounds")
    if torch is None:
        print(TORCH_MISSING)
    print(table)
    for row in rows:
        if "onnx_kernel_time_shares" in row:
            shares = ", ".join(
                f"{op} {100 * share:.0f}%" for op, share in row["onnx_kernel_time_shares"].items()
            )
            print(f"{row['model']} {row['format']} kernel time (onnxruntime profile): {shares}")
    write_json(
        args.out,
        {
            "benchmark": "inference_latency",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", "benchmarks/inference_latency.py", *sys.argv[1:]]),
            "machine": machine,
            "threads": args.threads,
            "opset": args.opset,
            "rows": rows,
            "table": table,
        },
    )
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
