"""``keras-arcface convert-onnx MODEL.onnx OUT.keras``.

Recognises the architecture of an InsightFace ONNX recognition model from its graph
(iResNet r18-r200 or MobileFaceNet mbf), builds the matching Keras backbone, loads the
weights and saves the embedding model as ``.keras`` (through a temporary name, so a failed
run leaves nothing behind). The result takes RGB 0..255 NHWC like every model of this
package, so ``keras-arcface export`` turns it into SavedModel, TFLite or ONNX.
"""

from keras_arcface.models.imports._import_command import add_output_arguments, run_import


def add_arguments(parser):
    """Adds the command's arguments to ``parser``."""
    parser.add_argument("model", help="InsightFace ONNX recognition model (e.g. w600k_r50.onnx)")
    add_output_arguments(parser)


def main(args):
    """Runs the command; returns the exit status."""
    return run_import(args, lambda: _convert(args))


def _convert(args):
    from keras_arcface.models.imports.convert import convert_onnx
    from keras_arcface.models.imports.onnx_reader import read_insightface_onnx

    found = read_insightface_onnx(args.model)
    model = convert_onnx(args.model, args.output)
    where = "in the graph (fed 0..255)" if found.normalization_in_graph else "(x - 127.5) / 127.5"
    details = (
        f"embedding {found.embedding_dim}, input normalization {where}; "
        "input 'images': RGB 112x112, 0..255"
    )
    return model, found.arch, details
