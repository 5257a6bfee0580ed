"""Speed of evaluation: the verification protocol and 1:N search on CPU.

Two claims are measured:

1. pairs/s of the full verification protocol (``verification_metrics``: 10 folds, accuracy on
   the 400-threshold grid, TAR at four FAR targets on the 4,000-threshold grid, exact ROC, AUC,
   EER) on 12,000 embeddings = 6,000 pairs, the size of LFW. For scale, the same protocol
   written as the reference writes it (Python loops over folds and thresholds) is timed in
   the same run.
2. queries/s of 1:N search (``search``, top-5) and of ``identification_metrics`` (ranks and
   open-set scores) against 100,000 gallery embeddings of dimension 512.

Timings are medians over repeats. Prints a markdown table and writes
``benchmarks/results/eval_speed.json``.

    python benchmarks/eval_speed.py [--repeats 7] [--gallery 100000] [--queries 1000]
"""

import argparse
import datetime
import os
import statistics
import sys
import time

import numpy as np
from _results import machine_info, write_json

from keras_arcface.evaluation import identification_metrics, search, verification_metrics

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6000, help="verification pairs")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension")
    parser.add_argument("--gallery", type=int, default=100_000, help="gallery embeddings")
    parser.add_argument("--queries", type=int, default=1000, help="search queries per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    parser.add_argument(
        "--reference-repeats", type=int, default=1, help="repeats of the loop version (0 skips)"
    )
    parser.add_argument("--output", default=os.path.join(HERE, "results", "eval_speed.json"))
    return parser.parse_args(argv)


def lfw_like_pairs(num_pairs, dim, rng):
    identities = rng.standard_normal((num_pairs, dim)).astype(np.float32)
    issame = np.arange(num_pairs) % 2 == 0
    first = identities + 0.9 * rng.standard_normal((num_pairs, dim)).astype(np.float32)
    other = np.where(issame[:, None], identities, rng.standard_normal((num_pairs, dim)))
    second = other + 0.9 * rng.standard_normal((num_pairs, dim)).astype(np.float32)
    return first, second.astype(np.float32), issame


def loop_protocol(emb1, emb2, issame, nfolds=10, far_target=1e-3):
    """The protocol as the reference writes it: a NumPy pass per fold and threshold.

    Timing only (TAR interpolation by np.interp); the exact protocol is in the tests.
    """
    unit1 = emb1 / np.linalg.norm(emb1, axis=1, keepdims=True)
    unit2 = emb2 / np.linalg.norm(emb2, axis=1, keepdims=True)
    dist = np.sum(np.square(unit1 - unit2), axis=1)
    folds = np.array_split(np.arange(len(dist)), nfolds)
    accuracies = []
    for test in folds:
        train = np.setdiff1d(np.arange(len(dist)), test)
        scores = [np.mean((dist[train] < t) == issame[train]) for t in np.arange(0, 4, 0.01)]
        best = np.arange(0, 4, 0.01)[int(np.argmax(scores))]
        accuracies.append(np.mean((dist[test] < best) == issame[test]))
        impostors = ~issame[train]
        fars = [
            np.sum((dist[train] < t) & impostors) / impostors.sum() for t in np.arange(0, 4, 0.001)
        ]
        threshold = np.interp(far_target, fars, np.arange(0, 4, 0.001))
        np.mean(dist[test][issame[test]] < threshold)
    return float(np.mean(accuracies))


def timed(function, repeats):
    """Wall-clock and process CPU seconds of each repeat.

    CPU seconds (all threads) are less sensitive than wall time to other jobs on a shared
    machine, so both are reported.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - start_wall)
        cpus.append(time.process_time() - start_cpu)
    return walls, cpus


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    emb1, emb2, issame = lfw_like_pairs(args.pairs, args.dim, rng)
    verification_metrics(emb1, emb2, issame)  # warm-up
    protocol_times = timed(lambda: verification_metrics(emb1, emb2, issame), args.repeats)
    accuracy = verification_metrics(emb1, emb2, issame)["accuracy"]
    loop_times = timed(lambda: loop_protocol(emb1, emb2, issame), args.reference_repeats)

    gallery = rng.standard_normal((args.gallery, args.dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    gallery_labels = np.arange(args.gallery)
    picks = rng.integers(0, args.gallery, size=args.queries)
    queries = gallery[picks] + 0.05 * rng.standard_normal((args.queries, args.dim)).astype(
        np.float32
    )
    # A tenth of the queries are of identities outside the gallery (open set).
    probe_labels = np.where(np.arange(args.queries) % 10 == 0, -1, picks)
    search(queries[:10], gallery, k=5)  # warm-up
    search_times = timed(lambda: search(queries, gallery, k=5), args.repeats)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    prepared_times = timed(
        lambda: search(unit_queries, gallery, k=5, normalized=True), args.repeats
    )
    ident_times = timed(
        lambda: identification_metrics(queries, probe_labels, gallery, gallery_labels),
        args.repeats,
    )

    rows = [
        (
            "verification protocol (vectorised)",
            f"{args.pairs} pairs",
            protocol_times,
            args.pairs,
            "pairs/s",
        ),
        (
            "search top-5",
            f"{args.queries} queries x {args.gallery} gallery",
            search_times,
            args.queries,
            "queries/s",
        ),
        (
            "search top-5, gallery pre-normalized",
            f"{args.queries} queries x {args.gallery} gallery",
            prepared_times,
            args.queries,
            "queries/s",
        ),
        (
            "identification_metrics",
            f"{args.queries} probes x {args.gallery} gallery",
            ident_times,
            args.queries,
            "queries/s",
        ),
    ]
    if loop_times[0]:
        rows.insert(
            1,
            (
                "verification protocol (reference-style loops)",
                f"{args.pairs} pairs",
                loop_times,
                args.pairs,
                "pairs/s",
            ),
        )
    print(
        f"\ndim {args.dim}, median of {args.repeats} repeats ({args.reference_repeats} for loops)"
    )
    print(
        "| what | size | median wall (s) | min wall (s) | median CPU (s) "
        "| throughput (median wall) | per CPU-second |"
    )
    print("|---|---|---|---|---|---|---|")
    results = {}
    for name, size, (walls, cpus), count, unit in rows:
        median, cpu = statistics.median(walls), statistics.median(cpus)
        results[name] = {
            "size": size,
            "median_s": median,
            "min_s": min(walls),
            "median_cpu_s": cpu,
            "times_s": walls,
            "cpu_times_s": cpus,
            unit.replace("/", "_per_"): count / median,
            unit.replace("/s", "_per_cpu_s"): count / max(cpu, 1e-9),
        }
        print(
            f"| {name} | {size} | {median:.4f} | {min(walls):.4f} | {cpu:.4f} "
            f"| {count / median:,.0f} {unit} | {count / max(cpu, 1e-9):,.0f} |"
        )
    if loop_times[0]:
        speedup = statistics.median(loop_times[1]) / statistics.median(protocol_times[1])
        print(
            f"\nvectorised protocol uses {speedup:,.0f}x less CPU time than the loop version "
            f"(accuracy {accuracy:.4f})"
        )
        results["cpu_speedup_vs_loops"] = speedup

    write_json(
        args.output,
        {
            "benchmark": "eval_speed",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
            "machine": machine_info(numpy=np.__version__),
            "config": vars(args) | {"output": os.path.relpath(args.output)},
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
