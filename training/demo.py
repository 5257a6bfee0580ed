"""``keras-arcface demo``: the whole job on built-in synthetic identities, no download.

1. Generates synthetic face identities (``keras_arcface.data.generate_synthetic``): training
   TFRecords and a ``.bin`` verification set of identities held out of training.
2. Measures the raw-pixel baseline on the held-out pairs (cosine of raw pixels, same
   10-fold protocol).
3. Trains the ``small`` backbone with ArcFace (``experiments/synthetic_demo.yaml``) and
   verifies it on the held-out pairs (10-fold protocol, flip fusion).
4. Exports the embedding model to SavedModel, TFLite and ONNX behind the parity gate.
5. Prints a summary and writes ``OUT/demo_summary.json``; the run folder holds
   ``training_curve.png``.

Example:
    keras-arcface demo                    # about 10 minutes on 2 CPU cores
    keras-arcface demo --quick --out /tmp/demo --skip-export   # a few minutes, for tests
"""

import dataclasses
import json
import os
import shutil
import sys
import time

from keras_arcface._cli_options import add_progress_flag
from keras_arcface._io import atomic_write_json

DEMO_EXPERIMENT = "synthetic_demo"


@dataclasses.dataclass
class DemoSettings:
    """Sizes of the demo's data and the overrides of its training run.

    Args:
        num_identities: training identities.
        images_per_identity: training images per identity.
        heldout_identities: identities of the verification set (never trained on).
        heldout_images_per_identity: images per held-out identity.
        num_pairs: verification pairs.
        seed: seed of data, initialisation and sampling.
        difficulty: ``SyntheticDifficulty`` knobs passed to the generator (``{}``: its
            defaults).
        overrides: ``key=value`` overrides of ``synthetic_demo.yaml``.
        export_formats: formats exported.
    """

    num_identities: int = 300
    images_per_identity: int = 30
    heldout_identities: int = 100
    heldout_images_per_identity: int = 12
    num_pairs: int = 3000
    seed: int = 0
    difficulty: dict = dataclasses.field(default_factory=dict)
    overrides: list = dataclasses.field(default_factory=list)
    export_formats: tuple = ("saved_model", "tflite", "onnx")


FULL = DemoSettings()
# The same pipeline at a test size (2-4 minutes on 2 CPU cores): fewer
# identities and 300 steps of 32 instead of 1,400 of 64, same data difficulty, backbone, loss
# and optimiser. Enough to beat raw pixels on the held-out identities by a wide margin
# (tests/test_training_demo.py; measured over seeds in docs/training.md).
QUICK = DemoSettings(
    num_identities=100,
    images_per_identity=16,
    heldout_identities=50,
    heldout_images_per_identity=8,
    num_pairs=1000,
    overrides=[
        "data.batch_size=32",
        "schedule.total_steps=300",
        "checkpoint.every_steps=100",
        "logging.every_steps=20",
        "data.dataset_kwargs.shuffle_buffer=2048",  # holds the whole training set
    ],
)


def add_arguments(parser):
    """Adds the ``demo`` options to an ``argparse`` parser."""
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a test-size run (a few minutes): smaller data, 300 steps of 32",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of data, initialisation and sampling (default 0)",
    )
    parser.add_argument("--skip-export", action="store_true", help="do not export the model")
    add_progress_flag(parser)


def _data_key(settings):
    keys = (
        "num_identities",
        "images_per_identity",
        "heldout_identities",
        "heldout_images_per_identity",
        "num_pairs",
        "seed",
        "difficulty",
    )
    return {k: getattr(settings, k) for k in keys}


def prepare_data(out_dir, settings, progress=True):
    """Generates the synthetic data into ``out_dir/data`` (reused when already there).

    Returns:
        ``(train_dir, bin_path, seconds, reused)``.
    """
    from keras_arcface.data import generate_synthetic

    data_dir = os.path.join(out_dir, "data")
    stamp = os.path.join(data_dir, "demo_data.json")
    train_dir = os.path.join(data_dir, "train")
    bin_path = os.path.join(data_dir, "verification.bin")
    key = _data_key(settings)
    if os.path.isfile(stamp) and os.path.isfile(bin_path):
        with open(stamp, encoding="utf-8") as handle:
            if json.load(handle) == key:
                return train_dir, bin_path, 0.0, True
    start = time.perf_counter()
    summary = generate_synthetic(
        data_dir,
        num_identities=settings.num_identities,
        images_per_identity=settings.images_per_identity,
        heldout_identities=settings.heldout_identities,
        heldout_images_per_identity=settings.heldout_images_per_identity,
        num_pairs=settings.num_pairs,
        seed=settings.seed,
        overwrite=True,
        progress=progress,
        **settings.difficulty,
    )
    atomic_write_json(stamp, key)
    return summary["train_dir"], summary["verification_bin"], time.perf_counter() - start, False


def raw_pixel_baseline(bin_path):
    """10-fold verification accuracy of raw pixels (cosine) on the held-out pairs."""
    from keras_arcface.data import load_bin
    from keras_arcface.evaluation import evaluate_verification

    pair_set = load_bin(bin_path)
    result = evaluate_verification(
        lambda x: x.reshape(len(x), -1).astype("float32"),
        pair_set.images,
        pair_set.issame,
        flip=False,
        progress=False,
    )
    return float(result["accuracy"]), float(result["accuracy_std"])


def _fresh_run_dir(run_dir):
    """Removes an earlier demo run folder (only one the demo itself wrote)."""
    if not os.path.exists(run_dir):
        return
    stamp = os.path.join(run_dir, "config.yaml")
    is_demo = False
    if os.path.isfile(stamp):
        import yaml

        with open(stamp, encoding="utf-8") as handle:
            is_demo = (yaml.safe_load(handle) or {}).get("name") == DEMO_EXPERIMENT
    if not is_demo:
        raise ValueError(
            "The demo's run folder exists and was not written by the demo; choose another "
            f"--out. Received: run_dir={run_dir!r}"
        )
    shutil.rmtree(run_dir)


def run_demo(out_dir="runs/demo", quick=False, skip_export=False, progress=True, settings=None):
    """Runs the demo end to end and returns its summary dict (also written as JSON).

    Args:
        out_dir: output folder: ``data/``, ``run/`` (the run folder, with ``export/``),
            ``demo_summary.json``. Default ``"runs/demo"``.
        quick: the test-size preset `QUICK` (smaller data, 300 steps of 32) instead of
            `FULL`.
        skip_export: do not export.
        progress: show progress bars.
        settings: a `DemoSettings` that replaces both presets (None: `QUICK` or `FULL`).

    Example:
        >>> summary = run_demo("/tmp/demo", quick=True, skip_export=True)  # doctest: +SKIP
    """
    start = time.perf_counter()
    settings = _chosen_settings(quick, settings)
    os.makedirs(out_dir, exist_ok=True)
    train_dir, bin_path, data_seconds, reused = prepare_data(out_dir, settings, progress)
    baseline, baseline_std = raw_pixel_baseline(bin_path)
    run_dir = os.path.join(out_dir, "run")
    _fresh_run_dir(run_dir)
    cfg, trainer, result = _train(run_dir, train_dir, bin_path, settings, progress)
    summary = {
        "out_dir": os.path.abspath(out_dir),
        "run_dir": trainer.run_dir,
        "quick": bool(quick),
        "seed": settings.seed,
        "data": _data_summary(train_dir, bin_path, settings, data_seconds, reused),
        "training": {
            "backbone": cfg.model.backbone,
            "loss": cfg.loss.name,
            "steps": result.step,
            "global_batch_size": trainer.derived.global_batch_size,
            "final_loss": result.loss,
            "images_per_second": round(result.images_per_second, 1),
            "seconds": round(result.seconds, 1),
        },
        "verification": _verification_summary(result, bin_path, baseline, baseline_std),
        "training_curve": os.path.join(trainer.run_dir, "training_curve.png"),
        "export": None,
    }
    if not skip_export:
        summary["export"] = _export(trainer.run_dir, train_dir, settings, progress)
    summary["total_seconds"] = round(time.perf_counter() - start, 1)
    path = os.path.join(out_dir, "demo_summary.json")
    atomic_write_json(path, summary)
    return summary


def _chosen_settings(quick, settings):
    """``settings`` if given (a `DemoSettings`), else the `QUICK` or `FULL` preset."""
    if settings is None:
        return QUICK if quick else FULL
    if not isinstance(settings, DemoSettings):
        raise TypeError(
            f"`settings` must be a DemoSettings or None. Received: settings={settings!r}"
        )
    return settings


def _train(run_dir, train_dir, bin_path, settings, progress):
    """Trains the demo experiment on the generated data: ``(config, trainer, TrainResult)``."""
    from keras_arcface.training import config as config_lib
    from keras_arcface.training.trainer import Trainer

    overrides = [
        f"data.train_dir={train_dir}",
        f"evaluation.bins=[{bin_path}]",
        f"seed={settings.seed}",
        f"logging.progress_bar={'true' if progress else 'false'}",
        *settings.overrides,
    ]
    cfg = config_lib.load_config(DEMO_EXPERIMENT, overrides)
    trainer = Trainer(cfg, run_dir)
    return cfg, trainer, trainer.fit()


def _data_summary(train_dir, bin_path, settings, data_seconds, reused):
    """The summary's ``data`` section."""
    return {
        "train_dir": os.path.abspath(train_dir),
        "verification_bin": os.path.abspath(bin_path),
        "identities": settings.num_identities,
        "images": settings.num_identities * settings.images_per_identity,
        "heldout_identities": settings.heldout_identities,
        "pairs": settings.num_pairs,
        "seconds": round(data_seconds, 1),
        "reused": reused,
    }


def _verification_summary(result, bin_path, baseline, baseline_std):
    """The summary's ``verification`` section: the model's held-out accuracy and raw pixels'."""
    name = os.path.splitext(os.path.basename(bin_path))[0]
    return {
        "accuracy": result.scores.get(f"verify/{name}/accuracy"),
        "accuracy_std": result.scores.get(f"verify/{name}/accuracy_std"),
        "raw_pixel_accuracy": baseline,
        "raw_pixel_accuracy_std": baseline_std,
    }


def _export(run_dir, train_dir, settings, progress):
    from keras_arcface.export import export_model
    from keras_arcface.export.parity import ParityGateError

    out = os.path.join(run_dir, "export")
    start = time.perf_counter()
    try:
        report = export_model(
            run_dir,
            out,
            formats=settings.export_formats,
            quantize=(),
            data_dir=train_dir,
            progress=progress,
            verbose=False,
        )
        passed, failed = True, []
    except ParityGateError as error:
        report, passed = error.report, False
        failed = [a.name for a in report.failed]
    return {
        "dir": os.path.abspath(out),
        "formats": list(settings.export_formats),
        "parity_passed": passed,
        "failed": failed,
        "artifacts": [a.name for a in report.artifacts],
        "seconds": round(time.perf_counter() - start, 1),
    }


def format_summary(summary):
    """The printed summary table (markdown)."""
    d, t, v, e = summary["data"], summary["training"], summary["verification"], summary["export"]
    acc = v["accuracy"]
    acc_text = "n/a" if acc is None else f"{acc:.4f} +- {v['accuracy_std']:.4f}"
    data_time = "reused" if d["reused"] else f"{d['seconds']:.0f} s"
    rows = [
        (
            "data",
            f"{d['identities']} identities x {d['images'] // max(d['identities'], 1)} images; "
            f"{d['heldout_identities']} held-out identities, {d['pairs']} pairs ({data_time})",
        ),
        (
            "training",
            f"{t['backbone']} + {t['loss']}, {t['steps']} steps x {t['global_batch_size']}, "
            f"loss {t['final_loss']:.3f}, {t['images_per_second']:.0f} img/s "
            f"({t['seconds']:.0f} s)",
        ),
        ("held-out verification (10-fold)", acc_text),
        (
            "raw-pixel baseline",
            f"{v['raw_pixel_accuracy']:.4f} +- {v['raw_pixel_accuracy_std']:.4f}",
        ),
        ("training curve", summary["training_curve"]),
    ]
    if e is not None:
        state = "parity passed" if e["parity_passed"] else f"parity FAILED: {e['failed']}"
        rows.append(("export", f"{', '.join(e['artifacts'])} -> {e['dir']} ({state})"))
    rows.append(("total wall time", f"{summary['total_seconds']:.0f} s"))
    width = max(len(r[0]) for r in rows)
    lines = ["", "keras-arcface demo" + (" (quick)" if summary["quick"] else ""), ""]
    lines.append(f"| {'stage':<{width}} | result |")
    lines.append(f"|{'-' * (width + 2)}|--------|")
    lines += [f"| {k:<{width}} | {val} |" for k, val in rows]
    return "\n".join(lines)


def main(args):
    """Runs the demo; returns 0, or 1 when the export parity gate failed."""
    settings = QUICK if args.quick else FULL
    if args.seed is not None:
        settings = dataclasses.replace(settings, seed=args.seed)
    summary = run_demo(
        args.out,
        quick=args.quick,
        skip_export=args.skip_export,
        progress=not args.no_progress,
        settings=settings,
    )
    print(format_summary(summary))
    sys.stdout.flush()
    export = summary["export"]
    return 1 if export is not None and not export["parity_passed"] else 0
