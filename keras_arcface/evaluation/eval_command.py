"""``keras-arcface eval``: verification (and identification) of one or more models.

    keras-arcface eval MODEL [MODEL ...] --bin lfw.bin [--bin cfp_fp.bin] [--images DIR]
                       [--batch-size 64] [--no-flip] [--json OUT] [--plot-dir DIR]

MODEL is a ``.keras`` file, a run folder, a SavedModel directory, a ``.tflite`` or an
``.onnx`` file (loaded by ``keras_arcface.inference.Embedder``). Several models (say a run and
its exports) are evaluated on the same sets and drawn on one ROC chart per set.
"""

import datetime
import os
import platform
import re
import sys

import numpy as np

from keras_arcface._cli_options import add_progress_flag, add_threads_option
from keras_arcface.evaluation.identification import (
    DEFAULT_FPIR_TARGETS,
    evaluate_identification,
)
from keras_arcface.evaluation.report import (
    identification_table,
    notes_of,
    summarize,
    verification_table,
    write_json,
)
from keras_arcface.evaluation.verification import DEFAULT_FAR_TARGETS, evaluate_verification


def add_arguments(parser):
    """Adds the ``eval`` options to ``parser``."""
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help=".keras file, run folder, SavedModel directory, .tflite or .onnx file "
        "(several models are compared on the same sets and ROC charts)",
    )
    parser.add_argument(
        "--bin",
        dest="bins",
        action="append",
        default=[],
        metavar="BIN",
        help="InsightFace .bin verification set (lfw.bin, cfp_fp.bin, ...); repeatable",
    )
    parser.add_argument(
        "--images",
        metavar="DIR",
        help="image folder, one sub-folder per identity: runs 1:N identification",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument(
        "--no-flip", action="store_true", help="do not add the horizontally flipped image"
    )
    parser.add_argument(
        "--raw-fusion",
        action="store_true",
        help="sum raw (unnormalized) embeddings of image and flip, as the reference does; "
        "only .keras models and run folders give raw embeddings (default: normalize each "
        "first, which gives the same numbers for every format)",
    )
    parser.add_argument("--nfolds", type=int, default=10, help="folds of the protocol")
    parser.add_argument(
        "--far",
        type=float,
        nargs="+",
        default=list(DEFAULT_FAR_TARGETS),
        metavar="FAR",
        help="FAR values for TAR@FAR (default 1e-1 1e-2 1e-3 1e-4)",
    )
    parser.add_argument(
        "--gallery-per-identity",
        type=int,
        default=1,
        help="identification: gallery images per enrolled identity",
    )
    parser.add_argument(
        "--open-set-fraction",
        type=float,
        default=0.1,
        help="identification: fraction of identities kept out of the gallery (non-mated)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the open-set split")
    add_threads_option(parser)
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    parser.add_argument("--plot-dir", metavar="DIR", help="write ROC and score PNGs here")
    add_progress_flag(parser)


def main(args):
    """Runs ``keras-arcface eval``; returns the exit status."""
    try:
        report = run(args)
    except (ValueError, OSError, ImportError) as error:
        print(f"keras-arcface eval: error: {error}", file=sys.stderr)
        return 2
    print(report["text"])
    return 0


def run(args):
    """Evaluates every model on every set; returns the report dict (and writes files)."""
    _check_args(args)
    progress = not args.no_progress
    sets = _load_sets(args.bins)
    folder = _load_image_folder(args.images, progress) if args.images else None

    from keras_arcface.inference import Embedder

    models, verification, identification = [], [], []
    for path in args.models:
        embedder = Embedder.load(path, batch_size=args.batch_size, num_threads=args.threads)
        label = _unique_label(path, embedder.format, [m["label"] for m in models])
        models.append(
            {
                "path": os.path.abspath(path),
                "format": embedder.format,
                "label": label,
                "embedding_dim": embedder.embedding_dim,
            }
        )
        verification += _verification_results(embedder, label, sets, args, progress)
        if folder is not None:
            identification.append(_identification_result(embedder, label, folder, args, progress))

    text = _text_report(verification, identification)
    payload = _json_payload(args, models, verification, identification)
    if args.json:
        write_json(args.json, payload)
        text += f"\nJSON written to {args.json}"
    if args.plot_dir:
        written = _write_plots(args.plot_dir, sets, verification)
        text += f"\nPlots written to {args.plot_dir}: {', '.join(written)}"
    return {"text": text, "payload": payload}


def _verification_results(embedder, label, sets, args, progress):
    """``[(label, set name, .bin path, result)]`` of one model on every pair set."""
    results = []
    for name, bin_path, pair_set in sets:
        embed_fn, raw = _embed_fn(embedder, pair_set.images.shape[1:3])
        result = evaluate_verification(
            embed_fn,
            pair_set.images,
            pair_set.issame,
            batch_size=args.batch_size,
            flip=not args.no_flip,
            progress=progress,
            nfolds=args.nfolds,
            far_targets=args.far,
            normalize_before_fusion=not args.raw_fusion,
            description=f"{label} {name}",
        )
        if not raw:
            result["mean_norm"] = None  # the format returns normalized embeddings only
        results.append((label, name, bin_path, result))
    return results


def _identification_result(embedder, label, folder, args, progress):
    """``(label, folder name, folder path, result)`` of one model on the image folder."""
    images, labels, root = folder
    embed_fn, _ = _embed_fn(embedder, images.shape[1:3])
    result = evaluate_identification(
        embed_fn,
        images,
        labels,
        gallery_per_identity=args.gallery_per_identity,
        open_set_fraction=args.open_set_fraction,
        seed=args.seed,
        batch_size=args.batch_size,
        flip=not args.no_flip,
        progress=progress,
        fpir_targets=DEFAULT_FPIR_TARGETS,
        description=f"{label} {os.path.basename(root)}",
    )
    return label, os.path.basename(root), root, result


def _check_args(args):
    if not args.bins and not args.images:
        raise ValueError("Nothing to evaluate: give --bin FILE and/or --images DIR. Received: none")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive. Received: batch_size={args.batch_size}")
    for path in args.bins:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--bin file not found. Received: bin={path!r}")
    if args.images and not os.path.isdir(args.images):
        raise FileNotFoundError(f"--images must be a folder. Received: images={args.images!r}")
    for path in args.models:
        if not os.path.exists(path):
            raise FileNotFoundError(f"MODEL not found. Received: model={path!r}")


def _load_sets(paths):
    from keras_arcface.data import load_bin

    sets, names = [], set()
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        if name in names:
            name = path
        names.add(name)
        sets.append((name, os.path.abspath(path), load_bin(path)))
    return sets


def _load_image_folder(root, progress):
    """Reads ``root/<identity>/<image>`` into uint8 ``[N, H, W, 3]`` plus identity names."""
    from tqdm.auto import tqdm

    from keras_arcface.data.image_folder import scan_image_folder
    from keras_arcface.inference.images import load_image, to_batch

    class_names, items, _ = scan_image_folder(root)
    if not items:
        raise ValueError(
            f"The image folder holds no images in identity sub-folders. Received: images={root!r}"
        )
    images = np.stack(
        [
            to_batch(load_image(path))[0].astype(np.uint8)
            for path, _ in tqdm(items, desc="reading images", disable=not progress, leave=False)
        ]
    )
    labels = np.array([class_names[label] for _, label in items])
    return images, labels, os.path.abspath(root)


def _embed_fn(embedder, image_hw):
    """Raw embeddings when the format has them (mean norm is then meaningful)."""
    runtime = embedder.runtime
    same_size = tuple(image_hw) == (embedder.image_size, embedder.image_size)
    if getattr(runtime, "normalized", True) is False and same_size:
        return runtime, True
    return embedder.embed, False


def _unique_label(path, model_format, taken):
    label = f"{os.path.basename(os.path.normpath(path))} [{model_format}]"
    if label in taken:
        label = f"{os.path.normpath(path)} [{model_format}]"
    while label in taken:
        label += "'"
    return label


def _text_report(verification, identification):
    parts = []
    if verification:
        parts.append(verification_table([(m, n, r) for m, n, _, r in verification]))
    if identification:
        parts.append(identification_table([(m, n, r) for m, n, _, r in identification]))
    notes = sorted({note for *_, r in verification + identification for note in notes_of(r)})
    if notes:
        parts.append("\n".join(f"note: {note}" for note in notes))
    return "\n\n".join(parts)


def _json_payload(args, models, verification, identification):
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "settings": {
            "flip": not args.no_flip,
            "fusion": "raw" if args.raw_fusion else "normalized",
            "batch_size": args.batch_size,
            "nfolds": args.nfolds,
            "far_targets": args.far,
        },
        "models": models,
        "verification": [
            {"model": m, "set": n, "path": p, **summarize(r)} for m, n, p, r in verification
        ],
        "identification": [
            {"model": m, "set": n, "path": p, **summarize(r)} for m, n, p, r in identification
        ],
    }


def _slug(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _write_plots(plot_dir, sets, verification):
    from keras_arcface.evaluation.plots import plot_roc, plot_score_histogram

    written = []
    for name, _, _ in sets:
        curves = {m: r for m, n, _, r in verification if n == name}
        path = os.path.join(plot_dir, f"roc_{_slug(name)}.png")
        plot_roc(curves, path, title=f"ROC on {name}")
        written.append(os.path.basename(path))
        for label, result in curves.items():
            path = os.path.join(plot_dir, f"scores_{_slug(name)}_{_slug(label)}.png")
            plot_score_histogram(result, path, title=f"{label} on {name}")
            written.append(os.path.basename(path))
    return written
