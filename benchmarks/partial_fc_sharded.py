"""Sharded vs replicated Partial FC head on two logical CPU devices: head memory and step time.

Each (layout, sample rate) runs in its own process with two logical CPU devices
(``MirroredStrategy``). One step = all-gather of the embeddings, cosines, ArcFace margin,
softmax cross-entropy (across shards when sharded), backward, SGD-momentum update of the
centers. Per-replica head bytes are the sizes of the center and momentum variables placed on
each device; the table for N = 1M..10M and R = 1..8 is computed from the same formula
(``2 * ceil(N / R) * D * 4`` bytes sharded, ``2 * N * D * 4`` replicated).

    python benchmarks/partial_fc_sharded.py --num-classes 1000000 --dim 128 --rates 0.1 1.0

Prints markdown tables and writes benchmarks/results/partial_fc_sharded.json.
"""

import argparse
import datetime
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

from _results import machine_info, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def run_one(num_classes, dim, batch, rate, sharded, steps, warmup):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_arcface import losses
    from keras_arcface.layers.partial_fc import PartialFC
    from keras_arcface.layers.sharded_partial_fc import ShardedPartialFC
    from keras_arcface.training import config as config_lib
    from keras_arcface.training.optimizers import CenterOptimizer, ShardedCenterOptimizer

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    loss = losses.get("arcface", margin=0.5, scale=64.0)
    cfg = config_lib.from_dict({})
    if sharded:
        head = ShardedPartialFC(num_classes, dim, strategy, sample_rate=rate, logits_fn=loss.logits)
        optimizer = ShardedCenterOptimizer(head, cfg)
        per_device = {}
        for r in head.local_replicas:
            opt = optimizer.optimizers[r]
            per_device[r] = int(np.prod(head.shard(r).shape) + np.prod(opt.slot_1.shape)) * 4
    else:
        with strategy.scope():
            head = PartialFC(num_classes, dim, sample_rate=rate, logits_fn=loss.logits)
            head.build((None, dim))
            optimizer = CenterOptimizer.from_config(head.centers, cfg)
        copies = strategy.experimental_local_results(head.centers.value)
        per_device = {r: 2 * int(np.prod(c.shape)) * 4 for r, c in enumerate(copies)}

    def replica(emb, labels, k):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            if sharded:
                var = head.local_shard()
                per = head.per_example_loss(emb, labels, step=k)
            else:
                var = head.centers.value
                all_labels = ctx.all_gather(labels, axis=0)
                per = head.per_example_loss(emb, labels, global_labels=all_labels, step=k)
            value = tf.reduce_sum(per) / float(2 * batch)
        grad = tape.gradient(value, var)
        optimizer.apply(grad, 0.1)
        return value

    @tf.function
    def step(emb, labels, k):
        return strategy.reduce("sum", strategy.run(replica, args=(emb, labels, k)), axis=None)

    rng = np.random.default_rng(0)
    times = []
    for k in range(warmup + steps):
        emb = rng.normal(size=(2 * batch, dim)).astype("float32")
        labels = rng.integers(0, num_classes, 2 * batch).astype("int32")

        def split(array):
            return strategy.experimental_distribute_values_from_function(
                lambda c, a=array: tf.constant(a[c.replica_id_in_sync_group * batch :][:batch])
            )

        start = time.perf_counter()
        float(step(split(emb), split(labels), tf.constant(k, tf.int64)))
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return {
        "layout": "sharded" if sharded else "replicated",
        "sample_rate": rate,
        "median_step_ms": statistics.median(times) * 1000.0,
        "head_bytes_per_replica": max(per_device.values()),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "steps": steps,
    }


def computed_table(
    dim, replicas=(1, 2, 4, 8), classes=(1_000_000, 2_000_000, 5_000_000, 10_000_000)
):
    """Per-replica GiB of centers + SGD momentum: sharded (replicated in brackets)."""
    rows = []
    for n in classes:
        row = {"num_classes": n}
        for r in replicas:
            row[f"R={r}"] = 2 * math.ceil(n / r) * dim * 4 / 2**30
        row["replicated"] = 2 * n * dim * 4 / 2**30
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-classes", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64, help="per replica")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--table-dim", type=int, default=512)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "partial_fc_sharded.json"))
    args = parser.parse_args(argv)
    if args.one:
        rate, layout = float(args.one[0]), args.one[1]
        result = run_one(
            args.num_classes,
            args.dim,
            args.batch,
            rate,
            layout == "sharded",
            args.steps,
            args.warmup,
        )
        print(json.dumps(result))
        return 0
    rows = []
    load = [os.getloadavg()]
    for rate in args.rates:
        for layout in ("replicated", "sharded"):
            cmd = [sys.executable, os.path.abspath(__file__), "--one", str(rate), layout]
            cmd += ["--num-classes", str(args.num_classes), "--dim", str(args.dim)]
            cmd += ["--batch", str(args.batch), "--steps", str(args.steps)]
            cmd += ["--warmup", str(args.warmup)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{layout} {rate}: {rows[-1]['median_step_ms']:.1f} ms", file=sys.stderr)
    load.append(os.getloadavg())
    print(
        f"\nTwo logical CPU devices, {args.num_classes:,} classes, dim {args.dim}, "
        f"batch {args.batch} per replica, ArcFace + SGD momentum; load average "
        f"{load[0][0]:.2f} -> {load[1][0]:.2f}\n"
    )
    print("| layout | sample_rate | head MiB per replica | median step (ms) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['sample_rate']} | {r['head_bytes_per_replica'] / 2**20:.0f} | "
            f"{r['median_step_ms']:.1f} | {r['peak_rss_mib']:.0f} |"
        )
    table = computed_table(args.table_dim)
    print(f"\nComputed per-replica GiB (centers + momentum, dim {args.table_dim}), sharded:\n")
    print("| classes | R=1 | R=2 | R=4 | R=8 | replicated (any R) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for t in table:
        cells = " | ".join(f"{t[f'R={r}']:.2f}" for r in (1, 2, 4, 8))
        print(f"| {t['num_classes']:,} | {cells} | {t['replicated']:.2f} |")
    write_json(
        args.out,
        {
            "benchmark": "partial_fc_sharded",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "load_average": load,
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "num_classes": args.num_classes,
            "dim": args.dim,
            "batch_per_replica": args.batch,
            "results": rows,
            "computed": table,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
