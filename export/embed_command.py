"""``keras-arcface embed``: L2-normalized embeddings of image files, one per face.

Raw photos are detected and aligned first (``--align auto``, the default, leaves aligned
112x112 crops alone); a group photo gives one embedding per face, with its box and landmarks
in the ``--json`` output.
"""

import sys

from keras_arcface._cli_options import add_align_option, add_model_argument, add_threads_option
from keras_arcface._io import atomic_path, atomic_write_json


def add_arguments(parser):
    """Adds the ``embed`` command's arguments to ``parser``."""
    add_model_argument(parser)
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="photos or aligned face crops")
    parser.add_argument("--out", help="write the embeddings [N, D] float32 to this .npy file")
    parser.add_argument(
        "--json", help="write one record per face (image, box, landmarks, embedding) as JSON"
    )
    add_align_option(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="images per pass (32)")
    add_threads_option(parser)


def _records(embedder, path, align):
    """One dict per face of ``path`` (one for the whole image without alignment)."""
    if align == "false":
        embedding = embedder.embed(path, align=False)[0]
        return [{"image": path, "face": 0, "box": None, "embedding": embedding}]
    faces = embedder.embed_faces(path, align="auto" if align == "auto" else True)
    return [{"image": path, "face": index, **face} for index, face in enumerate(faces)]


def main(args):
    """Runs ``keras-arcface embed``; returns the exit status (1 if a photo had no face)."""
    import numpy as np

    from keras_arcface.inference import Embedder

    try:
        embedder = Embedder.load(args.model, batch_size=args.batch_size, num_threads=args.threads)
        records, faceless = [], []
        for path in args.images:
            found = _records(embedder, path, args.align)
            records += found
            if not found:
                faceless.append(path)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        print(f"keras-arcface embed: error: {error}", file=sys.stderr)
        return 2
    print("| image | face | box | dim | first values |\n|---|---|---|---|---|")
    for record in records:
        row = record["embedding"]
        head = " ".join(f"{v:+.4f}" for v in row[:4])
        box = "-" if record["box"] is None else " ".join(f"{v:.0f}" for v in record["box"])
        print(f"| {record['image']} | {record['face']} | {box} | {row.shape[0]} | {head} ... |")
    for path in faceless:
        print(f"| {path} | no face found | - | - | - |")
    if records and args.out:
        embeddings = np.stack([record["embedding"] for record in records])
        with atomic_path(args.out, suffix=".npy") as temporary:
            np.save(temporary, embeddings)
        print(f"Wrote {args.out} ({embeddings.shape[0]} x {embeddings.shape[1]}, float32)")
    if args.json:
        payload = [{**r, "embedding": [float(v) for v in r["embedding"]]} for r in records]
        atomic_write_json(args.json, {"faces": payload, "no_face": faceless})
        print(f"Wrote {args.json} ({len(records)} faces)")
    if faceless:
        print(f"keras-arcface embed: no face found in {len(faceless)} image(s)", file=sys.stderr)
        return 1
    return 0
