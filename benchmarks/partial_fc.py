"""Partial FC: step time and peak memory of the classification head vs the sample rate.

One head step = cosines of a batch of embeddings against the (sampled) class centers,
ArcFace logits and cross-entropy, the backward pass, and the center update (SGD momentum,
only the sampled rows when sampling). Each sample rate runs in its own process so that the
peak resident memory (``ru_maxrss``) belongs to that rate alone.

    python benchmarks/partial_fc.py                      # 1M classes, dim 512, batch 128
    python benchmarks/partial_fc.py --num-classes 100000 --rates 1.0 0.1
    python benchmarks/partial_fc.py --rates 0.3 0.1 --reference-full-ms 5172.3

The 1.0 rate at 1M classes needs about 17 GiB of memory; where it cannot run,
``--reference-full-ms`` takes its median from an earlier run on the same machine (recorded
as such in the JSON) for the speed-up column.

Target (issue 5): sample_rate 0.1 at least 5x faster than 1.0.
Prints a markdown table and writes benchmarks/results/partial_fc.json.
"""

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _results import machine_info, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def run_one(num_classes, dim, batch, rate, steps, warmup):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from keras_arcface import losses
    from keras_arcface.layers.partial_fc import PartialFC
    from keras_arcface.training.optimizers import CenterOptimizer

    loss = losses.get("arcface", margin=0.5, scale=64.0)
    head = PartialFC(num_classes, dim, sample_rate=rate, logits_fn=loss.logits)
    head.build((None, dim))
    optimizer = CenterOptimizer(head.centers, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)

    @tf.function
    def step(embeddings, labels, k):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = tf.reduce_mean(head.per_example_loss(embeddings, labels, step=k))
        grad_emb, grad_centers = tape.gradient(value, [embeddings, head.centers.value])
        optimizer.apply(grad_centers, 0.1)
        return value, grad_emb

    times = []
    for k in range(warmup + steps):
        emb = tf.constant(rng.normal(size=(batch, dim)).astype("float32"))
        labels = tf.constant(rng.integers(0, num_classes, batch).astype("int32"))
        start = time.perf_counter()
        value, _ = step(emb, labels, tf.constant(k, tf.int64))
        float(value)
        if k >= warmup:
            times.append(time.perf_counter() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "sample_rate": rate,
        "classes_per_step": head.num_sample,
        "median_step_ms": statistics.median(times) * 1000.0,
        "min_step_ms": min(times) * 1000.0,
        "peak_rss_mib": peak_mib,
        "steps": steps,
    }


def _speedup(row):
    value = row["speedup_vs_full"]
    return "n/a (1.0 not run)" if value is None else f"{value:.2f}x"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-classes", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--reference-full-ms",
        type=float,
        help="median step (ms) of sample_rate 1.0 from an earlier run, used when 1.0 is not run",
    )
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "partial_fc.json"))
    args = parser.parse_args(argv)
    if args.one is not None:
        result = run_one(args.num_classes, args.dim, args.batch, args.one, args.steps, args.warmup)
        print(json.dumps(result))
        return 0
    rows = []
    for rate in args.rates:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--one",
            str(rate),
            "--num-classes",
            str(args.num_classes),
            "--dim",
            str(args.dim),
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"sample_rate {rate}: {rows[-1]['median_step_ms']:.1f} ms", file=sys.stderr)
    full = next((r for r in rows if r["sample_rate"] == 1.0), None)
    if full is None and args.reference_full_ms is not None:
        if args.reference_full_ms <= 0:
            raise ValueError(
                "reference_full_ms must be > 0. "
                f"Received: reference_full_ms={args.reference_full_ms!r}"
            )
        full = {"sample_rate": 1.0, "median_step_ms": args.reference_full_ms, "reference": True}
    for r in rows:
        r["speedup_vs_full"] = full["median_step_ms"] / r["median_step_ms"] if full else None
    print(
        f"\nPartial FC head step: {args.num_classes:,} classes, dim {args.dim}, "
        f"batch {args.batch}, ArcFace + SGD momentum (CPU)\n"
    )
    print("| sample_rate | classes/step | median step (ms) | speed-up vs 1.0 | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['sample_rate']} | {r['classes_per_step']:,} | {r['median_step_ms']:.1f} | "
            f"{_speedup(r)} | {r['peak_rss_mib']:.0f} |"
        )
    if full is not None and full.get("reference"):
        print(
            f"\n1.0 not run here: speed-ups use its earlier median, {full['median_step_ms']:.1f} ms"
        )
    target = next((r for r in rows if r["sample_rate"] == 0.1), None)
    if target is not None and full is not None:
        verdict = "met" if target["speedup_vs_full"] >= 5 else "NOT met"
        print(f"\nTarget sample_rate 0.1 >= 5x faster than 1.0: {verdict}")
    payload = {
        "benchmark": "partial_fc",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "command": " ".join(["python", "benchmarks/partial_fc.py", *(argv or sys.argv[1:])]),
        "num_classes": args.num_classes,
        "dim": args.dim,
        "batch": args.batch,
        "results": rows,
    }
    if full is not None and full.get("reference"):
        payload["reference_full_ms"] = full["median_step_ms"]
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
