"""``keras-arcface synth``: generate the built-in synthetic identities.

::

    keras-arcface synth OUT [--identities 300] [--images-per-identity 30] [--seed 0]
                            [--set max_roll=8 --set occlusion_probability=0.1]
"""

import dataclasses
import json

from keras_arcface._cli_options import add_progress_flag


def add_arguments(parser):
    """Adds the ``synth`` options to ``parser``."""
    from keras_arcface.data.synthetic import SyntheticDifficulty

    knobs = ", ".join(f.name for f in dataclasses.fields(SyntheticDifficulty))
    parser.add_argument("out", metavar="OUT", help="output folder (train/, verification.bin)")
    parser.add_argument("--identities", type=int, default=300, help="training identities")
    parser.add_argument(
        "--images-per-identity", type=int, default=30, help="images per training identity"
    )
    parser.add_argument(
        "--heldout-identities",
        type=int,
        default=100,
        help="identities of the verification set (never trained on)",
    )
    parser.add_argument(
        "--heldout-images-per-identity",
        type=int,
        default=12,
        help="images per held-out identity",
    )
    parser.add_argument("--pairs", type=int, default=3000, help="verification pairs")
    parser.add_argument("--seed", type=int, default=0, help="seed of identities and images")
    parser.add_argument("--image-size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--workers", type=int, default=None, help="rendering processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_progress_flag(parser)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help=f"difficulty knob (repeatable); knobs: {knobs}",
    )


def parse_knobs(pairs):
    """Parses ``KNOB=VALUE`` strings into typed difficulty keyword arguments.

    Example:
        >>> parse_knobs(["max_roll=8", "jpeg_quality=60,90"])
        {'max_roll': 8.0, 'jpeg_quality': (60, 90)}
    """
    from keras_arcface.data.synthetic import SyntheticDifficulty

    defaults = SyntheticDifficulty()
    result = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not hasattr(defaults, name):
            raise SystemExit(
                f"synth: --set expects KNOB=VALUE with a known knob. Received: --set {pair}"
            )
        default = getattr(defaults, name)
        if isinstance(default, tuple):
            result[name] = tuple(type(v)(p) for v, p in zip(default, text.split(",")))
        else:
            result[name] = type(default)(text)
    return result


def main(args):
    """Runs ``keras-arcface synth``; returns the exit code."""
    from keras_arcface.data.synthetic import generate_synthetic

    summary = generate_synthetic(
        args.out,
        num_identities=args.identities,
        images_per_identity=args.images_per_identity,
        heldout_identities=args.heldout_identities,
        heldout_images_per_identity=args.heldout_images_per_identity,
        num_pairs=args.pairs,
        seed=args.seed,
        image_size=args.image_size,
        num_workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **parse_knobs(args.set),
    )
    print(json.dumps(summary, indent=2))
    return 0
