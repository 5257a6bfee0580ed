"""``keras-arcface verify``: decide whether two face images show one person."""

import sys

from keras_arcface._cli_options import add_align_option, add_model_argument


def add_arguments(parser):
    """Adds the ``verify`` command's arguments to ``parser``."""
    add_model_argument(parser)
    parser.add_argument("image_a", metavar="IMG_A", help="first photo or aligned face crop")
    parser.add_argument("image_b", metavar="IMG_B", help="second photo or aligned face crop")
    add_align_option(parser)
    parser.add_argument(
        "--face",
        choices=("only", "largest"),
        default="only",
        help="only: a photo must show one face (else an error); largest: use the largest face",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine-similarity threshold (default: the model's calibrated one, else 0.3, "
        "an uncalibrated guess)",
    )


def main(args):
    """Runs ``keras-arcface verify``; prints the similarity and decision; returns 0 or 2."""
    from keras_arcface.inference import Embedder

    try:
        embedder = Embedder.load(args.model, threshold=args.threshold)
        threshold, source = embedder.threshold, embedder.threshold_source
        if args.threshold is not None:
            source = "given with --threshold"
        similarity, same = embedder.verify(
            args.image_a, args.image_b, threshold=threshold, align=args.align, face=args.face
        )
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"keras-arcface verify: error: {error}", file=sys.stderr)
        return 2
    verdict = "same person" if same else "different people"
    print(f"similarity {similarity:.4f} (threshold {threshold:.4f}): {verdict}")
    print(f"threshold: {source}")
    return 0
