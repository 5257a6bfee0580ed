"""Convert an image folder (one sub-folder per identity) to a TFRecord dataset.

::

    faces/
      alice/ 001.jpg 002.png ...
      bob/   a.bmp b.pgm ...

Labels follow the sorted sub-folder names (``labels.tsv`` keeps the map). JPEG, PNG, BMP,
PGM/PPM (and anything else PIL reads with those extensions) are accepted; grayscale and
palette images are stored as RGB. Files with other extensions are ignored and counted.
"""

import concurrent.futures
import os

from keras_arcface.data.errors import (
    DataError,
    SkipReport,
    bad_item,
    check_on_error,
    handle_data_error,
    logger,
)

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".pgm",
    ".ppm",
    ".pnm",
    ".webp",
    ".tif",
    ".tiff",
)
_WINDOW = 2048


def scan_image_folder(src_dir):
    """Lists identities and image files of an image folder.

    Args:
        src_dir: the folder with one sub-folder per identity.

    Returns:
        ``(class_names, items, ignored)``: sorted identity names (folders with at least one
        image), ``(path, label)`` pairs in a stable order, and the paths of ignored files.

    Example:
        >>> names, items, ignored = scan_image_folder("faces")  # doctest: +SKIP
    """
    src_dir = os.fspath(src_dir)
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"No such folder. Received: src_dir={src_dir!r}")
    class_names, items, ignored = [], [], []
    for entry in sorted(os.scandir(src_dir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(entry.path)
            continue
        files = []
        for root, dirs, names in os.walk(entry.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                path = os.path.join(root, name)
                if name.startswith("."):
                    continue
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(path)
                else:
                    ignored.append(path)
        if files:
            label = len(class_names)
            class_names.append(entry.name)
            items.extend((path, label) for path in files)
    return class_names, items, ignored


def _prepare(item, options):
    from keras_arcface.data.image_codec import prepare_image

    path, _ = item
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        return prepare_image(data, path, **options), None
    except OSError as error:
        return None, bad_item("unreadable file", path, str(error))
    except DataError as error:  # reported through the policy in the main thread
        return None, error


def convert_image_folder(
    src_dir,
    out_dir,
    *,
    image_size=(112, 112),
    resize=False,
    image_format="keep",
    jpeg_quality=95,
    on_error="raise",
    num_workers=None,
    num_shards=None,
    overwrite=False,
    progress=True,
):
    """Converts an image folder to a sharded TFRecord dataset folder.

    Args:
        src_dir: folder with one sub-folder per identity.
        out_dir: output dataset folder (written atomically).
        image_size: ``(height, width)`` of the stored images.
        resize: resize images of another size instead of treating them as bad data.
        image_format: ``"keep"`` (JPEG stays JPEG byte for byte, others become PNG),
            ``"jpeg"`` or ``"png"``.
        jpeg_quality: quality for JPEG encoding.
        on_error: ``"raise"`` or ``"skip"`` corrupt / wrongly sized images (counted).
        num_workers: decoding threads (default: CPU count).
        num_shards: shard files (default from the image count).
        overwrite: replace an existing dataset in ``out_dir``.
        progress: show a progress bar.

    Returns:
        The manifest dict (``skipped`` holds the skip report).

    Example:
        >>> manifest = convert_image_folder("faces", "faces_tfrecord", resize=True)
        ... # doctest: +SKIP
    """
    from keras_arcface.data.image_codec import check_image_format
    from keras_arcface.data.tfrecord_writer import ImageRecord, prepare_destination, write_records

    check_on_error(on_error)
    check_image_format(image_format)
    prepare_destination(out_dir, overwrite)
    class_names, items, ignored = scan_image_folder(src_dir)
    if not items:
        raise ValueError(
            "No images found: expected one sub-folder per identity holding "
            f"{', '.join(IMAGE_EXTENSIONS)} files. Received: src_dir={os.fspath(src_dir)!r}"
        )
    if ignored:
        logger.warning("ignoring %d non-image file(s), e.g. %s", len(ignored), ignored[0])
    options = {
        "image_size": tuple(image_size),
        "resize": resize,
        "image_format": image_format,
        "jpeg_quality": jpeg_quality,
    }
    report = SkipReport()
    root = os.path.abspath(os.fspath(src_dir))

    def records():
        workers = num_workers or os.cpu_count() or 1
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(items), _WINDOW):
                window = items[start : start + _WINDOW]
                results = pool.map(lambda item: _prepare(item, options), window)
                for (path, label), (prepared, error) in zip(window, results):
                    if error is not None:
                        handle_data_error(on_error, report, error)
                        continue
                    encoded, fmt = prepared
                    yield ImageRecord(
                        encoded,
                        label,
                        identity=class_names[label],
                        source_id=os.path.relpath(path, root),
                        image_format=fmt,
                        height=int(image_size[0]),
                        width=int(image_size[1]),
                    )

    manifest = write_records(
        out_dir,
        records(),
        class_names=class_names,
        num_images=len(items),
        num_shards=num_shards,
        image_size=image_size,
        overwrite=overwrite,
        skipped=report,
        progress=progress,
        description="converting images",
        source={"type": "image_folder", "path": root, "ignored_files": len(ignored)},
    )
    if report.total:
        logger.warning("%s", report.summary())
    return manifest
