"""Training-step and inference throughput of the backbones, side by side with PyTorch.

For each preset and each compile mode (plain ``tf.function`` and XLA ``jit_compile=True``)
the script times, alternating rounds with the InsightFace PyTorch reference of the same
architecture (``keras_arcface.models.torch_reference``; "mbf" and the iResNets) on the same
inputs and thread count:

* inference: ``embedding_model(images, training=False)`` against the reference's eager
  forward under ``torch.inference_mode``;
* a training step: backbone -> 1000-way linear classifier on the embedding -> sparse
  softmax cross-entropy -> gradients -> SGD(momentum 0.9) update, against the same step
  in PyTorch (1000 classes, float32, 112x112).

Without torch it prints this package's numbers alone and says so.

The backbones train on ``FastBatchNormalization`` (TensorFlow's fused BN kernels), as the
package builds them. ``--bn both`` adds training rows (without XLA) whose backbones use
``keras.layers.BatchNormalization`` instead (an ablation; inference runs the same ops
either way).

Each measurement traces the step, runs ``--warmup`` untimed steps, then ``--repeats`` rounds
of at least ``--round-seconds`` each (whole steps); the reported img/s is the median over
rounds, the ratio is this package's median over the reference's (> 1: faster). Each row
records the load average before and after. It prints a markdown table and writes
``benchmarks/results/backbone_throughput.json``.

Usage:
    python benchmarks/backbone_throughput.py --presets mbf r50 --xla off   # batch 32
    python benchmarks/backbone_throughput.py --presets small --batch-size 64 --xla off
"""

import argparse
import contextlib
import datetime
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _reference import (  # noqa: E402
    TORCH_MISSING,
    compare,
    format_ratio,
    interleaved,
    load_average,
    prepare_sides,
    torch_eager_runner,
    torch_inference_model,
    torch_training_step,
)
from _results import write_json  # noqa: E402

from keras_arcface.models import blocks, count_params_and_macs, get_backbone  # noqa: E402
from keras_arcface.models.fast_batch_normalization import FastBatchNormalization  # noqa: E402

NUM_CLASSES = 1000


@contextlib.contextmanager
def batch_norm_layer(kind):
    """Builds backbones with the fused BN ("fused", the package's) or Keras' own ("keras")."""
    saved = blocks.BATCH_NORM_CLASS
    blocks.BATCH_NORM_CLASS = (
        FastBatchNormalization if kind == "fused" else keras.layers.BatchNormalization
    )
    try:
        yield
    finally:
        blocks.BATCH_NORM_CLASS = saved


REFERENCE_ARCHS = ("mbf", "r18", "r34", "r50")


def keras_step(preset, mode, jit_compile, images, labels, bn="fused"):
    """One step of this package: a ``tf.function`` forward or a full training step."""
    keras.backend.clear_session()
    with batch_norm_layer(bn):
        backbone = get_backbone(preset)
    images, labels = tf.constant(images), tf.constant(labels, dtype=tf.int32)

    if mode == "inference":

        @tf.function(jit_compile=jit_compile)
        def forward(x):
            return backbone(x, training=False)

        return lambda: forward(images).numpy()

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

    return lambda: train_step(images, labels).numpy()


def reference_step(torch, preset, mode, images, labels):
    """The PyTorch reference's step of the same work, or ``None`` where there is none."""
    if torch is None or preset not in REFERENCE_ARCHS:
        return None
    if mode == "inference":
        run = torch_eager_runner(torch, torch_inference_model(torch, preset))
        return lambda: run(images)
    return torch_training_step(torch, preset, images, labels, NUM_CLASSES)


def measure(config, args, torch):
    """One row: this package and the reference interleaved round by round."""
    preset, mode, jit, bn = config
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch_size, 112, 112, 3)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, args.batch_size)
    sides = {"ours": keras_step(preset, mode, jit, images, labels, bn)}
    reference = reference_step(torch, preset, mode, images, labels)
    if reference is not None:
        sides["reference"] = reference
    load_before = load_average()
    rates = interleaved(
        sides,
        args.batch_size,
        rounds=args.repeats,
        round_seconds=args.round_seconds,
        warmup=args.warmup,
    )
    row = {"preset": preset, "mode": mode, "xla": jit, "batch_norm": bn}
    row.update(compare(rates["ours"], rates.get("reference")))
    row.update(load_average_before=load_before, load_average_after=load_average())
    return row


def _print_table(rows, args, machine, torch):
    print(f"\nBackbone throughput, batch {args.batch_size}, 112x112, float32, median img/s")
    print(f"over {args.repeats} interleaved rounds; {machine['cpu']}, {args.threads} threads")
    if torch is None:
        print(TORCH_MISSING)
    print(
        "\n| preset | mode | BN | XLA | keras-arcface img/s | PyTorch reference img/s "
        "| ratio | load before / after |\n|---|---|---|---|---|---|---|---|"
    )
    for row in rows:
        reference = row.get("reference_img_per_s", "-")
        print(
            f"| {row['preset']} | {row['mode']} | {row['batch_norm']} | "
            f"{'on' if row['xla'] else 'off'} | {row['img_per_s']:.2f} | {reference} | "
            f"{format_ratio(row)} | {row['load_average_before']} / "
            f"{row['load_average_after']} |"
        )


def _configs(args):
    xla_modes = {"both": [False, True], "on": [True], "off": [False]}[args.xla]
    bn_kinds = {"both": ["fused", "keras"], "fused": ["fused"], "keras": ["keras"]}[args.bn]
    return [
        (preset, mode, jit, bn)
        for preset in args.presets
        for mode in args.modes
        for bn in (bn_kinds if mode == "train" else bn_kinds[:1])
        for jit in xla_modes
        if bn == "fused" or not jit  # the Keras-BN ablation runs without XLA only
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["mbf", "r50", "small"])
    parser.add_argument("--modes", nargs="+", default=["train", "inference"])
    parser.add_argument("--xla", choices=["both", "on", "off"], default="off")
    parser.add_argument(
        "--bn",
        choices=["fused", "keras", "both"],
        default="fused",
        help="BN layer of the training rows: the package's fused one, Keras' own, or both",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow and torch threads")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after tracing")
    parser.add_argument(
        "--round-seconds", type=float, default=10.0, help="each timed round runs this long"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per side")
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "backbone_throughput.json"),
    )
    args = parser.parse_args(argv)
    torch, machine = prepare_sides(tf, keras, args.threads)
    sizes = {preset: count_params_and_macs(preset) for preset in args.presets}
    rows = []
    for config in _configs(args):
        row = measure(config, args, torch)
        row.update(
            batch_size=args.batch_size,
            params=sizes[config[0]][0],
            gmacs=round(sizes[config[0]][1] / 1e9, 3),
        )
        rows.append(row)
        print(f"  {row}", file=sys.stderr, flush=True)
    _print_table(rows, args, machine, torch)
    write_json(
        args.output,
        {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine,
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
            "command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
            "threads": args.threads,
            "reference": "PyTorch InsightFace reference (keras_arcface.models.torch_reference)"
            if torch is not None
            else None,
            "results": rows,
        },
    )
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
