"""``keras-arcface convert-insightface CHECKPOINT --arch r50 OUT.keras``.

Reads an InsightFace PyTorch ``state_dict`` (safely, ``weights_only=True``), builds the
matching Keras backbone (the embedding size is read from the checkpoint), loads the
weights and saves the embedding model as ``.keras`` (written to a temporary name, then
renamed, so a failed run never leaves a half-written file).
"""

import os
import sys

from keras_arcface._io import atomic_path

IMPORTABLE_ARCHS = ("r18", "r34", "r50", "r100", "r200", "mbf", "mobilefacenet")


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


def convert(checkpoint, arch, output):
    """Converts a checkpoint into a ``.keras`` embedding model and returns the model.

    Args:
        checkpoint: path of the ``.pth`` ``state_dict``.
        arch: "r18", "r34", "r50", "r100", "r200", "mbf" or "mobilefacenet".
        output: path of the ``.keras`` file to write.

    Returns:
        The Keras embedding model.

    Example:
        >>> convert("backbone.pth", "r50", "r50.keras")
    """
    import keras

    from keras_arcface.models.factory import get_backbone
    from keras_arcface.models.insightface_import import (
        embedding_dim_of_checkpoint,
        load_insightface_weights,
        read_checkpoint,
    )

    if not str(output).endswith(".keras"):
        raise ValueError(f"The output must be a .keras file. Received: output={output!r}")
    tensors = read_checkpoint(checkpoint)
    model = get_backbone(arch, embedding_dim=embedding_dim_of_checkpoint(tensors, arch))
    load_insightface_weights(model, tensors, arch)
    with atomic_path(output) as temporary:
        keras.saving.save_model(model, temporary)
    return model


def main(args):
    """Runs the command; returns the exit status."""
    if os.path.exists(args.output) and not args.overwrite:
        print(f"error: {args.output} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
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
