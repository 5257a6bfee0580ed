"""The ``keras-arcface`` command line.

Each sub-command lives in the module that owns its work and exposes two functions:
``add_arguments(parser)`` and ``main(args) -> int``. Modules are imported only when
their command runs (or asks for ``--help``), so ``keras-arcface --help`` stays fast
and never imports TensorFlow.

Expected failures (bad input the user can fix: :class:`~keras_arcface.errors.InputError`
and its subclasses such as ``DataError`` and ``ConfigError``, a missing file or folder, no
permission, a full or read-only disk) print one line, ``keras-arcface COMMAND: error:
...``, and exit with status 1. ``--verbose`` (anywhere on the line) shows the traceback
instead; genuine bugs always show it.

TensorFlow's start-up logging (oneDNN and CPU-feature notices, absl warnings) is hidden
unless the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves or passed ``--verbose``: TensorFlow
prints some of it before its log level takes effect, so a command imports TensorFlow with
those lines filtered out of its standard error (other lines pass through). The
package's own deprecation warnings (an old config key, an old option value) are shown, once
each: Python hides ``DeprecationWarning`` outside ``__main__``, and a user of the command line
would otherwise never learn that a spelling goes away. Flags and
positional arguments (such as ``train``'s ``key=value`` overrides) may come in any order.
"""

import argparse
import contextlib
import errno
import importlib
import logging
import os
import re
import sys
import tempfile
import warnings

from keras_arcface._deprecation import MESSAGE_PATTERN
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
        "keras_arcface.models.imports.pth_command",
        "Import an InsightFace PyTorch checkpoint (.pth) into a Keras model.",
    ),
    "convert-onnx": (
        "keras_arcface.models.imports.onnx_command",
        "Import an InsightFace ONNX recognition model (w600k_r50.onnx ...) into a Keras model.",
    ),
    "models": (
        "keras_arcface.models.models_command",
        "List backbone presets with their parameters and MACs.",
    ),
    "eval": (
        "keras_arcface.evaluation.eval_command",
        "Evaluate a model (.keras, run folder, SavedModel, .tflite, .onnx) on verification sets.",
    ),
    "calibrate": (
        "keras_arcface.evaluation.calibrate_command",
        "Find a model's cosine threshold for a target FAR (or best accuracy) and store it.",
    ),
    "export": (
        "keras_arcface.export.export_command",
        "Export the embedding model to SavedModel, TFLite and ONNX behind a parity gate.",
    ),
    "align": (
        "keras_arcface.faces.align_command",
        "Detect faces in a folder of raw photos and write aligned 112x112 ArcFace crops.",
    ),
    "embed": ("keras_arcface.export.embed_command", "Compute embeddings of image files."),
    "verify": ("keras_arcface.export.verify_command", "Decide whether two face images match."),
    "paper": (
        "keras_arcface.paper.paper_command",
        "Reproduce the paper's figures and loss comparison on synthetic data.",
    ),
}


VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "show full tracebacks and TensorFlow's start-up logs"

# OSError numbers that describe the user's machine or files, not a bug.
_USER_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG, errno.ENOTEMPTY}


# TensorFlow's own error types (matched by name: the CLI does not import TensorFlow).
_TF_USER_ERRORS = ("PermissionDeniedError",)


def split_verbose(argv):
    """Removes ``--verbose`` from anywhere before ``--``; returns ``(argv, verbose)``.

    Example:
        >>> split_verbose(["convert", "check", "data", "--verbose"])
        (['convert', 'check', 'data'], True)
    """
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [arg for arg in argv[:end] if arg != VERBOSE_FLAG] + argv[end:]
    return kept, len(kept) != len(argv)


def is_user_error(error):
    """Whether ``error`` is an expected failure the user can fix (printed as one line)."""
    from keras_arcface.errors import InputError

    if isinstance(error, (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return True
    if isinstance(error, (PermissionError, FileExistsError)):
        return True
    if type(error).__name__ in _TF_USER_ERRORS and type(error).__module__.startswith("tensorflow"):
        return True  # e.g. a checkpoint written into a read-only run folder
    return isinstance(error, OSError) and error.errno in _USER_ERRNOS


def one_line(error):
    """The error's message on one line (what was wrong and what to do)."""
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return text or type(error).__name__


def quiet_tensorflow(verbose=False):
    """Hides TensorFlow's start-up logs unless asked for; call before TensorFlow is imported.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (C++ INFO and WARNING lines: oneDNN, cpu_feature_guard,
    absl) and raises the ``tensorflow`` and ``absl`` Python loggers to ERROR. Does nothing
    with ``verbose`` or when the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves.

    Returns:
        True when it quieted the logs.
    """
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Lines logged while TensorFlow loads, before absl's logging is initialised, ignore
    # TF_CPP_MIN_LOG_LEVEL (the oneDNN notice on CPUs where oneDNN is on by default).
    with filtered_stderr(TF_START_UP_NOISE):
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            pass  # the command that needs it says so
    return True


# INFO and WARNING lines of TensorFlow's C++ logging, and absl's pre-initialisation notice.
TF_START_UP_NOISE = re.compile(r"^[IW]\d{4} |^WARNING: All log messages before absl::")


@contextlib.contextmanager
def filtered_stderr(pattern):
    """Runs the block with the process's standard error (file descriptor 2, which C++ code
    writes to) going to a temporary file; afterwards writes back every line that does not
    match ``pattern``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
    for line in text.splitlines(keepends=True):
        if not pattern.search(line):
            sys.stderr.write(line)
    sys.stderr.flush()


def parse_any_order(parser, argv):
    """Parses with options and positionals in any order (``argparse`` intermixed parsing).

    Parsers with sub-commands or ``REMAINDER`` arguments cannot be parsed intermixed, and
    Python's intermixed parsing mishandles ``--``; those fall back to ``parse_args``.
    """
    unsupported = "--" in argv or any(
        isinstance(action, argparse._SubParsersAction) or action.nargs == argparse.REMAINDER
        for action in parser._actions
    )
    if unsupported:
        return parser.parse_args(argv)
    return parser.parse_intermixed_args(argv)


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
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv=None):
    """Entry point of the ``keras-arcface`` console script."""
    argv, verbose = split_verbose(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return 0
    name = argv[0]
    quiet_tensorflow(verbose)
    warnings.filterwarnings("default", message=MESSAGE_PATTERN, category=DeprecationWarning)
    module = _load(COMMANDS[name][0])
    if module is None:
        parser.error(f"the command '{name}' is not available in this installation")
    sub = argparse.ArgumentParser(prog=f"keras-arcface {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    sub.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    args = parse_any_order(sub, argv[1:])
    args.verbose = verbose
    return _run_command(name, module, args, verbose)


def _run_command(name, module, args, verbose):
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        if verbose:
            raise
        print(f"keras-arcface {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 (bugs are re-raised below)
        if verbose or not is_user_error(error):
            raise
        print(f"keras-arcface {name}: error: {one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
