"""``keras-arcface convert-insightface CHECKPOINT --arch r50 OUT.keras``.

Reads an InsightFace PyTorch ``state_dict`` (safely, ``weights_only=True``), builds the
matching Keras backbone (the embedding size is read from the checkpoint), loads the
weights and saves the embedding model as ``.keras`` (written to a temporary name, then
renamed, so a failed run never leaves a half-written file).
"""

from keras_arcface.models.imports._import_command import add_output_arguments, run_import
from keras_arcface.models.imports.mapping import IMPORTABLE_ARCHS


def add_arguments(parser):
    """Adds the command's arguments to ``parser``."""
    parser.add_argument("checkpoint", help="InsightFace PyTorch state_dict (.pth)")
    add_output_arguments(parser)
    parser.add_argument(
        "--arch", required=True, choices=IMPORTABLE_ARCHS, help="architecture of the checkpoint"
    )


def main(args):
    """Runs the command; returns the exit status."""
    return run_import(args, lambda: _convert(args))


def _convert(args):
    from keras_arcface.models.imports.convert import convert

    model = convert(args.checkpoint, args.arch, args.output)
    details = f"embedding {model.output.shape[-1]} (input 'images': RGB 112x112, 0..255)"
    return model, args.arch, details
