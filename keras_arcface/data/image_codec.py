"""Checking and (re-)encoding one image for a TFRecord dataset, shared by the converters."""

import io

from keras_arcface.data.errors import bad_item

IMAGE_FORMATS = ("keep", "jpeg", "png")


def check_image_format(image_format):
    """Validates an output image format choice (``keep``, ``jpeg`` or ``png``)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(
            f"`image_format` must be one of {IMAGE_FORMATS}. "
            f"Received: image_format={image_format!r}"
        )
    return image_format


def prepare_image(
    data,
    source,
    *,
    image_size=(112, 112),
    resize=False,
    image_format="keep",
    jpeg_quality=95,
    transform=None,
):
    """Decodes, checks and, when needed, re-encodes one image for storage.

    The image is read with :func:`keras_arcface.faces.read_photo` (EXIF orientation applied,
    grey/palette/CMYK/alpha to RGB, 16-bit scaled to 8 bits). Upright 8-bit RGB JPEGs of the
    right size are stored byte for byte (no generation loss). Anything else (grayscale,
    palette, CMYK, alpha, 16-bit, rotated by EXIF, BMP/PGM, resized) is encoded from the
    decoded pixels: JPEG for JPEG sources, PNG (lossless) for the others, unless
    ``image_format`` forces one.

    Args:
        data: the encoded file contents.
        source: the item's name for error messages.
        image_size: ``(height, width)`` the stored image must have.
        resize: resize images of another size (bicubic) instead of rejecting them.
        image_format: ``"keep"``, ``"jpeg"`` or ``"png"``.
        jpeg_quality: quality when encoding JPEG.
        transform: optional ``transform(pixels, source) -> pixels`` applied to the decoded
            uint8 RGB ``[H, W, 3]`` pixels before the size check (face alignment hooks in
            here); it raises ``DataError`` for an item it cannot handle.

    Returns:
        ``(encoded bytes, "jpeg" | "png")``.

    Raises:
        DataError: corrupt/undecodable image, or wrong size without ``resize``.

    Example:
        >>> encoded, fmt = prepare_image(open("a.jpg", "rb").read(), "a.jpg")  # doctest: +SKIP
    """
    from PIL import Image

    from keras_arcface.faces.photos import decode_photo

    height, width = int(image_size[0]), int(image_size[1])
    photo = decode_photo(bytes(data), source)
    pixels = photo.pixels if transform is None else _transformed(transform, photo.pixels, source)
    rgb = Image.fromarray(pixels)
    size_ok = rgb.size == (width, height)
    if not size_ok and not resize:
        raise bad_item(
            "unexpected image size",
            source,
            f"{rgb.size[1]}x{rgb.size[0]}, expected {height}x{width}; resize=True / --resize "
            "resizes",
        )
    is_jpeg = (photo.format or "").upper() in ("JPEG", "MPO")
    target = image_format if image_format != "keep" else ("jpeg" if is_jpeg else "png")
    if is_jpeg and photo.unchanged and transform is None and size_ok and target == "jpeg":
        return bytes(data), "jpeg"
    if not size_ok:
        rgb = rgb.resize((width, height), Image.BICUBIC)
    buffer = io.BytesIO()
    if target == "jpeg":
        rgb.save(buffer, format="JPEG", quality=int(jpeg_quality))
    else:
        rgb.save(buffer, format="PNG")
    return buffer.getvalue(), target


def _transformed(transform, pixels, source):
    import numpy as np

    result = np.asarray(transform(pixels, source))
    if result.dtype != np.uint8 or result.ndim != 3 or result.shape[-1] != 3:
        raise TypeError(
            f"A converter transform must return uint8 RGB [H, W, 3] pixels ({source}). "
            f"Received: dtype={result.dtype}, shape={result.shape}"
        )
    return np.ascontiguousarray(result)
