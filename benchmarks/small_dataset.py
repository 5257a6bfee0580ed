"""Small datasets: the ``small_dataset`` recipe against the current default, and fine-tuning.

For each seed a small synthetic set is generated: ``--identities`` training identities x
``--images`` images, a validation ``.bin`` of ``--heldout`` other identities (early stopping
selects on it) and a *separate* test ``.bin`` of further identities (every number in the
table is measured on it, so no configuration is scored on the set that chose its model).
Configurations, all on the ``small`` backbone (128-d) and the same batch size:

* ``default``: the package's defaults (``ExperimentConfig()``: scale 64, margin 0.5,
  flips only, polynomial decay over 20 epochs, no warm-up, no early stopping);
* ``recipe``: ``training/experiments/small_dataset.yaml`` unchanged;
* ``finetune_random`` / ``finetune_class_mean``: the recipe started from a demo-style model
  (the ``synthetic_demo`` recipe trained once on ``--pretrain-identities`` other synthetic
  identities) with a 20-step head warm-up and a 0.1 backbone learning-rate multiplier;
  class centers random, or initialised from class-mean embeddings.

Prints mean and spread over seeds and writes ``benchmarks/results/small_dataset.json``.

Example:
    python benchmarks/small_dataset.py --seeds 3
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import machine_info, write_json  # noqa: E402

CONFIGS = ("default", "recipe", "finetune_random", "finetune_class_mean")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--pretrained", default=None, help="reuse a pretraining run folder instead of training one"
    )
    parser.add_argument("--identities", type=int, default=30)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--heldout", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--pretrain-identities", type=int, default=150)
    parser.add_argument("--pretrain-images", type=int, default=20)
    parser.add_argument("--pretrain-epochs", type=float, default=6)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument(
        "--default-epochs", type=float, default=None, help="override the default's 20 epochs"
    )
    parser.add_argument(
        "--recipe-epochs",
        type=float,
        default=None,
        help="override the recipe's 60 epochs (a CPU budget; early stopping usually ends sooner)",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        default=None,
        help="only tabulate the runs of earlier result files (.json or .json.partial), e.g. "
        "seeds run in separate processes",
    )
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "small_dataset.json")
    )
    return parser.parse_args(argv)


def make_data(work, seed, args):
    """Training set + validation .bin (seed), test .bin (other identities, seed + 1000)."""
    from keras_arcface.data import generate_synthetic

    common = dict(progress=False, num_workers=1, contact_identities=1, contact_images=1)
    main = generate_synthetic(
        os.path.join(work, f"data_{seed}"),
        num_identities=args.identities,
        images_per_identity=args.images,
        heldout_identities=args.heldout,
        heldout_images_per_identity=args.images,
        num_pairs=args.pairs,
        seed=seed,
        **common,
    )
    test = generate_synthetic(
        os.path.join(work, f"test_{seed}"),
        num_identities=2,
        images_per_identity=2,
        heldout_identities=args.heldout,
        heldout_images_per_identity=args.images,
        num_pairs=args.pairs,
        seed=seed + 1000,
        **common,
    )
    return main["train_dir"], main["verification_bin"], test["verification_bin"]


def pretrain(work, args):
    """The demo-style starting model: synthetic_demo on other identities (seed 500)."""
    from keras_arcface.data import generate_synthetic
    from keras_arcface.training import config as config_lib
    from keras_arcface.training.trainer import Trainer

    data = generate_synthetic(
        os.path.join(work, "pretrain_data"),
        num_identities=args.pretrain_identities,
        images_per_identity=args.pretrain_images,
        heldout_identities=4,
        heldout_images_per_identity=2,
        num_pairs=8,
        seed=500,
        progress=False,
        num_workers=1,
        contact_identities=1,
        contact_images=1,
    )
    cfg = config_lib.load_config(
        "synthetic_demo",
        [
            f"data.train_dir={data['train_dir']}",
            f"schedule.epochs={args.pretrain_epochs}",
            "logging.progress_bar=false",
            "logging.plot=false",
            "logging.tensorboard=false",
        ],
    )
    run = os.path.join(work, "pretrain_run")
    start = time.perf_counter()
    Trainer(cfg, run).fit()
    return run, time.perf_counter() - start


def overrides_for(name, train_dir, val_bin, seed, pretrained, args):
    common = [
        f"data.train_dir={train_dir}",
        f"seed={seed}",
        "logging.progress_bar=false",
        "logging.plot=false",
        "logging.tensorboard=false",
    ]
    if name == "default":
        epochs = [f"schedule.epochs={args.default_epochs}"] if args.default_epochs else []
        return None, epochs + common + [
            "model.backbone=small",
            "model.embedding_dim=128",
            "data.batch_size=64",
            "name=default",
        ]
    recipe = common + [f"evaluation.bins=[{val_bin}]"]
    if args.recipe_epochs:
        recipe.append(f"schedule.epochs={args.recipe_epochs}")
    if name == "recipe":
        return "small_dataset", recipe
    centers = "class_mean" if name == "finetune_class_mean" else "random"
    return "small_dataset", recipe + [
        f"model.init_from={pretrained}",
        f"model.init_centers={centers}",
        "schedule.head_warmup_steps=20",
        "optimizer.backbone_lr_multiplier=0.1",
    ]


def run_one(name, work, seed, data, pretrained, args):
    import keras
    import tensorflow as tf

    from keras_arcface.data import load_bin
    from keras_arcface.evaluation import evaluate_verification
    from keras_arcface.training import config as config_lib
    from keras_arcface.training.trainer import Trainer

    train_dir, val_bin, test_bin = data
    experiment, overrides = overrides_for(name, train_dir, val_bin, seed, pretrained, args)
    cfg = config_lib.load_config(experiment, overrides)
    run = os.path.join(work, f"{name}_{seed}")
    start = time.perf_counter()
    result = Trainer(cfg, run).fit()
    seconds = time.perf_counter() - start
    best = os.path.join(run, "embedding_best.keras")
    chosen = best if os.path.isfile(best) else os.path.join(run, "embedding_latest.keras")
    model = keras.saving.load_model(chosen)
    embed = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    pairs = load_bin(test_bin)
    scores = evaluate_verification(
        lambda x: embed(tf.convert_to_tensor(x, tf.float32)).numpy(),
        pairs.images,
        pairs.issame,
        progress=False,
    )
    return {
        "config": name,
        "seed": seed,
        "test_accuracy": float(scores["accuracy"]),
        "test_accuracy_std_over_folds": float(scores["accuracy_std"]),
        "steps": result.step,
        "stopped_early": result.stopped_early,
        "model": os.path.basename(chosen),
        "seconds": round(seconds, 1),
    }


def raw_pixels(test_bin):
    from keras_arcface.data import load_bin
    from keras_arcface.evaluation import evaluate_verification

    pairs = load_bin(test_bin)
    scores = evaluate_verification(
        lambda x: x.reshape(len(x), -1), pairs.images, pairs.issame, flip=False, progress=False
    )
    return float(scores["accuracy"])


def summarise(rows, names):
    table = []
    for name in names:
        values = [r["test_accuracy"] for r in rows if r["config"] == name]
        if values:
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            table.append(
                {
                    "config": name,
                    "mean": statistics.mean(values),
                    "std": spread,
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                }
            )
    return table


def print_table(table):
    print(f"\n{'config':<22} {'mean':>7} {'std':>7} {'min':>7} {'max':>7}  n")
    for row in table:
        print(
            f"{row['config']:<22} {row['mean']:7.4f} {row['std']:7.4f} "
            f"{row['min']:7.4f} {row['max']:7.4f}  {row['n']}"
        )


def combine(args, names):
    import json

    rows, seen, dropped = [], set(), []
    for path in args.combine:  # the first file's run of a (config, seed) wins
        with open(path, encoding="utf-8") as handle:
            for row in json.load(handle)["runs"]:
                key = (row["config"], row["seed"])
                (dropped if key in seen else rows).append(row)
                seen.add(key)
    if dropped:
        print(
            f"dropped {len(dropped)} repeated (config, seed) runs: "
            f"{[(r['config'], r['seed']) for r in dropped]}"
        )
    table = summarise(rows, ["raw_pixels"] + names)
    print_table(table)
    write_json(
        args.out,
        {"machine": machine_info(), "combined_from": args.combine, "table": table, "runs": rows},
    )
    return 0


def main(argv=None):
    args = parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    if args.combine:
        return combine(args, names)
    work = args.work or tempfile.mkdtemp(prefix="small_dataset_")
    import keras
    import tensorflow as tf

    pretrained, pretrain_seconds = (None, 0.0)
    if args.pretrained:
        pretrained = args.pretrained
    elif any(n.startswith("finetune") for n in names):
        pretrained, pretrain_seconds = pretrain(work, args)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        data = make_data(work, seed, args)
        rows.append({"config": "raw_pixels", "seed": seed, "test_accuracy": raw_pixels(data[2])})
        for name in names:
            rows.append(run_one(name, work, seed, data, pretrained, args))
            print(rows[-1], flush=True)
            write_json(args.out + ".partial", {"runs": rows})  # survives an interrupted run
    table = summarise(rows, ["raw_pixels"] + names)
    print_table(table)
    write_json(
        args.out,
        {
            "machine": machine_info(tensorflow=tf.__version__, keras=keras.__version__),
            "args": vars(args),
            "pretrain_seconds": round(pretrain_seconds, 1),
            "table": table,
            "runs": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
