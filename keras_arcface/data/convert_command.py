"""``keras-arcface convert``: image folders, InsightFace RecordIO and pair lists.

::

    keras-arcface convert images DIR OUT [--resize] [--on-error skip]
    keras-arcface convert rec PATH_PREFIX OUT [--on-error skip]
    keras-arcface convert bin OUT.bin --pairs pairs.txt --image-root DIR
    keras-arcface convert bin OUT.bin --folder DIR --num-pairs 3000
    keras-arcface convert check DATA_DIR
"""

import json

from keras_arcface._cli_options import add_on_error_option, add_progress_flag


def _add_common(parser):
    parser.add_argument(
        "--image-size", type=int, default=112, help="side of the stored square images (default 112)"
    )
    parser.add_argument(
        "--resize",
        action="store_true",
        help="resize images of another size instead of rejecting them",
    )
    parser.add_argument(
        "--image-format",
        choices=("keep", "jpeg", "png"),
        default="keep",
        help="keep: JPEG stays JPEG byte for byte, others become PNG",
    )
    parser.add_argument(
        "--align",
        action="store_true",
        help="detect the largest face of each photo and align it to the ArcFace template "
        "(raw photos in; needs keras-arcface[faces])",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.7,
        help="with --align: photos whose best face scores below this count as 'no face' (0.7)",
    )
    add_on_error_option(parser, "image", "drop and count it")


def _add_dataset_options(parser):
    _add_common(parser)
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=95,
        help="quality of images re-encoded as JPEG (--image-format jpeg; default 95)",
    )
    parser.add_argument("--workers", type=int, default=None, help="decoding threads")
    parser.add_argument("--shards", type=int, default=None, help="number of shard files")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_progress_flag(parser, help="hide the progress bar")


def add_arguments(parser):
    """Adds the ``convert`` sub-commands to ``parser``."""
    commands = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    images = commands.add_parser("images", help="an image folder, one sub-folder per identity")
    images.add_argument("src", metavar="DIR", help="image folder, one sub-folder per identity")
    images.add_argument("out", metavar="OUT", help="output TFRecord dataset folder")
    _add_dataset_options(images)
    rec = commands.add_parser("rec", help="InsightFace/MXNet .rec + .idx (no mxnet needed)")
    rec.add_argument("src", metavar="PATH_PREFIX", help="path without .rec/.idx")
    rec.add_argument("out", metavar="OUT", help="output TFRecord dataset folder")
    rec.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="default: property file, header record, or largest label + 1",
    )
    _add_dataset_options(rec)
    bin_ = commands.add_parser("bin", help="a .bin verification set from pairs")
    bin_.add_argument("out", metavar="OUT.bin", help="the .bin verification set to write")
    source = bin_.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", help="LFW-style pairs.txt (needs --image-root)")
    source.add_argument("--folder", help="image folder to draw balanced pairs from")
    bin_.add_argument("--image-root", help="folder the pairs.txt names refer to")
    bin_.add_argument("--extension", default="jpg", help="image extension for pairs.txt")
    bin_.add_argument(
        "--num-pairs",
        type=int,
        default=3000,
        help="pairs drawn with --folder, half genuine, half impostor (default 3000)",
    )
    bin_.add_argument("--seed", type=int, default=0, help="seed of the --folder pair draw")
    bin_.add_argument(
        "--entry-type",
        choices=("bytes", "ndarray"),
        default="bytes",
        help="store encoded image bytes (the reference format, default) or decoded arrays",
    )
    _add_common(bin_)
    check = commands.add_parser("check", help="verify every record of a TFRecord folder")
    check.add_argument("src", metavar="DATA_DIR", help="TFRecord dataset folder to check")


def _print_manifest(manifest):
    skipped = manifest.get("skipped", {})
    print(
        f"wrote {manifest['num_images']} images of {manifest['num_classes']} identities in "
        f"{len(manifest['shards'])} shards; skipped {skipped.get('total', 0)}"
        + (f" {json.dumps(skipped.get('by_reason', {}))}" if skipped.get("total") else "")
    )


def _transform(args):
    """The per-item align transform for ``--align`` (None without it)."""
    if not getattr(args, "align", False):
        return None
    if args.resize:
        raise SystemExit("convert: --align makes crops of --image-size; drop --resize")
    from keras_arcface.faces import AlignTransform

    return AlignTransform(image_size=args.image_size, min_score=args.min_score)


def main(args):
    """Runs ``keras-arcface convert``; returns the exit code."""
    size = (args.image_size, args.image_size) if hasattr(args, "image_size") else None
    transform = _transform(args)
    if args.source in ("images", "rec"):
        common = {
            "image_size": size,
            "resize": args.resize,
            "image_format": args.image_format,
            "jpeg_quality": args.jpeg_quality,
            "on_error": args.on_error,
            "num_workers": args.workers,
            "num_shards": args.shards,
            "overwrite": args.overwrite,
            "progress": not args.no_progress,
            "transform": transform,
        }
        if args.source == "images":
            from keras_arcface.data.image_folder import convert_image_folder

            manifest = convert_image_folder(args.src, args.out, **common)
        else:
            from keras_arcface.data.recordio import convert_recordio

            manifest = convert_recordio(args.src, args.out, num_classes=args.num_classes, **common)
        _print_manifest(manifest)
        return 0
    if args.source == "bin":
        from keras_arcface.data.pairs import pairs_from_folder, read_pairs_txt, write_pairs_bin

        if args.pairs:
            if not args.image_root:
                raise SystemExit("convert bin: --pairs needs --image-root")
            pairs = read_pairs_txt(args.pairs, args.image_root, extension=args.extension)
        else:
            pairs = pairs_from_folder(args.folder, args.num_pairs, args.seed)
        path, report = write_pairs_bin(
            pairs,
            args.out,
            image_size=size,
            resize=args.resize,
            image_format=args.image_format,
            on_error=args.on_error,
            entry_type=args.entry_type,
            transform=transform,
        )
        print(f"wrote {path}: {pairs.num_pairs - report.total} pairs; {report.summary()}")
        return 0
    from keras_arcface.data.check import check_dataset

    report = check_dataset(args.src)
    print(
        json.dumps(
            {key: report[key] for key in ("ok", "num_images", "num_read", "num_valid", "problems")},
            indent=2,
        )
    )
    return 0 if report["ok"] else 1
