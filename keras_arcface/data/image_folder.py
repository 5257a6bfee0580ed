"""Convert an image folder (one sub-folder per identity) to a TFRecord dataset.

::

    faces/
      alice/ 001.jpg 002.png ...
      bob/   a.bmp b.pgm ...

Labels follow the sorted sub-folder names (``labels.tsv`` keeps the map). JPEG, PNG, BMP,
PGM/PPM (and anything else PIL reads with those extensions) are accepted; grayscale and
palette images are stored as RGB. Files with other extensions are ignored and counted, and
so are identity folders holding no image (they get no label). The conversion itself runs
through the converter core, :mod:`keras_arcface.data.convert`.
"""

import os

from keras_arcface.data.errors import DataError, check_on_error, logger

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


def scan_image_folder(src_dir):
    """Lists identities and image files of an image folder.

    Args:
        src_dir: the folder with one sub-folder per identity.

    Returns:
        ``(class_names, items, ignored)``: sorted identity names (folders with at least one
        image), ``(path, label)`` pairs in a stable order, and the paths of ignored files.
        :func:`scan_identity_folders` also lists the identity folders without images.

    Example:
        >>> names, items, ignored = scan_image_folder("faces")  # doctest: +SKIP
    """
    class_names, items, ignored, _ = scan_identity_folders(src_dir)
    return class_names, items, ignored


def scan_identity_folders(src_dir):
    """Like :func:`scan_image_folder`, plus the identity folders holding no image.

    Returns:
        ``(class_names, items, ignored, empty)``; ``empty`` lists the paths of identity
        folders left out because they hold no image (they get no label).

    Example:
        >>> names, items, ignored, empty = scan_identity_folders("faces")  # doctest: +SKIP
    """
    src_dir = os.fspath(src_dir)
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"No such folder. Received: src_dir={src_dir!r}")
    class_names, items, ignored, empty = [], [], [], []
    for entry in sorted(os.scandir(src_dir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(entry.path)
            continue
        files = _identity_files(entry.path, ignored)
        if files:
            label = len(class_names)
            class_names.append(entry.name)
            items.extend((path, label) for path in files)
        else:
            empty.append(entry.path)
    return class_names, items, ignored, empty


def _identity_files(folder, ignored):
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = os.path.join(root, name)
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(path)
            else:
                ignored.append(path)
    return files


def image_folder_source(src_dir):
    """The image folder as a :class:`~keras_arcface.data.convert.Source` for the converter core.

    Empty identity folders and non-image files are counted in the provenance (and logged).

    Example:
        >>> source = image_folder_source("faces")  # doctest: +SKIP
    """
    from keras_arcface.data.convert import Source, SourceImage, safe_text

    class_names, items, ignored, empty = scan_identity_folders(src_dir)
    if not items:
        raise DataError(
            "No images found: expected one sub-folder per identity holding "
            f"{', '.join(IMAGE_EXTENSIONS)} files. Received: src_dir={os.fspath(src_dir)!r}"
        )
    if ignored:
        logger.warning("ignoring %d non-image file(s), e.g. %s", len(ignored), ignored[0])
    if empty:
        logger.warning(
            "left out %d identity folder(s) holding no image, e.g. %s", len(empty), empty[0]
        )
    root = os.path.abspath(os.fspath(src_dir))

    def load(item):
        path, label = item
        with open(path, "rb") as handle:
            data = handle.read()
        return SourceImage(data, label, os.path.relpath(path, root), name=path)

    provenance = {
        "type": "image_folder",
        "path": safe_text(root),
        "ignored_files": len(ignored),
        "empty_identity_folders": len(empty),
        "empty_identity_examples": [safe_text(os.path.basename(p)) for p in empty[:10]],
    }
    return Source(
        items=items,
        load=load,
        class_names=class_names,
        description="converting images",
        provenance=provenance,
        name_of=lambda item: item[0],
    )


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
    transform=None,
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
        transform: optional per-image ``transform(pixels, name) -> pixels`` (see
            :class:`~keras_arcface.data.convert.StoreOptions`).

    Returns:
        The manifest dict (``skipped`` holds the skip report; ``source`` counts ignored
        files and empty identity folders).

    Example:
        >>> manifest = convert_image_folder("faces", "faces_tfrecord", resize=True)
        ... # doctest: +SKIP
    """
    from keras_arcface.data.convert import StoreOptions, convert
    from keras_arcface.data.tfrecord_writer import prepare_destination

    check_on_error(on_error)
    options = StoreOptions(image_size, resize, image_format, jpeg_quality, transform)
    prepare_destination(out_dir, overwrite)
    return convert(
        image_folder_source(src_dir),
        out_dir,
        options=options,
        on_error=on_error,
        num_workers=num_workers,
        num_shards=num_shards,
        overwrite=overwrite,
        progress=progress,
    )
