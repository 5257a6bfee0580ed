"""``keras-arcface train CONFIG [key=value ...] [--resume] [--run-dir DIR]``.

CONFIG is a YAML experiment file or the name of a shipped one (``--list`` shows them);
``key=value`` overrides use dotted keys (``optimizer.learning_rate=0.05``,
``evaluation.bins=[lfw.bin,cfp_fp.bin]``). The run folder defaults to ``runs/<name>``.
``--resume`` continues the run folder's last checkpoint; with ``--resume`` CONFIG may be
left out, the run folder's ``config.yaml`` is used.

Example:
    keras-arcface train casia_r50 data.train_dir=data/casia data.batch_size=64
    keras-arcface train --resume --run-dir runs/casia_r50
"""

import os
import sys

from keras_arcface._cli_options import add_progress_flag


def add_arguments(parser):
    """Adds the ``train`` options to an ``argparse`` parser."""
    parser.add_argument(
        "config",
        nargs="?",
        help="experiment YAML file or shipped experiment name (see --list)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides with dotted keys, e.g. schedule.epochs=5",
    )
    parser.add_argument("--run-dir", help="run folder (default: runs/<experiment name>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last checkpoint"
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue although the config differs from the run's config.yaml "
        "(the old one is kept as config.step-N.yaml)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the shipped experiment files and exit"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the merged config as YAML and exit without training",
    )
    add_progress_flag(parser, help="hide the progress bar")


def _load(args):
    from keras_arcface.training import config as config_lib

    overrides = list(args.overrides)
    source = args.config
    if source and "=" in source and not os.path.exists(source):
        # `train --resume --run-dir R key=value`: the first override landed in CONFIG.
        overrides.insert(0, source)
        source = None
    if source is None:
        if not (args.resume and args.run_dir):
            raise ValueError(
                "Give an experiment file or name (or --resume with --run-dir). "
                "Received: config=None"
            )
        source = os.path.join(args.run_dir, "config.yaml")
        if not os.path.isfile(source):
            raise ValueError(f"The run folder has no config.yaml to resume. Received: {source}")
    return config_lib.load_config(source, overrides)


def main(args):
    """Runs the command; returns the exit status (0 done, 1 stopped on a non-finite loss)."""
    from keras_arcface.training import config as config_lib

    if args.list:
        for name in config_lib.experiment_names():
            print(name)
        return 0
    try:
        cfg = _load(args)
    except (ValueError, TypeError) as error:
        print(f"keras-arcface train: {error}", file=sys.stderr)
        return 2
    if args.no_progress:
        cfg.logging.progress_bar = False
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config_lib.to_dict(cfg), sort_keys=False), end="")
        return 0
    run_dir = args.run_dir or os.path.join("runs", cfg.name)

    from keras_arcface.training.trainer import NonFiniteLossError, Trainer

    try:
        trainer = Trainer(
            cfg, run_dir, resume=args.resume, allow_config_change=args.allow_config_change
        )
    except (ValueError, TypeError) as error:
        print(f"keras-arcface train: {error}", file=sys.stderr)
        return 2
    if trainer.is_chief:
        _print_start(trainer, cfg, args.resume)
    try:
        result = trainer.fit()
    except NonFiniteLossError as error:
        print(f"keras-arcface train: {error}", file=sys.stderr)
        return 1
    if trainer.is_chief:
        _print_result(result)
    return 0


def _print_start(trainer, cfg, resume):
    """The chief's opening lines: small-dataset advice (new runs) and the run's shape."""
    from keras_arcface.training.finetune import small_dataset_warning

    d = trainer.derived
    advice = small_dataset_warning(cfg, d.num_classes) if not resume else None
    if advice:
        print(f"keras-arcface train: {advice}", file=sys.stderr)
    where = f"resumed from {trainer.restored_from}" if trainer.restored_from else "new run"
    print(
        f"{cfg.name}: {d.num_replicas} replica(s), global batch {d.global_batch_size}, "
        f"lr {d.learning_rate:g}, {d.total_steps} steps ({d.steps_per_epoch}/epoch), "
        f"{d.num_classes} classes; {where}; run folder {trainer.run_dir}"
    )


def _print_result(result):
    """The chief's closing line, and what the data lacked when records were skipped."""
    line = (
        f"done: step {result.step}, loss {result.loss:.4f}, "
        f"{result.images_per_second:.0f} img/s, {result.seconds:.0f} s"
    )
    if result.best_accuracy is not None:
        line += f", best verification accuracy {result.best_accuracy:.4f}"
    print(line)
    if result.data_check and not result.data_check["ok"]:
        print(
            f"data: {result.data_check['summary']}; training skipped them "
            f"(details: {result.data_check['path']})",
            file=sys.stderr,
        )
