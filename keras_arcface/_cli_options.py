"""Options that several ``keras-arcface`` sub-commands share, spelt and explained once.

Each ``*_command.py`` module builds its own parser; the options below mean the same thing in
every command that has them, so they are added here: one flag name, one default, one help line.
Standard library only (the command modules import this before anything heavy).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_progress_flag(parser)
    >>> parser.parse_args(["--quiet"]).no_progress
    True
"""

MODEL_HELP = ".keras, run folder, SavedModel, .tflite or .onnx"


def add_model_argument(parser, help=MODEL_HELP):
    """The positional ``MODEL`` (``args.model``): any format ``Embedder.load`` reads."""
    parser.add_argument("model", metavar="MODEL", help=help)


def add_progress_flag(parser, help="hide progress bars"):
    """``--no-progress``, also spelt ``--quiet``; sets ``args.no_progress``.

    Both spellings work in every command that shows progress (each once had one of them).
    """
    parser.add_argument(
        "--no-progress", "--quiet", dest="no_progress", action="store_true", help=help
    )


def add_threads_option(parser):
    """``--threads`` (``args.threads``): the LiteRT/onnxruntime thread count."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="LiteRT/onnxruntime threads (default: the runtime's own choice)",
    )


def add_align_option(parser):
    """``--align auto|true|false`` (``args.align``): when to detect and align faces first."""
    parser.add_argument(
        "--align",
        choices=("auto", "true", "false"),
        default="auto",
        help="auto: detect and align all but 112x112 crops; true: always; false: never",
    )


def add_on_error_option(parser, item, skipped):
    """``--on-error raise|skip`` (``args.on_error``) for commands that read many files.

    Args:
        parser: the command's parser.
        item: what can be bad, e.g. ``"image"``.
        skipped: what ``skip`` does with it, e.g. ``"drop and count it"``.
    """
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help=f"stop at the first bad {item} (raise) or {skipped} (skip); default raise",
    )
