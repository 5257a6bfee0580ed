"""Training-step and inference throughput of the backbones on this machine.

For each preset and each compile mode (plain ``tf.function`` and XLA ``jit_compile=True``)
the script times

* inference: ``embedding_model(images, training=False)``;
* a training step: backbone -> 1000-way linear classifier on the embedding -> sparse
  softmax cross-entropy -> gradients -> SGD(momentum 0.9) update, the same work the
  PyTorch reference measurement did (1000 classes, float32, 112x112).

``--bn both`` adds training rows (without XLA) whose backbones use the fused
``FastBatchNormalization`` instead of ``keras.layers.BatchNormalization`` (an ablation;
inference runs the same ops either way).

Each measurement traces the step, runs ``--warmup`` untimed steps, then ``--repeats`` rounds
of at least ``--round-seconds`` each (whole steps); the reported img/s is the median over
rounds. It prints a markdown table and writes
``benchmarks/results/backbone_throughput.json``.

Usage:
    python benchmarks/backbone_throughput.py --bn both           # r50, mbf, small at batch 32
    python benchmarks/backbone_throughput.py --presets small --batch-size 64 --xla off
"""

import argparse
import contextlib
import datetime
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _results import machine_info, write_json  # noqa: E402

from keras_arcface.models import blocks, count_params_and_macs, get_backbone  # noqa: E402
from keras_arcface.models.fast_batch_normalization import FastBatchNormalization  # noqa: E402

# PyTorch reference implementation on this CPU (2 threads, batch 32, float32), img/s.
REFERENCE_IMG_PER_S = {
    ("r50", "train"): 1.9,
    ("mbf", "train"): 10.2,
    ("r50", "inference"): 7.2,
    ("mbf", "inference"): 49.0,
}
NUM_CLASSES = 1000


def _time_rounds(step, warmup, round_seconds, repeats, batch_size):
    """Runs ``warmup`` steps, then ``repeats`` rounds of at least ``round_seconds`` each."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while count == 0 or time.perf_counter() - start < round_seconds:
            step()
            count += 1
        rates.append(count * batch_size / (time.perf_counter() - start))
    return statistics.median(rates), rates


@contextlib.contextmanager
def batch_norm_layer(kind):
    """Builds backbones with Keras' BN ("keras", the default) or the fused one ("fused")."""
    saved = blocks.BATCH_NORM_CLASS
    if kind == "fused":
        blocks.BATCH_NORM_CLASS = FastBatchNormalization
    try:
        yield
    finally:
        blocks.BATCH_NORM_CLASS = saved


def measure(preset, mode, jit_compile, batch_size, warmup, round_seconds, repeats, bn="keras"):
    """Returns (median img/s, all rounds) of one preset in one mode."""
    keras.backend.clear_session()
    with batch_norm_layer(bn):
        backbone = get_backbone(preset)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch_size, 112, 112, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, NUM_CLASSES, batch_size), dtype=tf.int32)

    if mode == "inference":

        @tf.function(jit_compile=jit_compile)
        def forward(x):
            return backbone(x, training=False)

        def step():
            forward(images).numpy()

    else:
        classifier = keras.layers.Dense(NUM_CLASSES, use_bias=False, name="classifier")
        classifier.build((None, backbone.output.shape[-1]))
        variables = backbone.trainable_variables + classifier.trainable_variables
        optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
        optimizer.build(variables)

        @tf.function(jit_compile=jit_compile)
        def train_step(x, y):
            with tf.GradientTape() as tape:
                logits = classifier(backbone(x, training=True))
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                )
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        def step():
            train_step(images, labels).numpy()

    return _time_rounds(step, warmup, round_seconds, repeats, batch_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["r50", "mbf", "small"])
    parser.add_argument("--modes", nargs="+", default=["train", "inference"])
    parser.add_argument("--xla", choices=["both", "on", "off"], default="both")
    parser.add_argument("--bn", choices=["keras", "fused", "both"], default="keras")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after tracing")
    parser.add_argument(
        "--round-seconds", type=float, default=10.0, help="each timed round runs this long"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "backbone_throughput.json"),
    )
    args = parser.parse_args(argv)
    xla_modes = {"both": [False, True], "on": [True], "off": [False]}[args.xla]

    bn_kinds = {"both": ["keras", "fused"], "fused": ["fused"], "keras": ["keras"]}[args.bn]
    configs = [
        (preset, mode, jit, bn)
        for preset in args.presets
        for mode in args.modes
        for bn in (bn_kinds if mode == "train" else bn_kinds[:1])
        for jit in xla_modes
        if bn == "keras" or not jit  # the fused-BN ablation runs without XLA only
    ]
    machine_before = machine_info(tensorflow=tf.__version__, keras=keras.__version__)
    sizes = {preset: count_params_and_macs(preset) for preset in args.presets}
    rows = []
    for preset, mode, jit, bn in configs:
        median, rounds = measure(
            preset, mode, jit, args.batch_size, args.warmup, args.round_seconds, args.repeats, bn
        )
        rows.append(
            {
                "preset": preset,
                "mode": mode,
                "xla": jit,
                "batch_norm": bn,
                "batch_size": args.batch_size,
                "img_per_s": round(median, 2),
                "rounds_img_per_s": [round(r, 2) for r in rounds],
                "pytorch_reference_img_per_s": REFERENCE_IMG_PER_S.get((preset, mode)),
                "params": sizes[preset][0],
                "gmacs": round(sizes[preset][1] / 1e9, 3),
            }
        )
        print(f"  {preset} {mode} xla={jit} bn={bn}: {median:.2f} img/s", file=sys.stderr)

    print(f"\nBackbone throughput, batch {args.batch_size}, 112x112, float32, median img/s")
    print(f"(load average before {machine_before['load_average_1_5_15_min']})\n")
    print("| preset | params | GMACs | mode | BN | XLA | img/s | PyTorch reference img/s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        reference = row["pytorch_reference_img_per_s"]
        print(
            f"| {row['preset']} | {row['params'] / 1e6:.2f}M | {row['gmacs']:.2f} | "
            f"{row['mode']} | {row['batch_norm']} | {'on' if row['xla'] else 'off'} | "
            f"{row['img_per_s']:.2f} | "
            f"{reference if reference is not None else '-'} |"
        )
    write_json(
        args.output,
        {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_before,
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
            "command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
            "results": rows,
        },
    )
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
