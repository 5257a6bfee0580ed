"""InsightFace / MXNet RecordIO (``.rec`` + ``.idx``) without mxnet.

The format, as MXNet writes it:

* A chunk is ``[u32 magic 0xCED7230A][u32 (cflag << 29) | length][payload][pad to 4]``,
  little-endian. ``cflag`` 0 is a whole record; 1, 2, 3 are the first, middle and last
  parts of a record the writer split at 4-byte-aligned occurrences of the magic word
  inside the payload, so joining parts re-inserts the 4 magic bytes between them.
* ``.idx`` holds ``key<TAB>offset`` lines.
* A record payload starts with ``struct "<IfQQ"`` (flag, label, id, id2; 24 bytes). When
  ``flag > 0``, ``flag`` float32 labels follow and the first is the class label. The rest
  is the encoded image.
* InsightFace datasets put a header record at key 0 with ``flag == 2``, labels
  ``[a, b]`` and no image: images are keys ``1 .. a-1`` and keys ``a .. b-1`` hold
  per-identity ``[start, end)`` ranges. im2rec-style files have no header: every key in
  ``.idx`` is an image.
* A ``property`` file next to the ``.rec`` holds ``num_classes,height,width``.
* Labels are float32: exact integers only up to 2**24.
"""

import dataclasses
import math
import os
import struct
import threading

import numpy as np

from keras_arcface.data.errors import (
    DataError,
    SkipReport,
    bad_item,
    check_on_error,
    handle_bad_item,
)

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER_FORMAT = "<IfQQ"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)
_LENGTH_MASK = (1 << 29) - 1
_MAX_EXACT_LABEL = 2**24


@dataclasses.dataclass
class RecordHeader:
    """The IRHeader of a record: ``flag``, ``labels`` (float32 array), ``id``, ``id2``."""

    flag: int
    labels: np.ndarray
    id: int
    id2: int


def unpack_record(payload, key=None):
    """Splits a record payload into its header and image bytes.

    Args:
        payload: the joined record payload.
        key: the record key, for messages.

    Returns:
        ``(RecordHeader, image bytes)``; ``labels`` holds one value when ``flag == 0``,
        else ``flag`` values.

    Example:
        >>> header, image = unpack_record(struct.pack("<IfQQ", 0, 3.0, 7, 0) + b"jpeg")
        >>> header.labels.tolist(), image
        ([3.0], b'jpeg')
    """
    if len(payload) < HEADER_SIZE:
        raise bad_item(
            "truncated record",
            f"key {key}",
            f"{len(payload)} bytes, shorter than the 24-byte header",
        )
    flag, label, id1, id2 = struct.unpack_from(HEADER_FORMAT, payload)
    offset = HEADER_SIZE
    if flag > 0:
        end = offset + 4 * flag
        if len(payload) < end:
            raise bad_item(
                "truncated record",
                f"key {key}",
                f"header announces {flag} labels but the record ends first",
            )
        labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=offset).copy()
        offset = end
    else:
        labels = np.array([label], dtype=np.float32)
    return RecordHeader(int(flag), labels, int(id1), int(id2)), payload[offset:]


def read_idx(path, on_error="raise", report=None):
    """Reads a ``.idx`` file into a list of ``(key, offset)`` in file order.

    A line that is not ``key<TAB>offset`` (two non-negative integers, ASCII) is a
    :class:`DataError` naming ``FILE:LINE``; under ``on_error="skip"`` it is counted in
    ``report`` as a bad index line instead.

    Example:
        >>> entries = read_idx("train.idx")  # doctest: +SKIP
    """
    entries = []
    report = report if report is not None else SkipReport()
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                entries.append(_idx_entry(line))
            except ValueError:
                shown = line[:60].decode("ascii", "backslashreplace")
                handle_bad_item(
                    on_error,
                    report,
                    "bad index line",
                    f"{path}:{line_number}",
                    f"expected 'key<TAB>offset' with non-negative integers, got {shown!r}",
                )
    return entries


def _idx_entry(line):
    parts = line.split(b"\t") if b"\t" in line else line.split()
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        raise ValueError(line)
    return int(parts[0]), int(parts[1])


def read_property(path):
    """Reads a ``property`` file (``num_classes,height,width``); ``None`` if absent.

    Example:
        >>> read_property("faces_emore/property")  # doctest: +SKIP
        (85742, 112, 112)
    """
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read().strip()
    try:
        values = [int(v) for v in text.replace(" ", "").split(",")]
        num_classes, height, width = values[:3]
    except (ValueError, IndexError):
        raise DataError(
            f"{path}: expected 'num_classes,height,width'. Received: text={text!r}"
        ) from None
    _check_num_classes(num_classes, path)
    return num_classes, height, width


def _check_num_classes(num_classes, where):
    # Labels are float32 in RecordIO: no label can reach 2**24, so no more classes either.
    if not 1 <= int(num_classes) <= _MAX_EXACT_LABEL:
        raise DataError(
            f"{where}: {num_classes} classes is outside [1, 2**24] (RecordIO labels are "
            f"float32 integers); pass --num-classes. Received: num_classes={num_classes}"
        )


class RecordIOReader:
    """Random access to the records of a ``.rec`` through its ``.idx``.

    Args:
        path_prefix: path without extension (``.../train`` for ``train.rec`` +
            ``train.idx``); a path ending in ``.rec`` or ``.idx`` also works.

    Example:
        >>> reader = RecordIOReader("faces_emore/train")  # doctest: +SKIP
        >>> header, image = reader.read_record(1)  # doctest: +SKIP
    """

    def __init__(self, path_prefix, on_error="raise", report=None):
        prefix = os.fspath(path_prefix)
        if prefix.endswith((".rec", ".idx")):
            prefix = prefix[:-4]
        self.prefix = prefix
        self.rec_path, self.idx_path = prefix + ".rec", prefix + ".idx"
        for path in (self.rec_path, self.idx_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"Missing {path}: a RecordIO dataset needs both .rec and .idx. "
                    f"Received: path_prefix={os.fspath(path_prefix)!r}"
                )
        self.entries = read_idx(self.idx_path, on_error, report)
        self.offsets = dict(self.entries)
        self.file_size = os.path.getsize(self.rec_path)
        self._handle = open(self.rec_path, "rb")  # noqa: SIM115 (closed in close())

    def close(self):
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def keys(self):
        return [key for key, _ in self.entries]

    def read_payload(self, key, handle=None):
        """The joined payload of record ``key`` (multi-part chunks re-joined)."""
        handle = handle or self._handle
        if key not in self.offsets:
            raise bad_item("missing record", f"key {key}", f"not in {self.idx_path}")
        offset = self.offsets[key]
        if offset > self.file_size - 8:
            raise bad_item(
                "corrupt index",
                f"key {key}",
                f"{self.idx_path} points at offset {offset}, beyond the end of {self.rec_path} "
                f"({self.file_size} bytes)",
            )
        parts = []
        while True:
            handle.seek(offset)
            head = handle.read(8)
            if len(head) < 8:
                raise bad_item(
                    "truncated record",
                    f"key {key}",
                    f"file ends at offset {offset} inside a chunk header",
                )
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise bad_item(
                    "corrupt record", f"key {key}", f"bad magic 0x{magic:08X} at offset {offset}"
                )
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            data = handle.read(length)
            if len(data) < length:
                raise bad_item(
                    "truncated record",
                    f"key {key}",
                    f"chunk at offset {offset} announces {length} bytes, {len(data)} remain",
                )
            parts.append(data)
            offset += 8 + ((length + 3) & ~3)
            if cflag == 0 and len(parts) == 1:
                return data
            if cflag == 3:
                return MAGIC_BYTES.join(parts)
            if cflag not in (1, 2) or (cflag == 1 and len(parts) > 1):
                raise bad_item(
                    "corrupt record",
                    f"key {key}",
                    f"unexpected chunk flag {cflag} at offset {offset}",
                )

    def read_record(self, key, handle=None):
        """``(RecordHeader, image bytes)`` of record ``key``."""
        return unpack_record(self.read_payload(key, handle), key)

    def layout(self):
        """Detects the file layout.

        The key-0 header's ``[a, b]`` is checked against the ``.idx`` before anything is
        allocated for it: ``a - 1`` images and ``b - a`` identity records must all be listed.

        Returns:
            ``(image_keys, header)``: the keys holding images in order, and the key-0
            header ``(a, b)`` for InsightFace-style files or ``None`` for im2rec files.
        """
        if 0 not in self.offsets:
            return self.keys, None
        header, image = self.read_record(0)
        if header.flag != 2 or image:
            return self.keys, None
        first, end = (float(v) for v in header.labels[:2])
        if not all(math.isfinite(v) and v == int(v) for v in (first, end)) or not 1 <= first <= end:
            return self.keys, None  # not an InsightFace header: every key is an image
        first, end = int(first), int(end)
        listed = len(self.offsets)
        if first - 1 > listed - 1 or end - first > first - 1:
            raise DataError(
                f"{self.rec_path}: the header record (key 0) claims [{first}, {end}]: "
                f"{first - 1} images of {end - first} identities, but {self.idx_path} lists "
                f"{listed} keys in all (and every identity needs an image). The header is "
                "damaged; rebuild the .idx/.rec, or delete key 0 from the .idx to read every "
                "key as an image."
            )
        missing = [k for k in range(1, first) if k not in self.offsets]
        if missing:
            raise DataError(
                f"{self.rec_path}: the header record says images are keys "
                f"1..{first - 1} but {len(missing)} are missing from {self.idx_path} "
                f"(first: {missing[0]})."
            )
        return list(range(1, first)), (first, end)


def _label_of(header, key, num_classes):
    label = float(header.labels[0])
    if not math.isfinite(label) or label != int(label) or abs(label) >= _MAX_EXACT_LABEL:
        raise bad_item(
            "bad label",
            f"key {key}",
            f"label {label!r} is not an integer exactly representable in float32",
        )
    label = int(label)
    if num_classes is not None and not 0 <= label < num_classes:
        raise bad_item(
            "label out of range", f"key {key}", f"label {label} outside [0, {num_classes})"
        )
    return label


def _scan_num_classes(reader, keys):
    """Largest label + 1 from headers only (when no property file or header says it)."""
    largest = -1
    with open(reader.rec_path, "rb") as handle:
        for key in keys:
            try:
                header, _ = reader.read_record(key, handle)
                largest = max(largest, _label_of(header, key, None))
            except DataError:
                continue  # reported in the conversion pass
    return largest + 1


def _resolve_num_classes(reader, keys, header, prop, num_classes):
    if num_classes is None:
        if prop is not None:
            num_classes = prop[0]
        elif header is not None and header[1] > header[0]:
            num_classes = header[1] - header[0]
        else:
            num_classes = _scan_num_classes(reader, keys)
    if int(num_classes) < 1:
        raise DataError(f"{reader.rec_path}: found no valid labels.")
    _check_num_classes(num_classes, reader.rec_path)
    return int(num_classes)


def recordio_source(reader, num_classes=None):
    """The records of an open :class:`RecordIOReader` as a converter-core ``Source``.

    Each worker thread reads through its own file handle; :meth:`RecordIOReader.close`
    does not close them, the returned ``close`` function does.

    Returns:
        ``(Source, close)``.

    Example:
        >>> source, close = recordio_source(RecordIOReader("train"))  # doctest: +SKIP
    """
    from keras_arcface.data.convert import Source, SourceImage

    keys, header = reader.layout()
    prop = read_property(
        os.path.join(os.path.dirname(os.path.abspath(reader.rec_path)), "property")
    )
    num_classes = _resolve_num_classes(reader, keys, header, prop, num_classes)
    local, handles = threading.local(), []
    rec_name = os.path.basename(reader.rec_path)

    def load(key):
        if not hasattr(local, "handle"):  # one file handle per worker thread
            local.handle = open(reader.rec_path, "rb")  # noqa: SIM115 (closed by close())
            handles.append(local.handle)
        record_header, image = reader.read_record(key, local.handle)
        label = _label_of(record_header, key, num_classes)
        return SourceImage(
            image, label, f"{rec_name}:{key}", identity=str(label), name=f"key {key}"
        )

    def close():
        for handle in handles:
            handle.close()

    source = Source(
        items=keys,
        load=load,
        class_names=[str(i) for i in range(num_classes)],
        description="converting RecordIO",
        provenance={
            "type": "recordio",
            "path": os.path.abspath(reader.rec_path),
            "layout": "insightface" if header else "im2rec",
            "property": list(prop) if prop else None,
        },
        name_of=lambda key: f"key {key}",
    )
    return source, close


def convert_recordio(
    path_prefix,
    out_dir,
    *,
    image_size=(112, 112),
    resize=False,
    image_format="keep",
    jpeg_quality=95,
    on_error="raise",
    num_classes=None,
    num_workers=None,
    num_shards=None,
    overwrite=False,
    progress=True,
    transform=None,
):
    """Converts an InsightFace/MXNet ``.rec`` + ``.idx`` dataset to TFRecords.

    The header record and the ``.idx`` are checked against each other and the file size
    before anything is allocated for them; every per-record problem (truncated or corrupt
    record, an offset beyond the file, a non-finite or non-integer label, a bad image) is
    a :class:`DataError` that ``on_error="skip"`` counts.

    Args:
        path_prefix: path without extension (``faces_emore/train``).
        out_dir: output dataset folder (written atomically).
        image_size: ``(height, width)`` of the stored images.
        resize: resize images of another size instead of treating them as bad data.
        image_format: ``"keep"`` (JPEG stays byte for byte), ``"jpeg"`` or ``"png"``.
        jpeg_quality: quality for JPEG encoding.
        on_error: ``"raise"`` or ``"skip"`` bad records (counted in the manifest).
        num_classes: number of classes; default from ``property``, else from the header
            record's identity ranges, else the largest label + 1.
        num_workers: decoding threads (default: CPU count).
        num_shards: shard files (default from the image count).
        overwrite: replace an existing dataset in ``out_dir``.
        progress: show a progress bar.
        transform: optional per-image ``transform(pixels, name) -> pixels`` (see
            :class:`~keras_arcface.data.convert.StoreOptions`).

    Returns:
        The manifest dict.

    Example:
        >>> convert_recordio("faces_emore/train", "ms1mv2_tfrecord")  # doctest: +SKIP
    """
    from keras_arcface.data.convert import StoreOptions, convert
    from keras_arcface.data.tfrecord_writer import prepare_destination

    check_on_error(on_error)
    options = StoreOptions(image_size, resize, image_format, jpeg_quality, transform)
    prepare_destination(out_dir, overwrite)
    index_report = SkipReport()
    with RecordIOReader(path_prefix, on_error, index_report) as reader:
        source, close = recordio_source(reader, num_classes)
        try:
            manifest = convert(
                source,
                out_dir,
                options=options,
                on_error=on_error,
                num_workers=num_workers,
                num_shards=num_shards,
                overwrite=overwrite,
                progress=progress,
                report=index_report,  # bad .idx lines are counted with the bad records
            )
        finally:
            close()
    return manifest
