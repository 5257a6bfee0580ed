"""Training-step cost of the ArcFace margin versus a plain Norm-Softmax head.

One step = forward (NormDense cosines + loss) + backward (to the kernel and to the embeddings)
+ an SGD update of the ``(dim, classes)`` kernel, compiled with ``tf.function``. The two heads
are timed interleaved (A, B, B, A, ...) in one process so that the shared machine's load hits
both alike; the ratio of medians is the result. Target: ArcFace <= 1.05 x Norm-Softmax.

Usage:
    python benchmarks/margin_overhead.py                 # batch 128, dim 512, 100k classes
    python benchmarks/margin_overhead.py --jit --repeats 30

Prints a markdown table and writes ``benchmarks/results/margin_overhead.json``.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from keras_arcface.layers import NormDense  # noqa: E402
from keras_arcface.losses import ArcFaceLoss, NormSoftmaxLoss  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per head")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per head")
    parser.add_argument("--jit", action="store_true", help="compile the step with XLA")
    parser.add_argument(
        "--output", default=os.path.join(HERE, "results", "margin_overhead.json")
    )
    return parser.parse_args(argv)


def make_step(loss, args, jit):
    """A compiled training step of a fresh NormDense head under ``loss``."""
    head = NormDense(args.classes)
    head.build((None, args.dim))
    optimizer = keras.optimizers.SGD(learning_rate=0.01)
    optimizer.build([head.kernel])

    @tf.function(jit_compile=jit)
    def step(embeddings, labels):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(labels, head(embeddings))
        kernel_grad, embedding_grad = tape.gradient(value, [head.kernel, embeddings])
        optimizer.apply([kernel_grad], [head.kernel])
        return value, embedding_grad

    return step


def time_step(step, embeddings, labels):
    start = time.perf_counter()
    value, grad = step(embeddings, labels)
    _ = value.numpy(), grad.numpy()  # wait for the result
    return time.perf_counter() - start


def machine_info():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def write_json(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    embeddings = tf.constant(rng.standard_normal((args.batch, args.dim)), tf.float32)
    labels = tf.constant(rng.integers(0, args.classes, args.batch), tf.int32)
    heads = {
        "norm_softmax": make_step(NormSoftmaxLoss(scale=64.0), args, args.jit),
        "arcface": make_step(ArcFaceLoss(margin=0.5, scale=64.0), args, args.jit),
    }
    for step in heads.values():
        for _ in range(args.warmup):
            time_step(step, embeddings, labels)
    times = {name: [] for name in heads}
    order = list(heads)
    for repeat in tqdm(range(args.repeats), desc="interleaved steps"):
        for name in order if repeat % 2 == 0 else order[::-1]:
            times[name].append(time_step(heads[name], embeddings, labels))
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["arcface"] / median["norm_softmax"]

    print(
        f"\nbatch {args.batch}, dim {args.dim}, classes {args.classes}, "
        f"jit_compile={args.jit}, {args.repeats} interleaved repeats"
    )
    print("| head | median step (ms) | min (ms) | ratio vs Norm-Softmax |")
    print("|---|---|---|---|")
    for name in order:
        print(
            f"| {name} | {1e3 * median[name]:.1f} | {1e3 * min(times[name]):.1f} "
            f"| {median[name] / median['norm_softmax']:.3f} |"
        )
    verdict = "meets" if ratio <= 1.05 else "MISSES"
    print(f"\nArcFace / Norm-Softmax = {ratio:.3f} ({verdict} the <= 1.05 target)")

    write_json(
        args.output,
        {
            "benchmark": "margin_overhead",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
            "machine": machine_info(),
            "config": vars(args) | {"output": os.path.relpath(args.output)},
            "median_step_s": median,
            "min_step_s": {name: min(values) for name, values in times.items()},
            "step_times_s": times,
            "ratio_arcface_over_norm_softmax": ratio,
            "target_ratio": 1.05,
            "meets_target": ratio <= 1.05,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
