"""``keras-arcface calibrate MODEL --bin PAIRS.bin [--far 1e-3]``.

Measures the model's cosine threshold on a pair set with the verification protocol (for a
target false-accept rate, or for best accuracy) and stores it in the model's JSON sidecar,
where ``keras-arcface verify``, ``Embedder`` and ``keras-arcface export`` find it. Nothing
is written when the pair set cannot calibrate (one kind of pair only, too few impostors).
"""

import os
import sys

from keras_arcface._cli_options import add_model_argument


def add_arguments(parser):
    """Adds the command's arguments to ``parser``."""
    add_model_argument(parser)
    parser.add_argument(
        "--bin", required=True, help=".bin pair set of the kind of images the model will see"
    )
    parser.add_argument(
        "--far",
        type=float,
        default=None,
        help="target false-accept rate, e.g. 1e-3 (default: the best-accuracy threshold)",
    )
    parser.add_argument(
        "--flip",
        action="store_true",
        help="fuse mirror-image embeddings (only if your pipeline does; verify does not)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the threshold without storing it"
    )


def main(args):
    """Runs the command; returns 0, or 2 for bad input (nothing written then)."""
    from keras_arcface.data import load_bin
    from keras_arcface.evaluation.calibration import (
        calibrate_threshold,
        check_pairs_for_calibration,
        store_calibration,
    )
    from keras_arcface.inference import Embedder

    try:
        pairs = load_bin(args.bin)
        check_pairs_for_calibration(pairs.issame, args.far)  # before the slow embedding
        embedder = Embedder.load(args.model)
        record = calibrate_threshold(
            embedder.embed,
            pairs.images,
            pairs.issame,
            far=args.far,
            flip=args.flip,
            source=os.path.basename(args.bin),
        )
        path = None if args.dry_run else store_calibration(args.model, record)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"keras-arcface calibrate: error: {error}", file=sys.stderr)
        return 2
    print(f"threshold {record['threshold']:.4f} (cosine): {record['threshold_source']}")
    if path:
        print(f"stored in {path}; `keras-arcface verify` and exports of this model use it")
    return 0
