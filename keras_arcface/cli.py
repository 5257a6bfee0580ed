"""The ``keras-arcface`` command line.

Each sub-command lives in the module that owns its work and exposes two functions:
``add_arguments(parser)`` and ``main(args) -> int``. Modules are imported only when
their command runs (or asks for ``--help``), so ``keras-arcface --help`` stays fast
and never imports TensorFlow.
"""

import argparse
import importlib
import sys

from keras_arcface.version import __version__

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS = {
    "demo": (
        "keras_arcface.training.demo",
        "Run the whole job on built-in synthetic identities: generate, train, verify, export.",
    ),
    "train": ("keras_arcface.training.train_command", "Train from a YAML experiment file."),
    "synth": (
        "keras_arcface.data.synthetic_command",
        "Generate synthetic identities as TFRecords plus a held-out .bin verification set.",
    ),
    "convert": (
        "keras_arcface.data.convert_command",
        "Convert image folders, InsightFace RecordIO (.rec/.idx) or pair lists to TFRecords/.bin.",
    ),
    "convert-insightface": (
        "keras_arcface.models.convert_insightface",
        "Import an InsightFace PyTorch checkpoint (.pth) into a Keras model.",
    ),
    "models": (
        "keras_arcface.models.models_command",
        "List backbone presets with their parameters and MACs.",
    ),
    "eval": (
        "keras_arcface.evaluation.eval_command",
        "Evaluate a model (.keras, run folder, SavedModel, .tflite, .onnx) on verification sets.",
    ),
    "export": (
        "keras_arcface.export.export_command",
        "Export the embedding model to SavedModel, TFLite and ONNX behind a parity gate.",
    ),
    "embed": ("keras_arcface.export.embed_command", "Compute embeddings of image files."),
    "verify": ("keras_arcface.export.verify_command", "Decide whether two face images match."),
    "paper": (
        "keras_arcface.paper.paper_command",
        "Reproduce the paper's figures and loss comparison on synthetic data.",
    ),
}


def _load(module_name):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            return None
        raise


def build_parser():
    """Builds the top-level parser; a command's own options load with the command."""
    parser = argparse.ArgumentParser(
        prog="keras-arcface",
        description="ArcFace face recognition for TensorFlow / Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"keras-arcface {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None):
    """Entry point of the ``keras-arcface`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return 0
    name = argv[0]
    module = _load(COMMANDS[name][0])
    if module is None:
        parser.error(f"the command '{name}' is not available in this installation")
    sub = argparse.ArgumentParser(prog=f"keras-arcface {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
