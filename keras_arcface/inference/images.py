"""Turning user images (arrays, files, encoded bytes) into the model's input batch."""

import os
import warnings

import numpy as np

from keras_arcface.inference.contract import IMAGE_SIZE

_GRAYSCALE_HINT = (
    "Face models take RGB images; convert a grayscale image explicitly if that is what you "
    "mean, e.g. np.repeat(gray[..., None], 3, axis=-1)."
)


def load_image(source):
    """Decodes one image file (or encoded bytes) into a uint8 RGB array ``[H, W, 3]``.

    Files go through :func:`keras_arcface.faces.read_photo`, the reader the converters use,
    so a photo gives the same pixels at inference as in training: EXIF orientation applied,
    grayscale/palette/CMYK to RGB (grey in all three channels, as the converters store it),
    alpha dropped, 16-bit images scaled to 8 bits (never clipped).

    Args:
        source: Path (``str``/``os.PathLike``) of a JPEG/PNG/TIFF/... file, or its encoded bytes.

    Raises:
        FileNotFoundError / IsADirectoryError: the path is missing or is a folder.
        ValueError: the file is not a readable image (a ``DataError`` naming it).

    Example:
    >>> pixels = load_image("face.jpg")  # doctest: +SKIP
    >>> pixels.shape
    (112, 112, 3)
    """
    from keras_arcface.errors import DataError
    from keras_arcface.faces.photos import read_photo

    is_bytes = isinstance(source, (bytes, bytearray))
    name = "<bytes>" if is_bytes else os.fspath(source)
    try:
        return read_photo(source, name)
    except DataError as error:
        raise DataError(
            f"Could not decode the image ({error}). Received: path={name!r}",
            reason=error.reason,
            item=name,
            detail=error.detail,
        ) from None


def _check_pixels(array, where):
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TypeError(
            f"Expected uint8 or float32 pixel values 0..255. Received: dtype={array.dtype}"
        )
    if array.size == 0:
        raise ValueError(f"Expected a non-empty image. Received: shape={array.shape}")
    low, high = float(np.min(array)), float(np.max(array))
    if not np.isfinite(low) or not np.isfinite(high) or low < 0.0 or high > 255.0:
        raise ValueError(
            f"Expected pixel values in 0..255 (RGB, not normalized) in {where}. "
            f"Received: value_range=({low}, {high})"
        )
    if np.issubdtype(array.dtype, np.floating) and high <= 1.0 and high > 0.0:
        warnings.warn(
            f"Pixel values in {where} lie in 0..1; the model expects 0..255 (multiply by 255).",
            UserWarning,
            stacklevel=4,
        )


def _resize(image, size):
    from PIL import Image

    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), mode="F").resize(
                (size, size), Image.BILINEAR
            )
        )
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def _as_image_array(item, index):
    if isinstance(item, (str, bytes, bytearray, os.PathLike)):
        return load_image(item)
    array = np.asarray(item)
    if array.ndim != 3:
        raise ValueError(
            f"Expected each image as an [H, W, 3] array (item {index}). "
            f"Received: shape={array.shape}"
        )
    return array


def _check_channels(array):
    if array.ndim == 2 or array.shape[-1] == 1:
        raise ValueError(
            f"Expected RGB images with 3 channels, got grayscale. {_GRAYSCALE_HINT} "
            f"Received: shape={array.shape}"
        )
    if array.shape[-1] != 3:
        raise ValueError(
            f"Expected RGB images with 3 channels (NHWC; drop alpha first). "
            f"Received: shape={array.shape}"
        )


def to_batch(images, image_size=IMAGE_SIZE):
    """Turns images in any accepted form into a float32 ``[B, S, S, 3]`` batch, values 0..255.

    Accepted: one ``[H, W, 3]`` array, an ``[N, H, W, 3]`` batch (uint8 or float, RGB, values
    0..255), a file path or encoded bytes, or a list mixing those. Images of another size are
    resized (bilinear) to ``image_size`` with a warning: the models expect aligned face crops.

    Args:
        images: The images, as above.
        image_size: Side of the model's square input (112).

    Example:
    >>> to_batch(np.zeros((112, 112, 3), np.uint8)).shape
    (1, 112, 112, 3)
    """
    if isinstance(images, (str, bytes, bytearray, os.PathLike)):
        items = [load_image(images)]
    elif isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("Expected at least one image. Received: images=[]")
        items = [_as_image_array(item, i) for i, item in enumerate(images)]
    else:
        array = np.asarray(images)
        if array.ndim == 2:
            _check_channels(array)
        if array.ndim not in (3, 4):
            raise ValueError(
                "Expected an [H, W, 3] image or an [N, H, W, 3] batch. "
                f"Received: shape={array.shape}"
            )
        items = [array] if array.ndim == 3 else list(array)
        if array.ndim == 4 and array.shape[0] == 0:
            raise ValueError(f"Expected at least one image. Received: shape={array.shape}")
    resized_from = set()
    batch = []
    for item in items:
        _check_channels(item)
        _check_pixels(item, "the images")
        item = item.astype(np.float32, copy=False)
        if item.shape[:2] != (image_size, image_size):
            resized_from.add(f"{item.shape[0]}x{item.shape[1]}")
            item = np.clip(_resize(item, image_size), 0.0, 255.0)
        batch.append(item)
    if resized_from:
        warnings.warn(
            f"Resized images of size {', '.join(sorted(resized_from))} to "
            f"{image_size}x{image_size} (bilinear). The model expects aligned {image_size}x"
            f"{image_size} face crops; resizing other crops lowers accuracy.",
            UserWarning,
            stacklevel=3,
        )
    return np.stack(batch).astype(np.float32, copy=False)
