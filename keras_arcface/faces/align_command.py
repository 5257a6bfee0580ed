"""``keras-arcface align RAW_DIR OUT_DIR``: aligned ArcFace crops from a folder of raw photos.

::

    keras-arcface align photos/ aligned/                      # largest face per photo
    keras-arcface align photos/ aligned/ --all-faces --report aligned/report.csv
    keras-arcface align photos/ aligned/ --on-error skip      # list unreadable files, go on
"""

from keras_arcface._cli_options import add_on_error_option, add_progress_flag

_SHOWN_PROBLEMS = 20


def add_arguments(parser):
    """Adds the ``align`` command's arguments to ``parser``."""
    parser.add_argument("src", metavar="RAW_DIR", help="folder of photos (sub-folders mirrored)")
    parser.add_argument("out", metavar="OUT_DIR", help="folder for the aligned crops")
    parser.add_argument("--image-size", type=int, default=112, help="crop side (default 112)")
    parser.add_argument(
        "--all-faces", action="store_true", help="one crop per face (default: the largest face)"
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.7,
        help="faces scoring below this are listed in the report, not written (default 0.7)",
    )
    parser.add_argument(
        "--format",
        choices=("png", "jpg"),
        default="png",
        dest="file_format",
        help="file format of the crops (default png)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: one per core from 200 photos)",
    )
    add_on_error_option(parser, "photo", "list it in the report and go on")
    parser.add_argument(
        "--report", default=None, help="report path, .json or .csv (default OUT/align_report.json)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo photos a previous run already finished"
    )
    add_progress_flag(parser, help="hide the progress bar")


def main(args):
    """Runs ``keras-arcface align``; prints a summary table; returns the exit status."""
    from keras_arcface.faces.align_folder import align_folder

    summary = align_folder(
        args.src,
        args.out,
        image_size=args.image_size,
        all_faces=args.all_faces,
        min_score=args.min_score,
        file_format=args.file_format,
        workers=args.workers,
        on_error=args.on_error,
        report=args.report,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print("| status | photos |\n|---|---|")
    for status, count in sorted(summary["counts"].items()):
        print(f"| {status} | {count} |")
    print(f"\n{summary['crops']} crops in {args.out}; report: {summary['report']}")
    if summary["skipped_done"]:
        print(f"{summary['skipped_done']} photos were already done by an earlier run (skipped).")
    problems = summary["problems"]
    for file, status, message in problems[:_SHOWN_PROBLEMS]:
        print(f"  {status}: {file}" + (f" ({message})" if message else ""))
    if len(problems) > _SHOWN_PROBLEMS:
        print(f"  ... and {len(problems) - _SHOWN_PROBLEMS} more in the report")
    return 0
