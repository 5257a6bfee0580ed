"""``keras-arcface convert-onnx MODEL.onnx OUT.keras``.

Recognises the architecture of an InsightFace ONNX recognition model from its graph
(iResNet r18-r200 or MobileFaceNet mbf), builds the matching Keras backbone, loads the
weights and saves the embedding model as ``.keras`` (through a temporary name, so a failed
run leaves nothing behind). The result takes RGB 0..255 NHWC like every model of this
package, so ``keras-arcface export`` turns it into SavedModel, TFLite or ONNX.
"""

import os
import sys


def add_arguments(parser):
    """Adds the command's arguments to ``parser``."""
    parser.add_argument("model", help="InsightFace ONNX recognition model (e.g. w600k_r50.onnx)")
    parser.add_argument("output", help="where to write the Keras embedding model (.keras)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUTPUT if it already exists"
    )


def main(args):
    """Runs the command; returns the exit status."""
    if os.path.exists(args.output) and not args.overwrite:
        print(f"error: {args.output} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    from keras_arcface.models.imports.convert import convert_onnx
    from keras_arcface.models.imports.onnx_reader import read_insightface_onnx

    try:
        found = read_insightface_onnx(args.model)
        model = convert_onnx(args.model, args.output)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from keras_arcface.models.flops import count_params_and_macs

    params, _ = count_params_and_macs(model)
    where = "in the graph (fed 0..255)" if found.normalization_in_graph else "(x - 127.5) / 127.5"
    print(
        f"wrote {args.output}: arch {found.arch}, {params / 1e6:.2f}M parameters, "
        f"embedding {found.embedding_dim}, input normalization {where}; "
        "input 'images': RGB 112x112, 0..255"
    )
    return 0
