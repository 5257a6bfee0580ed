"""Training throughput: the full pipeline (TFRecords -> step) vs the same step on tensors.

Both runs use the same ``Trainer`` step (backbone forward/backward, ArcFace on the class
centers, SGD update) and the same batch size; only the input differs:

- ``tfrecords``: ``keras_arcface.data.make_dataset`` reading, decoding and augmenting JPEG
  TFRecords in parallel with training (prefetch);
- ``in_memory``: a few decoded batches held in memory and repeated.

A ratio near 1.0 means the input pipeline is not the bottleneck (target >= 0.95).

    python benchmarks/training_throughput.py                  # small backbone, batch 64
    python benchmarks/training_throughput.py --backbone mbf --batch 32 --steps 20

Prints a markdown table and writes benchmarks/results/training_throughput.json.
"""

import argparse
import datetime
import gc
import os
import sys
import tempfile
import time

from _results import machine_info, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _data(data_dir, num_identities, images_per_identity):
    if data_dir:
        return data_dir
    from keras_arcface.data import generate_synthetic

    out = tempfile.mkdtemp(prefix="throughput-data-")
    summary = generate_synthetic(
        out,
        num_identities=num_identities,
        images_per_identity=images_per_identity,
        heldout_identities=2,
        heldout_images_per_identity=2,
        num_pairs=2,
        progress=False,
    )
    return summary["train_dir"]


def _measure(trainer, steps, warmup):
    iterator = iter(trainer._distributed_dataset(0, 0))
    for _ in range(warmup):
        float(trainer._train_step(iterator)[0])  # (loss, applied)
    start = time.perf_counter()
    for _ in range(steps):
        float(trainer._train_step(iterator)[0])  # (loss, applied)
    seconds = time.perf_counter() - start
    del iterator  # stop this pipeline's background prefetching before the next measurement
    gc.collect()
    return steps * trainer.derived.global_batch_size / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="TFRecord folder (default: generate a small one)")
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per input")
    parser.add_argument("--identities", type=int, default=50)
    parser.add_argument("--images-per-identity", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "training_throughput.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from keras_arcface.data import make_dataset
    from keras_arcface.training import config
    from keras_arcface.training.trainer import Trainer

    train_dir = _data(args.data_dir, args.identities, args.images_per_identity)
    cfg = config.load_config(
        "synthetic_demo",
        [
            f"data.train_dir={train_dir}",
            f"data.batch_size={args.batch}",
            f"model.backbone={args.backbone}",
            "schedule.total_steps=100000",
            "schedule.warmup_steps=0",
            "logging.progress_bar=false",
        ],
    )
    # One decoded batch of the same pipeline, held as a tensor and repeated: no per-step
    # input work at all.
    images, labels = next(iter(make_dataset(train_dir, args.batch, seed=0)))

    def in_memory(input_context, epoch, skip_batches, batch_size):
        return tf.data.Dataset.from_tensors((images, labels)).repeat()

    trainers = {
        "tfrecords": Trainer(cfg, tempfile.mkdtemp(prefix="tp-a-")),
        "in_memory": Trainer(cfg, tempfile.mkdtemp(prefix="tp-b-"), dataset_fn=in_memory),
    }
    rates = {name: [] for name in trainers}
    order = list(trainers)
    for round_index in range(args.rounds):
        # Alternate inputs, and which goes first, so both see the same machine load.
        for name in order if round_index % 2 == 0 else order[::-1]:
            rates[name].append(_measure(trainers[name], args.steps, args.warmup))
    best = {name: max(values) for name, values in rates.items()}
    ratio = best["tfrecords"] / best["in_memory"]
    print(
        f"\nTraining step throughput: {args.backbone} backbone, batch {args.batch}, "
        f"ArcFace, SGD (CPU, {os.cpu_count()} cores)\n"
    )
    print("| input | img/s (best of rounds) | all rounds |")
    print("|---|---:|---|")
    for name in trainers:
        print(f"| {name} | {best[name]:.1f} | {', '.join(f'{v:.1f}' for v in rates[name])} |")
    print(
        f"\nratio tfrecords / in_memory = {ratio:.3f} (target >= 0.95: "
        f"{'met' if ratio >= 0.95 else 'NOT met'})"
    )
    payload = {
        "benchmark": "training_throughput",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "command": " ".join(
            ["python", "benchmarks/training_throughput.py", *(argv or sys.argv[1:])]
        ),
        "backbone": args.backbone,
        "batch": args.batch,
        "images_per_second": rates,
        "best": best,
        "ratio": ratio,
    }
    write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
