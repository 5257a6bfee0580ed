"""``keras-arcface embed``: L2-normalized embeddings of image files."""

import sys

from keras_arcface._io import atomic_path


def add_arguments(parser):
    """Adds the ``embed`` command's arguments to ``parser``."""
    parser.add_argument(
        "model", metavar="MODEL", help=".keras, run folder, SavedModel, .tflite or .onnx"
    )
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files (RGB faces)")
    parser.add_argument("--out", help="write the embeddings [N, D] float32 to this .npy file")
    parser.add_argument("--batch-size", type=int, default=32, help="images per pass (32)")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT/onnxruntime threads")


def main(args):
    """Runs ``keras-arcface embed``; returns the exit status."""
    import numpy as np

    from keras_arcface.inference import Embedder

    try:
        embedder = Embedder.load(args.model, batch_size=args.batch_size, num_threads=args.threads)
        embeddings = embedder.embed(list(args.images))
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"keras-arcface embed: error: {error}", file=sys.stderr)
        return 2
    print("| image | dim | first values |\n|---|---|---|")
    for path, row in zip(args.images, embeddings):
        head = " ".join(f"{v:+.4f}" for v in row[:4])
        print(f"| {path} | {row.shape[0]} | {head} ... |")
    if args.out:
        with atomic_path(args.out, suffix=".npy") as temporary:
            np.save(temporary, embeddings)
        print(f"Wrote {args.out} ({embeddings.shape[0]} x {embeddings.shape[1]}, float32)")
    return 0
