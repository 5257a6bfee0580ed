"""Throughput of the training input pipeline against a bare JPEG decode loop.

Builds a TFRecord dataset of 112x112 JPEG images (synthetic faces from the package's
generator by default), then times, alternating in the same process:

* ``bare decode``: ``TFRecordDataset -> parse -> tf.io.decode_jpeg`` with parallel calls,
  ``deterministic=False`` and batching: the cost floor of reading JPEG records;
* ``bare decode (serial)``: the same with one decode at a time;
* ``make_dataset``: the package's training pipeline (file shuffle + interleave, shuffle
  buffer, parse, decode, checks, random flip, batch, prefetch), with
  ``deterministic=False``, as the ``Trainer`` reads it (``image_dtype="uint8"``: the model
  casts) and with the float32 cast in the pipeline (``make_dataset``'s default).

Each measurement reads ``--batches`` batches after ``--warmup`` batches, ``--repeats`` times;
the table shows the median and best img/s, and the CPU time per image over all threads
(``time.process_time``), which barely depends on other load: on a shared machine it is the
robust comparison, and ``cores / cost`` is the rate at full use of this machine's CPUs.
Targets: >= 3000 img/s and >= 0.8 x bare decode.
Writes ``benchmarks/results/input_pipeline.json``.

Usage:
    python benchmarks/input_pipeline.py
    python benchmarks/input_pipeline.py --images 8192 --batch-size 256 --repeats 5
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _results import machine_info  # noqa: E402

from keras_arcface.data import make_dataset, read_manifest  # noqa: E402
from keras_arcface.data.schema import KEY_ENCODED, feature_spec, shard_paths  # noqa: E402

TRAINER_ROW = "make_dataset (training, uint8 as the Trainer reads it)"
FLOAT_ROW = "make_dataset (training, float32)"


def build_dataset(out, num_images, identities):
    from keras_arcface.data import generate_synthetic

    generate_synthetic(
        out,
        num_identities=identities,
        images_per_identity=max(1, num_images // identities),
        heldout_identities=2,
        heldout_images_per_identity=2,
        num_pairs=2,
        progress=False,
        overwrite=True,
    )
    return os.path.join(out, "train")


def bare_decode(data_dir, batch_size, parallel):
    spec = {KEY_ENCODED: feature_spec()[KEY_ENCODED]}
    calls = tf.data.AUTOTUNE if parallel else None

    @tf.autograph.experimental.do_not_convert
    def decode(record):
        encoded = tf.io.parse_single_example(record, spec)[KEY_ENCODED]
        return tf.io.decode_jpeg(encoded, channels=3)

    files = shard_paths(data_dir)
    dataset = tf.data.TFRecordDataset(files, num_parallel_reads=len(files) if parallel else None)
    if parallel:
        dataset = dataset.repeat().map(decode, num_parallel_calls=calls, deterministic=False)
    else:
        dataset = dataset.repeat().map(decode)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def rate(dataset, batch_size, warmup, batches):
    """Returns (img/s of wall time, CPU milliseconds per image over all threads)."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        batch = next(iterator)
    _ = batch[0].shape if isinstance(batch, tuple) else batch.shape
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    images = batches * batch_size
    return images / wall, 1000.0 * cpu / images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="an existing JPEG TFRecord dataset folder")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--identities", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--output",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "results", "input_pipeline.json"
        ),
    )
    args = parser.parse_args(argv)
    data_dir = args.data or build_dataset(
        tempfile.mkdtemp(prefix="input_pipeline_"), args.images, args.identities
    )
    manifest = read_manifest(data_dir)
    pipelines = {
        "bare decode (serial)": lambda: bare_decode(data_dir, args.batch_size, False),
        "bare decode": lambda: bare_decode(data_dir, args.batch_size, True),
        TRAINER_ROW: lambda: make_dataset(
            data_dir, args.batch_size, seed=0, deterministic=False, image_dtype="uint8"
        ),
        FLOAT_ROW: lambda: make_dataset(data_dir, args.batch_size, seed=0, deterministic=False),
    }
    machine = machine_info(tensorflow=tf.__version__)
    load_before = round(os.getloadavg()[0], 2)
    rates = {name: [] for name in pipelines}
    cpu_ms = {name: [] for name in pipelines}
    for _ in range(args.repeats):  # interleaved: load drift hits every pipeline alike
        for name, build in pipelines.items():
            images_per_s, ms = rate(build(), args.batch_size, args.warmup, args.batches)
            rates[name].append(images_per_s)
            cpu_ms[name].append(ms)
    # CPU time per image barely depends on what else runs on the machine: the robust cost
    # measure on a shared machine, and (2 cores / cost) the rate the pipeline can reach.
    cpu_cost = {name: statistics.median(values) for name, values in cpu_ms.items()}
    medians = {name: statistics.median(values) for name, values in rates.items()}
    # On a shared machine the best round is the least disturbed one.
    bests = {name: max(values) for name, values in rates.items()}
    bare = medians["bare decode"]
    print(
        f"\n{manifest['num_images']} images of 112x112 JPEG, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs ({machine['cpu']}), load average before / after "
        f"{load_before} / {round(os.getloadavg()[0], 2)}\n"
    )
    cores = os.cpu_count() or 1
    print(
        "| pipeline | img/s (median) | img/s (best) | runs | x bare (median) | "
        "CPU ms/img | img/s at full CPU | x bare (CPU) |\n|---|---|---|---|---|---|---|---|"
    )
    for name, value in medians.items():
        runs = ", ".join(f"{v:.0f}" for v in rates[name])
        print(
            f"| {name} | {value:.0f} | {bests[name]:.0f} | {runs} | {value / bare:.2f} | "
            f"{cpu_cost[name]:.3f} | {1000 * cores / cpu_cost[name]:.0f} | "
            f"{cpu_cost['bare decode'] / cpu_cost[name]:.2f} |"
        )
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "load_average_before": load_before,
        "load_average_after": round(os.getloadavg()[0], 2),
        "command": " ".join(["python", "benchmarks/input_pipeline.py", *(argv or sys.argv[1:])]),
        "num_images": manifest["num_images"],
        "mean_jpeg_bytes": float(
            np.mean([os.path.getsize(p) for p in shard_paths(data_dir)])
            / max(1, manifest["num_images"])
            * len(manifest["shards"])
        ),
        "batch_size": args.batch_size,
        "img_per_s": medians,
        "img_per_s_best": bests,
        "cpu_ms_per_image": cpu_cost,
        "cpu_ms_runs": cpu_ms,
        "img_per_s_at_full_cpu": {
            name: 1000 * (os.cpu_count() or 1) / v for name, v in cpu_cost.items()
        },
        "ratio_to_bare_decode_cpu": cpu_cost["bare decode"] / cpu_cost[TRAINER_ROW],
        "ratio_to_bare_decode_cpu_float32": cpu_cost["bare decode"] / cpu_cost[FLOAT_ROW],
        "runs": rates,
        "ratio_to_bare_decode": medians[TRAINER_ROW] / bare,
        "ratio_to_bare_decode_float32": medians[FLOAT_ROW] / bare,
        "ratio_to_bare_decode_best": bests[TRAINER_ROW] / bests["bare decode"],
        "targets": {"img_per_s": 3000, "ratio_to_bare_decode": 0.8},
    }
    path = args.output
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
