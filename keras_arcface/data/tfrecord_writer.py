"""Sharded, atomic TFRecord dataset writer.

Records go round-robin into ``num_shards`` files (so every shard holds a bit of every
identity and file-level shuffling mixes well) inside a hidden staging folder next to the
destination. Only :meth:`TFRecordDatasetWriter.finalize` names the shards, writes
``labels.tsv`` and then ``manifest.json``, and renames the staging folder into place:
an interrupted conversion leaves no folder that looks like a finished dataset.
"""

import dataclasses
import datetime
import json
import math
import os
import shutil
import uuid

from keras_arcface.data import schema

DEFAULT_EXAMPLES_PER_SHARD = 2000
DEFAULT_MIN_SHARDS = 8
_DATASET_FILE_SUFFIXES = (".tfrecord",)
_DATASET_FILE_NAMES = (schema.MANIFEST_NAME, schema.LABELS_NAME)


@dataclasses.dataclass
class ImageRecord:
    """One encoded image with its label, as the writer stores it.

    Args:
        encoded: encoded image bytes (JPEG or PNG, RGB).
        label: integer label in ``[0, num_classes)``.
        identity: identity name.
        source_id: where the image came from.
        image_format: ``"jpeg"`` or ``"png"``.
        height: image height in pixels.
        width: image width in pixels.

    Example:
        >>> record = ImageRecord(b"...", 0, identity="alice", height=112, width=112)
    """

    encoded: bytes
    label: int
    identity: str = ""
    source_id: str = ""
    image_format: str = "jpeg"
    height: int = 112
    width: int = 112


def default_num_shards(
    num_images, examples_per_shard=DEFAULT_EXAMPLES_PER_SHARD, min_shards=DEFAULT_MIN_SHARDS
):
    """How many shards to write for ``num_images`` images.

    At least ``min_shards`` (so file-level sharding across workers and interleaving have
    files to work with), about ``examples_per_shard`` images per shard for big sets, and
    never more shards than images.

    Example:
        >>> default_num_shards(10000)
        8
        >>> default_num_shards(100000)
        50
    """
    if num_images <= 0:
        return 1
    wanted = max(min_shards, math.ceil(num_images / examples_per_shard))
    return max(1, min(num_images, wanted))


def _looks_like_dataset_folder(path):
    names = os.listdir(path)
    return all(
        name in _DATASET_FILE_NAMES or name.endswith(_DATASET_FILE_SUFFIXES) for name in names
    )


def prepare_destination(out_dir, overwrite):
    """Checks that ``out_dir`` may receive a dataset; fails early rather than after work.

    Example:
        >>> prepare_destination("/tmp/new_dataset", overwrite=False)  # doctest: +SKIP
    """
    out_dir = os.fspath(out_dir)
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(
                f"The output folder exists and is not empty; pass overwrite=True "
                f"(--overwrite) to replace it. Received: out_dir={out_dir!r}"
            )
        if not _looks_like_dataset_folder(out_dir):
            raise FileExistsError(
                "The output folder holds files that are not part of a TFRecord dataset; "
                f"refusing to replace it. Received: out_dir={out_dir!r}"
            )
    elif os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"The output path is a file. Received: out_dir={out_dir!r}")


class TFRecordDatasetWriter:
    """Writes a sharded TFRecord dataset folder atomically.

    Args:
        out_dir: destination folder (created; must be absent or empty unless ``overwrite``).
        class_names: identity name per label; ``len(class_names)`` is ``num_classes``.
        num_shards: number of shard files (empty shards are dropped at the end).
        image_size: ``(height, width)`` every image has.
        overwrite: replace an existing dataset folder.
        source: a JSON-able description of where the data came from (kept in the manifest).
        prefix: shard file prefix.

    Example:
        >>> with TFRecordDatasetWriter("/tmp/ds", class_names=["a", "b"], num_shards=2) as w:
        ...     w.write(ImageRecord(jpeg_bytes, 0, identity="a"))  # doctest: +SKIP
        ...     manifest = w.finalize()  # doctest: +SKIP
    """

    def __init__(
        self,
        out_dir,
        *,
        class_names,
        num_shards,
        image_size=(112, 112),
        overwrite=False,
        source=None,
        prefix=schema.SHARD_PREFIX,
    ):
        import tensorflow as tf

        if int(num_shards) < 1:
            raise ValueError(f"`num_shards` must be >= 1. Received: num_shards={num_shards}")
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        prepare_destination(self.out_dir, overwrite)
        self.class_names = [str(name) for name in class_names]
        self.num_classes = len(self.class_names)
        self.image_size = [int(image_size[0]), int(image_size[1])]
        self.overwrite = overwrite
        self.source = source or {}
        self.prefix = prefix
        parent = os.path.dirname(self.out_dir)
        os.makedirs(parent, exist_ok=True)
        self.staging_dir = os.path.join(
            parent, f".{os.path.basename(self.out_dir)}.partial-{uuid.uuid4().hex[:8]}"
        )
        os.makedirs(self.staging_dir)
        self._counts = [0] * int(num_shards)
        self._writers = [
            tf.io.TFRecordWriter(os.path.join(self.staging_dir, f"shard-{index:05d}.tmp"))
            for index in range(int(num_shards))
        ]
        self._next = 0
        self._formats = set()
        self._closed = False

    @property
    def num_written(self):
        return sum(self._counts)

    def write(self, record):
        """Writes one :class:`ImageRecord`; its label must be in ``[0, num_classes)``."""
        if self._closed:
            raise RuntimeError("The writer is already finalised or aborted.")
        if not 0 <= int(record.label) < self.num_classes:
            raise ValueError(
                f"Label outside [0, {self.num_classes}) for {record.source_id!r}. "
                f"Received: label={record.label}"
            )
        serialized = schema.serialize_example(
            record.encoded,
            int(record.label),
            identity=record.identity or self.class_names[int(record.label)],
            source_id=record.source_id,
            image_format=record.image_format,
            height=record.height,
            width=record.width,
        )
        self._formats.add(str(record.image_format))
        shard = self._next % len(self._writers)
        self._writers[shard].write(serialized)
        self._counts[shard] += 1
        self._next += 1

    def _close_writers(self):
        for writer in self._writers:
            writer.close()
        self._closed = True

    def finalize(self, *, skipped=None, extra=None):
        """Closes the shards, writes ``labels.tsv`` and ``manifest.json``, moves into place.

        Args:
            skipped: a JSON-able skip report to keep in the manifest.
            extra: more JSON-able manifest keys.

        Returns:
            The manifest dict.
        """
        self._close_writers()
        nonempty = [index for index, count in enumerate(self._counts) if count > 0] or [0]
        shards = []
        for new_index, old_index in enumerate(nonempty):
            name = schema.shard_name(new_index, len(nonempty), self.prefix)
            os.replace(
                os.path.join(self.staging_dir, f"shard-{old_index:05d}.tmp"),
                os.path.join(self.staging_dir, name),
            )
            shards.append({"file": name, "count": self._counts[old_index]})
        for index in range(len(self._counts)):
            leftover = os.path.join(self.staging_dir, f"shard-{index:05d}.tmp")
            if os.path.exists(leftover):
                os.remove(leftover)
        schema.write_labels_tsv(
            os.path.join(self.staging_dir, schema.LABELS_NAME), self.class_names
        )
        manifest = {
            "schema_version": schema.SCHEMA_VERSION,
            "format": schema.FORMAT_NAME,
            "num_images": self.num_written,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "channels": 3,
            "image_formats": sorted(self._formats),
            "shards": shards,
            "labels_file": schema.LABELS_NAME,
            "features": schema.FEATURE_DOC,
            "source": self.source,
            "skipped": skipped or {"total": 0},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        manifest.update(extra or {})
        with open(
            os.path.join(self.staging_dir, schema.MANIFEST_NAME), "w", encoding="utf-8"
        ) as handle:
            json.dump(manifest, handle, indent=2)
            handle.write("\n")
        self._move_into_place()
        return manifest

    def _move_into_place(self):
        if os.path.isdir(self.out_dir):
            if os.listdir(self.out_dir):
                prepare_destination(self.out_dir, self.overwrite)
                shutil.rmtree(self.out_dir)
            else:
                os.rmdir(self.out_dir)
        os.rename(self.staging_dir, self.out_dir)

    def abort(self):
        """Drops everything written so far; the destination is left untouched."""
        if not self._closed:
            self._close_writers()
        shutil.rmtree(self.staging_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None or os.path.isdir(self.staging_dir):
            self.abort()
        return False


def write_records(
    out_dir,
    records,
    *,
    class_names,
    num_images=None,
    num_shards=None,
    image_size=(112, 112),
    overwrite=False,
    source=None,
    skipped=None,
    extra=None,
    progress=True,
    description="writing TFRecords",
):
    """Writes an iterable of :class:`ImageRecord` as a dataset folder; returns the manifest.

    Args:
        out_dir: destination folder.
        records: iterable of :class:`ImageRecord`.
        class_names: identity name per label.
        num_images: expected count (for the progress bar and the default shard count).
        num_shards: shard files; default :func:`default_num_shards` of ``num_images``.
        image_size: ``(height, width)``.
        overwrite: replace an existing dataset folder.
        source: JSON-able provenance for the manifest.
        skipped: a :class:`~keras_arcface.data.errors.SkipReport` filled while iterating
            ``records``; its final counts go into the manifest.
        extra: more manifest keys.
        progress: show a tqdm bar.
        description: the bar's label.

    Example:
        >>> write_records("/tmp/ds", records, class_names=names, num_images=len(names))
        ... # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    if num_shards is None:
        num_shards = default_num_shards(num_images or 0)
    with TFRecordDatasetWriter(
        out_dir,
        class_names=class_names,
        num_shards=num_shards,
        image_size=image_size,
        overwrite=overwrite,
        source=source,
    ) as writer:
        for record in tqdm(
            records, total=num_images, desc=description, unit="img", disable=not progress
        ):
            writer.write(record)
        skipped_dict = skipped.as_dict() if skipped is not None else None
        return writer.finalize(skipped=skipped_dict, extra=extra)
