"""Difficulty of the synthetic identities: raw pixels fail, a small CNN learns.

Generates the synthetic set (default settings unless told otherwise), then reports on the
held-out verification pairs (identities never trained on), with the reference protocol
(``keras_arcface.evaluation.verification_metrics``: 10 contiguous folds, best threshold on
9, squared L2 of L2-normalized vectors):

* raw pixels: each image's flattened RGB vector (cosine similarity), no flip;
* centered pixels: the same minus each image's mean (removes global brightness);
* a small CNN trained with plain softmax on the training identities for
  ``--train-seconds``, its 128-d penultimate layer as the embedding (with flip fusion).

Prints a markdown table and writes ``benchmarks/results/synthetic_difficulty.json``.

Usage:
    python benchmarks/synthetic_difficulty.py                      # defaults, 150 s training
    python benchmarks/synthetic_difficulty.py --train-seconds 0    # raw pixels only
    python benchmarks/synthetic_difficulty.py --set max_roll=6 --set occlusion_probability=0
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_arcface.data import generate_synthetic, load_bin, make_dataset, read_manifest  # noqa: E402
from keras_arcface.data.synthetic_command import parse_knobs  # noqa: E402
from keras_arcface.evaluation import evaluate_verification, verification_metrics  # noqa: E402


def pixel_accuracy(images, issame, centered=False):
    flat = images.reshape(len(images), -1).astype(np.float64)
    if centered:
        flat = flat - flat.mean(axis=1, keepdims=True)
    return verification_metrics(flat[0::2], flat[1::2], issame)["accuracy"]


def small_cnn(num_classes, downsample=1):
    import keras

    inputs = keras.Input((112, 112, 3), name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    if downsample > 1:  # a cheaper check on busy machines: the CNN sees 56x56 faces
        x = keras.layers.AveragePooling2D(downsample)(x)
    for filters in (32, 64, 96, 128):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    embedding = keras.layers.Dense(128, name="embedding")(x)
    logits = keras.layers.Dense(num_classes)(keras.layers.ReLU()(embedding))
    return keras.Model(inputs, logits), keras.Model(inputs, embedding)


def train_and_verify(train_dir, verification, seconds, batch_size, epochs, downsample):
    import keras
    import tensorflow as tf

    manifest = read_manifest(train_dir)
    classifier, embedder = small_cnn(manifest["num_classes"], downsample)
    classifier.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    dataset = make_dataset(train_dir, batch_size, seed=0)
    steps = max(1, manifest["num_images"] // batch_size)

    class StopAfter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.perf_counter() - start > seconds:
                self.model.stop_training = True

    start = time.perf_counter()
    history = classifier.fit(
        dataset, epochs=epochs, steps_per_epoch=steps, verbose=2, callbacks=[StopAfter()]
    )
    trained = time.perf_counter() - start

    @tf.function
    def embed(images):
        return embedder(images, training=False)

    result = evaluate_verification(
        lambda x: embed(tf.constant(x)).numpy(),
        verification.images,
        verification.issame,
        progress=False,
    )
    return {
        "cnn_accuracy": result["accuracy"],
        "cnn_train_seconds": round(trained, 1),
        "cnn_epochs": len(history.history["loss"]),
        "cnn_train_accuracy": float(history.history["accuracy"][-1]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=300)
    parser.add_argument("--images-per-identity", type=int, default=30)
    parser.add_argument("--heldout-identities", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--train-seconds", type=float, default=150.0)
    parser.add_argument("--epochs", type=int, default=1000, help="stop after these epochs")
    parser.add_argument("--downsample", type=int, default=1, help="CNN input pooling")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reuse", action="store_true", help="reuse the data in --out")
    parser.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE")
    parser.add_argument("--out", default=None, help="keep the generated data here")
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "results", "synthetic_difficulty.json"),
        help="result JSON",
    )
    args = parser.parse_args(argv)
    knobs = parse_knobs(args.set)
    out = args.out or tempfile.mkdtemp(prefix="synthetic_difficulty_")
    start = time.perf_counter()
    if args.reuse:
        with open(os.path.join(out, "summary.json")) as handle:
            summary = json.load(handle)
    else:
        summary = generate_synthetic(
            out,
            num_identities=args.identities,
            images_per_identity=args.images_per_identity,
            heldout_identities=args.heldout_identities,
            num_pairs=args.pairs,
            seed=args.seed,
            num_workers=args.workers,
            overwrite=True,
            progress=False,
            **knobs,
        )
        with open(os.path.join(out, "summary.json"), "w") as handle:
            json.dump(summary, handle)
    generate_seconds = time.perf_counter() - start
    verification = load_bin(summary["verification_bin"])
    row = {
        "num_images": summary["num_images"],
        "identities": summary["num_identities"],
        "heldout_identities": summary["heldout_identities"],
        "pairs": verification.num_pairs,
        "generate_seconds": round(generate_seconds, 1),
        "total_seconds": summary["total_seconds"],
        "raw_pixel_accuracy": pixel_accuracy(verification.images, verification.issame),
        "centered_pixel_accuracy": pixel_accuracy(
            verification.images, verification.issame, centered=True
        ),
    }
    if args.train_seconds > 0:
        row.update(
            train_and_verify(
                summary["train_dir"],
                verification,
                args.train_seconds,
                args.batch_size,
                args.epochs,
                args.downsample,
            )
        )
    print("\n| quantity | value |\n|---|---|")
    for key, value in row.items():
        print(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "command": " ".join(
            ["python", "benchmarks/synthetic_difficulty.py", *(argv or sys.argv[1:])]
        ),
        "difficulty": summary["difficulty"],
        "results": row,
    }
    path = args.output
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(record, handle, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
