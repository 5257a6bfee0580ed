"""What ``keras-arcface convert-insightface`` and ``convert-onnx`` share: OUTPUT and the run."""

import os
import sys


def add_output_arguments(parser):
    """The positional ``output`` (the ``.keras`` file to write) and ``--overwrite``."""
    parser.add_argument("output", help="where to write the Keras embedding model (.keras)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUTPUT if it already exists"
    )


def run_import(args, convert):
    """Refuses an existing OUTPUT, converts, prints one summary line; returns the exit status.

    Args:
        args: the parsed arguments (``output``, ``overwrite``).
        convert: no-argument callable that writes ``args.output`` and returns
            ``(model, arch, details)``; ``details`` ends the summary line.

    Returns:
        0 written, 1 the conversion failed (message on stderr), 2 OUTPUT exists.
    """
    if os.path.exists(args.output) and not args.overwrite:
        print(f"error: {args.output} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    try:
        model, arch, details = convert()
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from keras_arcface.models.flops import count_params_and_macs

    params, _ = count_params_and_macs(model)
    print(f"wrote {args.output}: arch {arch}, {params / 1e6:.2f}M parameters, {details}")
    return 0
