"""The one photo reader: every stored mode against pixel values worked out by hand.

16-bit values v map to round(v * 255 / 65535); the hand-worked table used throughout:
    0 -> 0, 200 -> 1 (0.778), 32768 -> 128 (127.502), 65280 -> 254 (254.004), 65535 -> 255.
(200 and 65280 tell scaling apart from taking the high byte, which gives 0 and 255.)
"""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from keras_arcface.errors import DataError, InputError
from keras_arcface.faces import decode_photo, read_photo

SIXTEEN = np.array([[0, 200, 32768], [65280, 65535, 0]], np.uint16)
EIGHT = np.array([[0, 1, 128], [254, 255, 0]], np.uint8)  # by hand, see the module docstring


def _pil_bytes(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgb(channel_r, channel_g, channel_b):
    return np.stack([channel_r, channel_g, channel_b], axis=-1)


def _assert_grey(pixels, expected):
    assert pixels.dtype == np.uint8 and pixels.shape == (*expected.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], expected)


@pytest.mark.parametrize(
    "mode_name, encode",
    [
        ("I;16 PNG", lambda: _pil_bytes(Image.fromarray(SIXTEEN), "PNG")),
        ("I;16 TIFF", lambda: _pil_bytes(Image.fromarray(SIXTEEN), "TIFF")),
        ("I;16B TIFF", lambda: _pil_bytes(Image.fromarray(SIXTEEN.astype(">u2")), "TIFF")),
        ("16-bit PGM (PIL mode I)", lambda: _pil_bytes(Image.fromarray(SIXTEEN), "PPM")),
        ("16-bit grey PNG via OpenCV", lambda: cv2.imencode(".png", SIXTEEN)[1].tobytes()),
    ],
)
def test_sixteen_bit_grey_is_scaled_not_clipped(mode_name, encode):
    photo = decode_photo(encode(), mode_name)
    assert photo.bits == 16
    _assert_grey(photo.pixels, EIGHT)


def test_sixteen_bit_grey_of_the_issue_keeps_its_mean():
    # The issue's case: a mid-grey 16-bit PNG (mean 32834) became near white (254.6).
    source = np.full((8, 8), 32834, np.uint16)
    pixels = read_photo(_pil_bytes(Image.fromarray(source), "PNG"))
    assert pixels.mean() == 128.0  # 32834 * 255 / 65535 = 127.759 -> 128


def test_sixteen_bit_rgb_and_rgba_png_and_tiff_are_scaled():
    rgb16 = _rgb(SIXTEEN, 65535 - SIXTEEN, SIXTEEN // 2)
    # By hand: 65535 - v gives 65535, 65335, 32767, 255, 0, 65535 -> 255, 254, 127, 1, 0, 255;
    # v // 2 gives 0, 100, 16384, 32640, 32767, 0 -> 0, 0, 64, 127, 127, 0.
    expected = _rgb(
        EIGHT,
        np.array([[255, 254, 127], [1, 0, 255]], np.uint8),
        np.array([[0, 0, 64], [127, 127, 0]], np.uint8),
    )
    bgr, alpha = rgb16[..., ::-1], np.full((*SIXTEEN.shape, 1), 1000, np.uint16)
    encodings = {
        "RGB PNG": cv2.imencode(".png", bgr)[1].tobytes(),
        "RGBA PNG": cv2.imencode(".png", np.concatenate([bgr, alpha], axis=-1))[1].tobytes(),
        "RGB TIFF": cv2.imencode(".tiff", bgr)[1].tobytes(),
    }
    for name, data in encodings.items():
        photo = decode_photo(data, name)
        assert photo.bits == 16, name
        np.testing.assert_array_equal(photo.pixels, expected, err_msg=name)


def test_sixteen_bit_arrays_are_scaled_too():
    _assert_grey(read_photo(SIXTEEN), EIGHT)
    with pytest.raises(TypeError, match="Received: dtype=float32"):
        read_photo(SIXTEEN.astype(np.float32))


def test_eight_bit_modes_become_rgb():
    grey = EIGHT
    _assert_grey(read_photo(_pil_bytes(Image.fromarray(grey), "PNG")), grey)
    bilevel = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    _assert_grey(read_photo(_pil_bytes(bilevel, "PNG")), np.array([[0, 255]], np.uint8))
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putdata([1, 0])
    pixels = read_photo(_pil_bytes(palette, "PNG"))
    assert pixels.tolist() == [[[200, 100, 50], [10, 20, 30]]]
    # CMYK (0, 255, 255, 0) is red; (0, 0, 0, 255) is black; (0, 0, 0, 0) is white.
    cmyk = Image.frombytes("CMYK", (3, 1), bytes([0, 255, 255, 0, 0, 0, 0, 255, 0, 0, 0, 0]))
    pixels = read_photo(_pil_bytes(cmyk, "TIFF"))
    assert pixels.tolist() == [[[255, 0, 0], [0, 0, 0], [255, 255, 255]]]


def test_alpha_is_dropped_not_composited():
    rgba = np.array([[[250, 10, 20, 0], [1, 2, 3, 128]]], np.uint8)
    pixels = read_photo(_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert pixels.tolist() == [[[250, 10, 20], [1, 2, 3]]]
    grey_alpha = Image.fromarray(np.array([[[70, 0], [90, 255]]], np.uint8), "LA")
    _assert_grey(read_photo(_pil_bytes(grey_alpha, "PNG")), np.array([[70, 90]], np.uint8))


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def test_exif_orientation_is_applied():
    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    data = _pil_bytes(Image.fromarray(stored), "PNG", exif=_exif(6))
    photo = decode_photo(data, "rotated.png")
    # Orientation 6: the stored top row is the right-hand column when viewed (clockwise turn).
    assert photo.orientation == 6 and not photo.unchanged
    np.testing.assert_array_equal(photo.pixels, np.rot90(stored, k=-1))
    data = _pil_bytes(Image.fromarray(stored), "PNG", exif=_exif(2))
    np.testing.assert_array_equal(read_photo(data), stored[:, ::-1])


def _with_exif_chunk(png, exif_bytes):
    """Inserts an eXIf chunk after IHDR (OpenCV cannot write one for 16-bit colour)."""
    chunk = b"eXIf" + exif_bytes
    packed = struct.pack(">I", len(exif_bytes)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + packed + png[ihdr_end:]


def test_exif_orientation_on_sixteen_bit_colour():
    rgb16 = _rgb(SIXTEEN, SIXTEEN, SIXTEEN)
    png = cv2.imencode(".png", rgb16)[1].tobytes()
    exif_bytes = _exif(3).tobytes()  # 3: upside down (rotate 180)
    photo = decode_photo(_with_exif_chunk(png, exif_bytes), "rot180.png")
    assert photo.bits == 16 and photo.orientation == 3
    np.testing.assert_array_equal(photo.pixels, _rgb(EIGHT, EIGHT, EIGHT)[::-1, ::-1])


def test_bad_files_give_errors_naming_them(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_pil_bytes(Image.fromarray(EIGHT), "PNG")[:40])
    floats = tmp_path / "float.tif"
    Image.fromarray(np.zeros((2, 2), np.float32), "F").save(floats)
    cases = {
        empty: "empty image file: .*empty.png",
        text: "corrupt image: .*notes.jpg \\(not a recognised image format\\)",
        truncated: "corrupt image: .*cut.png",
        floats: "unsupported image: .*float.tif.*32-bit",
    }
    for path, pattern in cases.items():
        with pytest.raises(DataError, match=pattern):
            read_photo(path)
        assert isinstance(DataError("x"), InputError)
    with pytest.raises(IsADirectoryError, match="got a folder.*Received: path="):
        read_photo(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_photo(tmp_path / "missing.png")
    with pytest.raises(TypeError, match="Received: source=int"):
        read_photo(3)


def test_one_pixel_images_are_read():
    one = _pil_bytes(Image.fromarray(np.array([[[9, 8, 7]]], np.uint8)), "PNG")
    assert read_photo(one).tolist() == [[[9, 8, 7]]]
    with pytest.raises(ValueError, match="non-empty.*Received: shape=\\(0, 3, 3\\)"):
        read_photo(np.zeros((0, 3, 3), np.uint8))
