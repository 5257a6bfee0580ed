"""Writing the synthetic dataset: training TFRecords, the held-out ``.bin``, a contact sheet."""

import dataclasses
import os
import time

import numpy as np

from keras_arcface._io import atomic_path
from keras_arcface.data.synthetic.difficulty import SyntheticDifficulty, _check_counts
from keras_arcface.data.synthetic.rendering import (
    HELDOUT_INDEX_OFFSET,
    _decode_jpeg,
    _default_workers,
    _iter_rendered,
    _render_many,
)


def contact_sheet(images_by_identity, path, cell=112):
    """Writes a grid PNG: one row per identity, one column per image.

    Example:
        >>> contact_sheet([[img1, img2], [img3, img4]], "sheet.png")  # doctest: +SKIP
    """
    from PIL import Image

    rows = len(images_by_identity)
    cols = max(len(row) for row in images_by_identity)
    sheet = Image.new(
        "RGB", (cols * cell + (cols + 1) * 2, rows * cell + (rows + 1) * 2), (255, 255, 255)
    )
    for r, row in enumerate(images_by_identity):
        for c, image in enumerate(row):
            tile = Image.fromarray(image)
            if tile.size != (cell, cell):
                tile = tile.resize((cell, cell))
            sheet.paste(tile, (2 + c * (cell + 2), 2 + r * (cell + 2)))
    with atomic_path(path, suffix=".png") as temporary:
        sheet.save(temporary)
    return path


def generate_synthetic(
    out_dir,
    *,
    num_identities=300,
    images_per_identity=30,
    heldout_identities=100,
    heldout_images_per_identity=12,
    num_pairs=3000,
    seed=0,
    image_size=112,
    num_workers=None,
    overwrite=False,
    progress=True,
    contact_identities=8,
    contact_images=8,
    **difficulty,
):
    """Generates the synthetic dataset: training TFRecords, a held-out ``.bin``, a sheet.

    Writes ``out_dir/train/`` (a TFRecord dataset folder with ``manifest.json`` and
    ``labels.tsv``), ``out_dir/verification.bin`` (balanced pairs drawn only from
    ``heldout_identities`` identities never used for training) and
    ``out_dir/contact_sheet.png`` (rows of training identities).

    Args:
        out_dir: output folder.
        num_identities: training identities.
        images_per_identity: training images per identity.
        heldout_identities: identities for the verification set (disjoint from training).
        heldout_images_per_identity: images rendered per held-out identity.
        num_pairs: verification pairs (half same, half different).
        seed: integer seed; the whole output is a function of it and the arguments.
        image_size: side of the square images.
        num_workers: rendering processes (default ``min(4, CPUs)``; 1 renders inline).
        overwrite: replace an existing ``out_dir/train``.
        progress: show progress bars.
        contact_identities: rows of the contact sheet.
        contact_images: columns of the contact sheet.
        **difficulty: :class:`SyntheticDifficulty` knobs (``max_roll``, ``max_yaw``,
            ``occlusion_probability``, ...).

    Returns:
        A summary dict: paths, counts, the difficulty used and timings.

    Example:
        >>> summary = generate_synthetic("runs/synthetic", num_identities=50,
        ...                              images_per_identity=10, num_pairs=600)  # doctest: +SKIP
    """
    knobs = SyntheticDifficulty.from_kwargs(**difficulty)
    _check_generate_counts(
        num_identities=num_identities,
        images_per_identity=images_per_identity,
        heldout_identities=heldout_identities,
        heldout_images_per_identity=heldout_images_per_identity,
        num_pairs=num_pairs,
        image_size=image_size,
    )
    out_dir, train_dir = _prepare_out_dir(out_dir, overwrite)
    workers = _default_workers() if num_workers is None else int(num_workers)
    job = _Job(seed, image_size, knobs, workers)
    started = time.perf_counter()
    heldout = _render_many(
        *job.render_args(HELDOUT_INDEX_OFFSET, heldout_identities, heldout_images_per_identity),
        progress,
        "rendering held-out identities",
    )
    sheet_size = (contact_identities, contact_images)
    manifest, sheet_sources = _write_training_set(
        train_dir, job, num_identities, images_per_identity, overwrite, progress, sheet_size
    )
    bin_path, issame = _write_verification_bin(
        os.path.join(out_dir, "verification.bin"), heldout, num_pairs, seed
    )
    return {
        "train_dir": train_dir,
        "verification_bin": bin_path,
        "contact_sheet": _write_contact_sheet(sheet_sources, out_dir),
        "num_identities": num_identities,
        "images_per_identity": images_per_identity,
        "num_images": manifest["num_images"],
        "heldout_identities": heldout_identities,
        "num_pairs": int(len(issame)),
        "seed": seed,
        "image_size": image_size,
        "difficulty": dataclasses.asdict(knobs),
        "total_seconds": round(time.perf_counter() - started, 2),
    }


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every rendering call of one generation shares."""

    seed: int
    image_size: int
    knobs: SyntheticDifficulty
    workers: int

    def render_args(self, offset, num_identities, count):
        # The leading arguments of _iter_rendered / _render_many (JPEG-encoded output).
        indices = range(offset, offset + num_identities)
        return self.seed, indices, count, self.image_size, self.knobs, True, self.workers


def _prepare_out_dir(out_dir, overwrite):
    """Creates ``out_dir`` and readies ``out_dir/train``: ``(out_dir, train_dir)`` as strings."""
    from keras_arcface.data.tfrecord_writer import prepare_destination

    out_dir = os.fspath(out_dir)
    train_dir = os.path.join(out_dir, "train")
    prepare_destination(train_dir, overwrite)
    os.makedirs(out_dir, exist_ok=True)
    return out_dir, train_dir


def _write_contact_sheet(sheet_sources, out_dir):
    """Decodes the kept JPEG rows and writes ``out_dir/contact_sheet.png``; returns its path."""
    sheet_rows = [[_decode_jpeg(data) for data in row] for row in sheet_sources]
    return contact_sheet(sheet_rows, os.path.join(out_dir, "contact_sheet.png"))


def _check_generate_counts(**counts):
    _check_counts(**counts)
    if counts["heldout_identities"] < 2 or counts["heldout_images_per_identity"] < 2:
        raise ValueError(
            "Verification pairs need >= 2 held-out identities with >= 2 images. "
            f"Received: heldout_identities={counts['heldout_identities']}, "
            f"heldout_images_per_identity={counts['heldout_images_per_identity']}"
        )


def _training_records(job, num_identities, images_per_identity, progress, sheet_sources, sheet):
    """Yields the training ``ImageRecord``s as identities are rendered (streaming: the
    writer's round-robin spreads each identity's images over all shards), keeping the first
    ``sheet = (rows, columns)`` images for the contact sheet in ``sheet_sources``."""
    from keras_arcface.data.tfrecord_writer import ImageRecord

    rendered = _iter_rendered(
        *job.render_args(0, num_identities, images_per_identity),
        progress,
        "rendering training identities",
    )
    for label, images in enumerate(rendered):
        if label < sheet[0]:
            sheet_sources.append(images[: sheet[1]])
        for k, encoded in enumerate(images):
            yield ImageRecord(
                encoded,
                label,
                identity=_identity_name(label),
                source_id=f"synthetic/{job.seed}/{label}/{k}",
                image_format="jpeg",
                height=job.image_size,
                width=job.image_size,
            )


def _identity_name(label):
    return f"synthetic_{label:06d}"


def _write_training_set(
    train_dir, job, num_identities, images_per_identity, overwrite, progress, sheet
):
    """Renders and writes the training TFRecords: ``(manifest, contact-sheet JPEG rows)``."""
    from keras_arcface.data.convert import write_dataset

    sheet_sources = []
    # Rendering is the "prepare" step here: a process pool yields JPEG bytes of the right
    # size, so the records go straight to the converter core's writer call.
    records = _training_records(
        job, num_identities, images_per_identity, progress, sheet_sources, sheet
    )
    manifest = write_dataset(
        train_dir,
        records,
        class_names=[_identity_name(label) for label in range(num_identities)],
        num_items=num_identities * images_per_identity,
        image_size=(job.image_size, job.image_size),
        overwrite=overwrite,
        progress=False,
        provenance={
            "generator": "keras_arcface.data.synthetic",
            "seed": job.seed,
            "difficulty": dataclasses.asdict(job.knobs),
        },
    )
    return manifest, sheet_sources


def _write_verification_bin(path, heldout, num_pairs, seed):
    """Balanced pairs over the held-out identities (a list of lists of JPEG bytes)."""
    from keras_arcface.data.pairs import make_pairs
    from keras_arcface.data.verification_bin import write_bin

    flat = [item for identity in heldout for item in identity]
    flat_labels = np.repeat(np.arange(len(heldout)), [len(identity) for identity in heldout])
    pairs, issame = make_pairs(flat_labels, num_pairs, seed)
    return write_bin(path, [flat[i] for pair in pairs for i in pair], issame), issame
