"""``keras-arcface convert-insightface CHECKPOINT --arch r50 OUT.keras``.

Reads an InsightFace PyTorch ``state_dict`` (safely, ``weights_only=True``), builds the
matching Keras backbone (the embedding size is read from the checkpoint), loads the
weights and saves the embedding model as ``.keras`` (written to a temporary name, then
renamed, so a failed run never leaves a half-written file).
"""

import os
import sys

from keras_arcface.models.imports.mapping import IMPORTABLE_ARCHS


def add_arguments(parser):
    """Adds the command's arguments to ``parser``."""
    parser.add_argument("checkpoint", help="InsightFace PyTorch state_dict (.pth)")
    parser.add_argument("output", help="where to write the Keras embedding model (.keras)")
    parser.add_argument(
        "--arch", required=True, choices=IMPORTABLE_ARCHS, help="architecture of the checkpoint"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUTPUT if it already exists"
    )


def main(args):
    """Runs the command; returns the exit status."""
    if os.path.exists(args.output) and not args.overwrite:
        print(f"error: {args.output} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    from keras_arcface.models.imports.convert import convert

    try:
        model = convert(args.checkpoint, args.arch, args.output)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from keras_arcface.models.flops import count_params_and_macs

    params, _ = count_params_and_macs(model)
    print(
        f"wrote {args.output}: arch {args.arch}, {params / 1e6:.2f}M parameters, "
        f"embedding {model.output.shape[-1]} (input 'images': RGB 112x112, 0..255)"
    )
    return 0
