"""Reading a photo as it was taken: the one image reader every path of the package uses.

The converters, the ``.bin`` reader and writer, the Embedder and face alignment all
turn files into pixels through :func:`read_photo`, so that a photo gives the same
pixels for training, evaluation and inference:

- EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a phone photo
  stored sideways is read upright.
- Grayscale, bilevel and palette images become RGB (the grey value in all three
  channels); CMYK is converted to RGB by PIL.
- Alpha is **dropped**: the colour channels are kept as stored, not composited on a
  background. Face crops with transparency are rare, and dropping keeps the pixels
  the same as OpenCV's and TensorFlow's decoders give for such files.
- High bit depth is **scaled, never clipped**: a 16-bit value ``v`` becomes
  ``round(v * 255 / 65535)``. PIL keeps 16-bit grey (``I;16``) exactly but cannot
  hold 16-bit colour, so 16-bit RGB/RGBA PNGs and TIFFs are decoded with OpenCV
  (``cv2.imdecode(..., IMREAD_UNCHANGED)``).

Content problems (empty, corrupt, unsupported or 32-bit images) raise
:class:`~keras_arcface.errors.DataError` naming the file; a missing file or a folder
passed as an image raise ``FileNotFoundError`` / ``IsADirectoryError`` naming the path.
"""

import dataclasses
import io
import os
import struct

import numpy as np

from keras_arcface.errors import DataError, bad_item

# EXIF Orientation value -> the transpose that makes the image upright (EXIF 2.32, tag 0x0112;
# the same table as PIL.ImageOps.exif_transpose, which cannot be applied to OpenCV pixels).
_ORIENTATION_TAG = 0x0112
_UPRIGHT = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N")
_WHITE_16 = 65535


@dataclasses.dataclass
class Photo:
    """A decoded photo and what it was stored as.

    Args:
        pixels: uint8 RGB ``[H, W, 3]``, upright.
        format: the file format PIL reported (``"JPEG"``, ``"PNG"``, ...), or ``None`` for arrays.
        mode: the stored PIL mode (``"RGB"``, ``"L"``, ``"I;16"``, ``"CMYK"``, ...).
        bits: bits per channel as stored (8 or 16; 1 for bilevel).
        orientation: the EXIF orientation that was applied (1 = none).
    """

    pixels: np.ndarray
    format: str = None
    mode: str = "RGB"
    bits: int = 8
    orientation: int = 1

    @property
    def unchanged(self):
        """Whether the stored pixels are already upright 8-bit RGB (no conversion was needed)."""
        return self.mode == "RGB" and self.bits == 8 and self.orientation == 1


def scale_16_to_8(values):
    """Scales 16-bit values to 8 bits: ``round(v * 255 / 65535)`` (never clipping).

    Ties cannot occur (``v * 510`` is even, ``65535 * odd`` is odd), so rounding is exact.

    Example:
        >>> scale_16_to_8(np.array([0, 200, 32768, 65280, 65535])).tolist()
        [0, 1, 128, 254, 255]
    """
    values = np.asarray(values).astype(np.uint32)
    return ((values * 255 + _WHITE_16 // 2) // _WHITE_16).astype(np.uint8)


def read_photo(source, name=None):
    """Reads a photo as uint8 RGB ``[H, W, 3]``, upright, scaled to 8 bits.

    Args:
        source: a path (``str``/``os.PathLike``), encoded bytes, or an already decoded
            array (uint8 or uint16; ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]``).
        name: what to call the source in error messages (default: the path, or ``<bytes>``).

    Returns:
        A C-contiguous uint8 ``[H, W, 3]`` array.

    Raises:
        DataError: empty, corrupt, unsupported or 32-bit images (the message names the file).
        FileNotFoundError / IsADirectoryError: the path is missing or is a folder.
        TypeError: an array of another dtype, or a source of another type.

    Example:
        >>> read_photo(np.full((2, 2), 65535, np.uint16))[0, 0].tolist()
        [255, 255, 255]
    """
    return decode_photo(source, name).pixels


def decode_photo(source, name=None):
    """Like :func:`read_photo`, but returns a :class:`Photo` that also says how it was stored.

    The converters use ``Photo.unchanged`` to keep an upright 8-bit RGB JPEG byte for byte.

    Example:
        >>> decode_photo(np.zeros((1, 1), np.uint8)).mode
        'L'
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "<array>")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), name or "<bytes>")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return _from_bytes(_read_file(path), name or path)
    raise TypeError(
        "Expected a photo as a path, encoded bytes or a uint8/uint16 array. "
        f"Received: source={type(source).__name__}"
    )


def _read_file(path):
    if os.path.isdir(path):
        raise IsADirectoryError(f"Expected an image file, got a folder. Received: path={path!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image file not found. Received: path={path!r}")
    with open(path, "rb") as handle:
        return handle.read()


def _from_bytes(data, name):
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise bad_item("empty image file", name, "0 bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            bits = _stored_bits(image)
            if bits == 16 and image.mode not in _SIXTEEN_BIT_GREY:
                return _from_opencv(data, name, image)
            return _from_pil(image, name, bits)
    except DataError:
        raise
    except (Image.DecompressionBombError, MemoryError) as error:
        raise bad_item("image too large", name, str(error)) from None
    except UnidentifiedImageError:
        raise bad_item("corrupt image", name, "not a recognised image format") from None
    # PIL reports damaged data through many types (UnidentifiedImageError is an OSError).
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as error:
        raise bad_item("corrupt image", name, f"{type(error).__name__}: {error}") from None


def _stored_bits(image):
    """Bits per channel as stored, read from PIL's raw mode before decoding (``RGB;16B``)."""
    raw_modes = [tile.args[0] if isinstance(tile.args, tuple) else tile.args for tile in image.tile]
    if image.mode in _SIXTEEN_BIT_GREY or any(";16" in str(raw) for raw in raw_modes):
        return 16
    if image.mode in ("I", "F"):
        return 32
    return 1 if image.mode == "1" else 8


def _orientation(image):
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except (TypeError, ValueError):
        return 1  # a damaged EXIF block: read the pixels as stored


def _from_pil(image, name, bits):
    from PIL import ImageOps

    image.load()
    if bits == 32:
        raise bad_item(
            "unsupported image",
            name,
            f"32-bit PIL mode {image.mode!r} has no defined white level; save it as 8- or 16-bit",
        )
    orientation = _orientation(image)
    upright = ImageOps.exif_transpose(image) if orientation in _UPRIGHT else image
    if bits == 16:
        grey = scale_16_to_8(np.asarray(upright, dtype=np.uint16))
        pixels = np.repeat(grey[..., None], 3, axis=-1)
    else:
        rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
        pixels = np.asarray(rgb, dtype=np.uint8)
    return Photo(np.ascontiguousarray(pixels), image.format, image.mode, bits, orientation)


def _from_opencv(data, name, image):
    """16-bit colour (PIL would truncate it to 8 bits): OpenCV decodes it unchanged."""
    import cv2
    from PIL import Image

    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16:
        raise bad_item("unsupported image", name, f"OpenCV could not decode 16-bit {image.mode}")
    if decoded.ndim == 2:
        decoded = decoded[..., None]
    if decoded.shape[-1] in (1, 2):  # grey (+ alpha): grey in all three channels
        rgb16 = np.repeat(decoded[..., :1], 3, axis=-1)
    else:  # BGR or BGRA: drop alpha, reverse to RGB
        rgb16 = decoded[..., 2::-1]
    orientation = _orientation(image)
    upright = Image.fromarray(np.ascontiguousarray(scale_16_to_8(rgb16)))
    if orientation in _UPRIGHT:
        upright = upright.transpose(getattr(Image.Transpose, _UPRIGHT[orientation]))
    pixels = np.ascontiguousarray(np.asarray(upright, dtype=np.uint8))
    return Photo(pixels, image.format, image.mode, 16, orientation)


def _from_array(array, name):
    if array.dtype == np.uint16:
        array, bits = scale_16_to_8(array), 16
    elif array.dtype == np.uint8:
        bits = 8
    else:
        raise TypeError(
            f"Expected a uint8 or uint16 image array for {name}. Received: dtype={array.dtype}"
        )
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
        array = array[..., :3] if array.shape[-1] != 1 else array[..., 0]
    elif array.ndim == 2:
        mode = "L"
    else:
        raise ValueError(
            f"Expected an image array [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] for {name}. "
            f"Received: shape={array.shape}"
        )
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"Expected a non-empty image for {name}. Received: shape={array.shape}")
    return Photo(np.ascontiguousarray(array), None, mode, bits, 1)
