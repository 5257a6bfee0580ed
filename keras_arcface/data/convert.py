"""The converter core: source items -> prepare -> thread-pool window -> TFRecord writer -> manifest.

Every converter (image folders, InsightFace RecordIO, synthetic identities) is a *source*: a
:class:`Source` lists its items, knows how to load one (in a worker thread) and names its
classes. :func:`convert` does the rest once, for all of them:

1. ``source.load(item)`` reads one item as a :class:`SourceImage` (encoded bytes, label,
   where it came from) in a thread pool, a window of items at a time, in item order;
2. :class:`StoreOptions` decodes it with :func:`keras_arcface.faces.read_photo`, applies the
   optional per-item ``transform`` (the hook face alignment plugs into), checks or resizes it
   to ``image_size`` and encodes it (``image_codec.prepare_image``);
3. a bad item (a :class:`~keras_arcface.errors.DataError` or an unreadable file) stops the
   conversion under ``on_error="raise"`` or is counted under ``"skip"``; the counts go into
   the manifest and a closing warning;
4. the records go to :func:`~keras_arcface.data.tfrecord_writer.write_records` (sharded,
   atomic, ``manifest.json`` last).

Names that cannot be stored as UTF-8 (file names in another encoding, which Python keeps
as lone surrogates) are stored escaped (``caf\\xe9``) by :func:`safe_text`, never dropped.

Example:
    >>> source = Source(
    ...     items=["faces/alice/1.jpg"],
    ...     load=lambda path: SourceImage(open(path, "rb").read(), 0, path),
    ...     class_names=["alice"],
    ...     description="converting images",
    ... )
    >>> manifest = convert(source, "faces_tfrecord")  # doctest: +SKIP
"""

import concurrent.futures
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

from keras_arcface.data.errors import (
    DataError,
    SkipReport,
    bad_item,
    check_on_error,
    handle_data_error,
    logger,
)

WINDOW = 2048  # items in flight at once: bounds memory, keeps every worker busy


def safe_text(text):
    """Returns ``text`` storable as UTF-8: undecodable bytes of a file name become ``\\xNN``.

    Example:
        >>> safe_text("caf\\udce9")
        'caf\\\\xe9'
        >>> safe_text("café")
        'café'
    """
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")


@dataclasses.dataclass
class SourceImage:
    """One item as a source reads it.

    Args:
        data: the encoded image bytes.
        label: integer label in ``[0, num_classes)``.
        source_id: where it came from, stored in the record (``alice/1.jpg``, ``train.rec:7``).
        identity: identity name stored in the record (default: the class name of ``label``).
        name: what to call it in error messages (default: ``source_id``).
    """

    data: bytes
    label: int
    source_id: str
    identity: str = ""
    name: str = ""


@dataclasses.dataclass
class StoreOptions:
    """How every image is stored: size, format and the optional per-item transform.

    Args:
        image_size: ``(height, width)`` of the stored images. Default ``(112, 112)``.
        resize: resize images of another size (bicubic) instead of treating them as bad data.
        image_format: ``"keep"`` (upright 8-bit RGB JPEG stays byte for byte, others become
            PNG), ``"jpeg"`` or ``"png"``.
        jpeg_quality: quality when encoding JPEG. Default 95.
        transform: ``transform(pixels, name) -> pixels`` on the decoded uint8 RGB
            ``[H, W, 3]`` pixels before the size check (e.g. detect and align a face). It runs
            in the worker threads and raises ``DataError`` for an item it cannot handle (the
            ``on_error`` policy then applies). Default ``None``.
    """

    image_size: tuple = (112, 112)
    resize: bool = False
    image_format: str = "keep"
    jpeg_quality: int = 95
    transform: Callable | None = None

    def __post_init__(self):
        from keras_arcface.data.image_codec import check_image_format

        check_image_format(self.image_format)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.transform is not None and not callable(self.transform):
            raise TypeError(
                "`transform` must be a callable (pixels, name) -> pixels or None. "
                f"Received: transform={self.transform!r}"
            )

    def encode(self, data, name):
        """``(encoded bytes, "jpeg" | "png")`` for one image; ``DataError`` if it is bad."""
        from keras_arcface.data.image_codec import prepare_image

        return prepare_image(
            data,
            name,
            image_size=self.image_size,
            resize=self.resize,
            image_format=self.image_format,
            jpeg_quality=self.jpeg_quality,
            transform=self.transform,
        )


@dataclasses.dataclass
class Source:
    """What a converter contributes to :func:`convert`.

    Args:
        items: the items to convert, in order (paths, record keys, ...).
        load: ``load(item) -> SourceImage``; runs in worker threads; raises ``DataError``
            for a bad item (``OSError`` is reported as an unreadable item).
        class_names: identity name per label.
        description: progress-bar label (``"converting images"``).
        provenance: JSON-able description of the source, kept in the manifest.
        name_of: ``name_of(item)`` for messages when ``load`` fails. Default ``str``.
    """

    items: Sequence[Any]
    load: Callable[[Any], SourceImage]
    class_names: Sequence[str]
    description: str = "converting"
    provenance: dict = dataclasses.field(default_factory=dict)
    name_of: Callable[[Any], str] = str


def _prepare(source, options, item):
    """Loads and encodes one item (in a worker): ``(ImageRecord, None)`` or ``(None, error)``."""
    from keras_arcface.data.tfrecord_writer import ImageRecord

    try:
        image = source.load(item)
        name = image.name or image.source_id
        encoded, fmt = options.encode(image.data, name)
    except DataError as error:
        return None, error
    except OSError as error:
        detail = error.strerror or str(error)
        return None, bad_item("unreadable file", safe_text(source.name_of(item)), detail)
    record = ImageRecord(
        encoded,
        int(image.label),
        identity=safe_text(image.identity or source.class_names[int(image.label)]),
        source_id=safe_text(image.source_id),
        image_format=fmt,
        height=options.image_size[0],
        width=options.image_size[1],
    )
    return record, None


def prepared_records(source, options, *, on_error="raise", report=None, num_workers=None):
    """Yields the :class:`ImageRecord` of each good item in item order; counts bad ones.

    Items are prepared ``WINDOW`` at a time by ``num_workers`` threads (default: CPU count).

    Args:
        source: the :class:`Source`.
        options: the :class:`StoreOptions`.
        on_error: ``"raise"`` (stop at the first bad item) or ``"skip"`` (count it in
            ``report``).
        report: the :class:`SkipReport` to fill (default: a new one, not returned).
        num_workers: worker threads.
    """
    check_on_error(on_error)
    report = report if report is not None else SkipReport()
    items = list(source.items)
    workers = num_workers or os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), WINDOW):
            window = items[start : start + WINDOW]
            for record, error in pool.map(lambda item: _prepare(source, options, item), window):
                if error is not None:
                    handle_data_error(on_error, report, error)
                    continue
                yield record


def write_dataset(
    out_dir,
    records,
    *,
    class_names,
    num_items,
    image_size,
    report=None,
    num_shards=None,
    overwrite=False,
    progress=True,
    description="writing TFRecords",
    provenance=None,
    extra=None,
):
    """The writer call every converter ends with: records -> shards + ``manifest.json``.

    The skip counts of ``report`` go into the manifest and a closing warning. Returns the
    manifest dict.
    """
    from keras_arcface.data.tfrecord_writer import write_records

    report = report if report is not None else SkipReport()
    manifest = write_records(
        out_dir,
        records,
        class_names=[safe_text(name) for name in class_names],
        num_images=num_items,
        num_shards=num_shards,
        image_size=image_size,
        overwrite=overwrite,
        skipped=report,
        progress=progress,
        description=description,
        source=provenance or {},
        extra=extra,
    )
    if report.total:
        logger.warning("%s", report.summary())
    return manifest


def convert(
    source,
    out_dir,
    *,
    options=None,
    on_error="raise",
    num_workers=None,
    num_shards=None,
    overwrite=False,
    progress=True,
    report=None,
):
    """Converts every item of ``source`` into a TFRecord dataset folder; returns the manifest.

    Args:
        source: the :class:`Source` (image folder, RecordIO, ...).
        out_dir: output dataset folder (written atomically; see ``tfrecord_writer``).
        options: :class:`StoreOptions` (default: 112x112, no resize, ``keep`` format).
        on_error: ``"raise"`` or ``"skip"`` bad items (counted in ``manifest["skipped"]``).
        num_workers: worker threads (default: CPU count).
        num_shards: shard files (default from the item count).
        overwrite: replace an existing dataset in ``out_dir``.
        progress: show a progress bar.
        report: a :class:`SkipReport` already holding problems the source found while
            listing its items (e.g. bad ``.idx`` lines); default a new one.

    Example:
        >>> convert(source, "out", options=StoreOptions(resize=True))  # doctest: +SKIP
    """
    options = options or StoreOptions()
    report = report if report is not None else SkipReport()
    records = prepared_records(
        source, options, on_error=on_error, report=report, num_workers=num_workers
    )
    return write_dataset(
        out_dir,
        records,
        class_names=source.class_names,
        num_items=len(source.items),
        image_size=options.image_size,
        report=report,
        num_shards=num_shards,
        overwrite=overwrite,
        progress=progress,
        description=source.description,
        provenance=source.provenance,
    )
