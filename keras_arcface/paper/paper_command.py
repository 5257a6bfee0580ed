"""``keras-arcface paper``: reproduce the ArcFace paper's figures and loss comparison.

    keras-arcface paper figures OUT [--reduced]
    keras-arcface paper table [--steps N | --budget-seconds S] [--seeds 3] [--reduced] [--out docs/]

``figures`` writes ``target_logit_curves.png``, ``decision_margins.png``,
``toy_softmax_arcface.png`` and ``figures.json`` (the measured angular gaps and the
decision margins at 30/60/90 degrees) into OUT. ``table`` writes ``paper_table.md`` and
``paper_table.json`` into ``--out``. ``--reduced`` runs a small version of either in
about a minute (what CI runs).
"""

import dataclasses
import os
import sys

from keras_arcface._cli_options import add_progress_flag

DEFAULT_TABLE_OUT = "docs"


def add_arguments(parser):
    """Adds the ``figures`` and ``table`` sub-commands to ``parser``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    figures = actions.add_parser(
        "figures",
        help="Target-logit curves, binary decision margins and the 8-identity toy experiment.",
    )
    figures.add_argument("out", metavar="OUT", help="output folder for the PNG files")
    figures.add_argument(
        "--reduced", action="store_true", help="small toy experiment (CI; about 20 s)"
    )
    figures.add_argument("--seed", type=int, default=0, help="seed of the toy experiment")
    add_progress_flag(figures)

    table = actions.add_parser(
        "table", help="The loss comparison on held-out synthetic identities (paper Table 2)."
    )
    budget = table.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per run, same for every loss (default 150; 4 with --reduced)",
    )
    budget.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help="wall seconds per run, converted once into one step count for every loss",
    )
    table.add_argument(
        "--seeds", type=int, default=None, help="seeds per loss (default 3; 1 with --reduced)"
    )
    table.add_argument(
        "--scale", type=float, default=None, help="scale s of every normalized loss (default 16)"
    )
    table.add_argument(
        "--reduced", action="store_true", help="tiny data and budget (CI; about a minute)"
    )
    table.add_argument(
        "--out",
        default=DEFAULT_TABLE_OUT,
        help="folder for paper_table.md and paper_table.json (default docs/)",
    )
    add_progress_flag(table, help="hide the progress bar and the per-run lines")


def _command_line(args):
    parts = ["keras-arcface", "paper", args.action]
    if args.action == "figures":
        parts.append(args.out)
        if args.reduced:
            parts.append("--reduced")
        if args.seed:
            parts += ["--seed", str(args.seed)]
        return " ".join(parts)
    if args.steps is not None:
        parts += ["--steps", str(args.steps)]
    if args.budget_seconds is not None:
        parts += ["--budget-seconds", f"{args.budget_seconds:g}"]
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    if args.scale is not None:
        parts += ["--scale", f"{args.scale:g}"]
    if args.reduced:
        parts.append("--reduced")
    parts += ["--out", args.out]
    return " ".join(parts)


def _table_config(args):
    from keras_arcface.paper import loss_table

    config = loss_table.REDUCED_TABLE if args.reduced else loss_table.TableConfig()
    changes = {}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.budget_seconds is not None:
        changes["budget_seconds"] = args.budget_seconds
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be a positive integer. Received: seeds={args.seeds}")
        changes["seeds"] = tuple(range(args.seeds))
    if args.scale is not None:
        changes["scale"] = args.scale
    return dataclasses.replace(config, **changes)


def run_figures(args):
    from keras_arcface.paper import figures, toy_experiment
    from keras_arcface.paper._io import atomic_write_json

    os.makedirs(args.out, exist_ok=True)
    analysis = figures.write_analysis_figures(args.out)
    toy_config = toy_experiment.REDUCED_TOY if args.reduced else toy_experiment.ToyConfig()
    toy_config = dataclasses.replace(toy_config, seed=args.seed)
    toy = toy_experiment.write_toy_figure(args.out, toy_config, progress=not args.no_progress)
    report = {"command": _command_line(args), **analysis, "toy_experiment": toy}
    atomic_write_json(os.path.join(args.out, "figures.json"), report)
    print(f"Wrote figures to {args.out}:")
    for name in ("target_logit_curves", "decision_margins"):
        print(f"  {analysis[name]}")
    print(f"  {toy['figure']}")
    print("\nDecision margin theta2 - theta1 (degrees) at theta1 = 30 / 60 / 90:")
    for label, values in analysis["decision_margin_degrees"].items():
        print(f"  {label:24s} " + " / ".join(f"{v:6.2f}" for v in values.values()))
    print("\nToy experiment, angular gaps between neighbouring classes (degrees):")
    for label in ("Softmax", "ArcFace"):
        gaps = toy[label]["gaps"]
        print(
            f"  {label:8s} min {gaps['min_gap_deg']:7.2f}  mean {gaps['mean_gap_deg']:7.2f}  "
            f"train accuracy {toy[label]['train_accuracy']:.3f}  gaps {gaps['gaps_deg']}"
        )
    return 0


def run_table(args):
    from keras_arcface.paper import loss_table

    config = _table_config(args)
    summary = loss_table.run_table(
        config,
        out_dir=args.out,
        command=_command_line(args),
        progress=not args.no_progress,
        log=None if args.no_progress else (lambda line: print(line, file=sys.stderr)),
    )
    print(loss_table.format_markdown_table(summary))
    print(f"\nWrote {os.path.join(args.out, 'paper_table.md')} and paper_table.json")
    return 0


def main(args):
    """Runs ``keras-arcface paper figures`` or ``keras-arcface paper table``."""
    if args.action == "figures":
        return run_figures(args)
    return run_table(args)
