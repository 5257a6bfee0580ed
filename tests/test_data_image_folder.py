"""Image-folder conversion: formats, grayscale, resize, ignored files, bad images, atomicity,
and the convert command."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from test_data_helpers import noise_image, smooth_image

from keras_arcface.cli import main as cli_main
from keras_arcface.data import DataError, convert_image_folder, make_dataset, read_manifest


def _collect(data_dir):
    images, labels = [], []
    for x, y in make_dataset(data_dir, 4, training=False):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels)


def _folder(root, files):
    for relative, array, fmt in files:
        path = root / relative
        os.makedirs(path.parent, exist_ok=True)
        Image.fromarray(array).save(path, format=fmt)


def test_formats_and_grayscale_are_stored_as_rgb(tmp_path):
    gray = noise_image(5, channels=1)
    files = [
        ("alice/a.bmp", noise_image(1), "BMP"),
        ("alice/b.pgm", gray, "PPM"),  # PIL writes 8-bit grayscale as PGM
        ("bob/c.png", noise_image(2), "PNG"),
        ("bob/d.jpg", smooth_image(3), "JPEG"),
    ]
    _folder(tmp_path / "src", files)
    (tmp_path / "src" / "bob" / "notes.txt").write_text("not an image")
    manifest = convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    assert manifest["num_images"] == 4 and manifest["num_classes"] == 2
    assert manifest["source"]["ignored_files"] == 1
    images, labels = _collect(tmp_path / "out")
    lossless = {
        noise_image(1).tobytes(): 0,
        np.dstack([gray] * 3).tobytes(): 0,
        noise_image(2).tobytes(): 1,
    }
    found = {
        image.tobytes(): label
        for image, label in zip(images, labels)
        if image.tobytes() in lossless
    }
    assert found == lossless  # BMP, PGM (as R=G=B) and PNG pixels exact, labels right
    assert sorted(labels.tolist()) == [0, 0, 1, 1]


def test_wrong_size_is_bad_data_unless_resized(tmp_path):
    _folder(
        tmp_path / "src",
        [("a/0.png", noise_image(0), "PNG"), ("a/1.png", noise_image(1, size=150), "PNG")],
    )
    with pytest.raises(DataError, match="unexpected image size.*150x150"):
        convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    manifest = convert_image_folder(
        tmp_path / "src", tmp_path / "out", progress=False, on_error="skip"
    )
    assert manifest["num_images"] == 1
    assert manifest["skipped"]["by_reason"] == {"unexpected image size": 1}
    manifest = convert_image_folder(
        tmp_path / "src", tmp_path / "resized", progress=False, resize=True
    )
    assert manifest["num_images"] == 2
    images, _ = _collect(tmp_path / "resized")
    assert images.shape == (2, 112, 112, 3)


def test_corrupt_jpeg_raises_or_is_skipped(tmp_path):
    _folder(
        tmp_path / "src",
        [("a/0.jpg", smooth_image(0), "JPEG"), ("b/0.jpg", smooth_image(1), "JPEG")],
    )
    good = (tmp_path / "src" / "b" / "0.jpg").read_bytes()
    (tmp_path / "src" / "b" / "1.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (tmp_path / "src" / "b" / "2.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="corrupt image"):
        convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    manifest = convert_image_folder(
        tmp_path / "src", tmp_path / "out", progress=False, on_error="skip"
    )
    assert manifest["num_images"] == 2
    assert manifest["skipped"] == {
        "total": 2,
        "by_reason": {"corrupt image": 2},
        "examples": {"corrupt image": [str(tmp_path / "src" / "b" / f"{k}.jpg") for k in (1, 2)]},
    }


def test_output_is_atomic_and_never_clobbers(tmp_path):
    _folder(tmp_path / "src", [("a/0.png", noise_image(0), "PNG")])
    (tmp_path / "src" / "a" / "1.png").write_bytes(b"broken")
    out = tmp_path / "out"
    with pytest.raises(DataError):
        convert_image_folder(tmp_path / "src", out, progress=False)
    assert os.listdir(tmp_path) == ["src"]  # no half-written folder, no staging left over
    convert_image_folder(tmp_path / "src", out, progress=False, on_error="skip")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_image_folder(tmp_path / "src", out, progress=False, on_error="skip")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not part of a TFRecord dataset"):
        convert_image_folder(
            tmp_path / "src", tmp_path / "other", progress=False, on_error="skip", overwrite=True
        )
    manifest = convert_image_folder(
        tmp_path / "src", out, progress=False, on_error="skip", overwrite=True
    )
    assert read_manifest(out)["created"] == manifest["created"]


def test_convert_command(tmp_path, capsys):
    _folder(
        tmp_path / "src",
        [("a/0.png", noise_image(0), "PNG"), ("b/0.png", noise_image(1, size=64), "PNG")],
    )
    code = cli_main(
        ["convert", "images", str(tmp_path / "src"), str(tmp_path / "out"), "--resize", "--quiet"]
    )
    assert code == 0
    assert "wrote 2 images of 2 identities" in capsys.readouterr().out
    code = cli_main(["convert", "check", str(tmp_path / "out")])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_convert_bin_command_from_folder(tmp_path, capsys):
    for person in range(2):
        _folder(
            tmp_path / "faces",
            [(f"p{person}/{k}.png", noise_image(10 * person + k), "PNG") for k in range(3)],
        )
    code = cli_main(
        [
            "convert",
            "bin",
            str(tmp_path / "v.bin"),
            "--folder",
            str(tmp_path / "faces"),
            "--num-pairs",
            "6",
        ]
    )
    assert code == 0 and "wrote" in capsys.readouterr().out
    from keras_arcface.data import load_bin

    assert load_bin(tmp_path / "v.bin").issame.sum() == 3


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    # Issue 16, item 1: a 16-bit mid-grey PNG was stored as near white (mean 254.6).
    # By hand: 32834 * 255 / 65535 = 127.76 -> 128; 200 -> 0.78 -> 1; 65280 -> 254.004 -> 254.
    source = np.full((112, 112), 32834, np.uint16)
    source[0, :2] = (200, 65280)
    (tmp_path / "src" / "alice").mkdir(parents=True)
    Image.fromarray(source).save(tmp_path / "src" / "alice" / "grey16.png")
    convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    images, _ = _collect(tmp_path / "out")
    stored = images[0]
    assert stored[0, 0].tolist() == [1, 1, 1] and stored[0, 1].tolist() == [254, 254, 254]
    assert np.all(stored[1:] == 128)


def test_exif_rotated_jpeg_is_stored_upright(tmp_path):
    stored = np.zeros((112, 112, 3), np.uint8)
    stored[:, :56] = 255  # left half white as stored; orientation 6 turns it to the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "src" / "alice").mkdir(parents=True)
    Image.fromarray(stored).save(tmp_path / "src" / "alice" / "a.jpg", quality=100, exif=exif)
    convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    images, _ = _collect(tmp_path / "out")
    assert images[0, :50].mean() > 250 and images[0, 62:].mean() < 5


def test_non_utf8_names_are_stored_escaped_not_fatal(tmp_path):
    # Issue 16, item 4: a Latin-1 file name aborted the whole conversion (UnicodeEncodeError).
    root = os.fsencode(tmp_path / "src")
    os.makedirs(os.path.join(root, b"caf\xe9"))
    os.makedirs(os.path.join(root, b"bob"))
    Image.fromarray(noise_image(1)).save(os.path.join(root, b"caf\xe9", b"\xff1.png"))
    Image.fromarray(noise_image(2)).save(os.path.join(root, b"bob", b"2.png"))
    manifest = convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    assert manifest["num_images"] == 2 and manifest["skipped"]["total"] == 0
    labels_tsv = (tmp_path / "out" / "labels.tsv").read_text(encoding="utf-8")
    assert labels_tsv.splitlines() == ["0\tbob", "1\tcaf\\xe9"]
    import tensorflow as tf

    from keras_arcface.data.schema import KEY_IDENTITY, KEY_SOURCE_ID, shard_paths

    stored = set()
    for serialized in tf.data.TFRecordDataset(shard_paths(tmp_path / "out")):
        feature = tf.train.Example.FromString(serialized.numpy()).features.feature
        stored.add(
            (
                feature[KEY_IDENTITY].bytes_list.value[0].decode(),
                feature[KEY_SOURCE_ID].bytes_list.value[0].decode(),
            )
        )
    assert stored == {("bob", "bob/2.png"), ("caf\\xe9", "caf\\xe9/\\xff1.png")}


def test_empty_identity_folders_are_counted_and_named(tmp_path, caplog):
    _folder(tmp_path / "src", [("alice/a.png", noise_image(1), "PNG")])
    (tmp_path / "src" / "nobody").mkdir()
    (tmp_path / "src" / "only_notes").mkdir()
    (tmp_path / "src" / "only_notes" / "readme.txt").write_text("no images here")
    with caplog.at_level("WARNING", logger="keras_arcface.data"):
        manifest = convert_image_folder(tmp_path / "src", tmp_path / "out", progress=False)
    assert manifest["num_classes"] == 1
    assert manifest["source"]["empty_identity_folders"] == 2
    assert manifest["source"]["empty_identity_examples"] == ["nobody", "only_notes"]
    assert "2 identity folder(s) holding no image" in caplog.text and "nobody" in caplog.text


def test_the_per_item_transform_hook(tmp_path):
    """The converter core's transform (where face alignment plugs in) sees each image's
    decoded pixels; a DataError it raises is a bad item under the on_error policy."""
    from keras_arcface.data.errors import bad_item

    _folder(
        tmp_path / "src",
        [("a/keep.jpg", smooth_image(1), "JPEG"), ("a/reject.png", noise_image(2), "PNG")],
    )
    seen = []

    def flip_or_reject(pixels, name):
        seen.append((os.path.basename(name), pixels.shape, pixels.dtype))
        if name.endswith("reject.png"):
            raise bad_item("no face found", name)
        return np.ascontiguousarray(pixels[::-1])

    with pytest.raises(DataError, match="no face found: .*reject.png"):
        convert_image_folder(tmp_path / "src", tmp_path / "o1", transform=flip_or_reject)
    manifest = convert_image_folder(
        tmp_path / "src",
        tmp_path / "o2",
        transform=flip_or_reject,
        on_error="skip",
        image_format="png",
        progress=False,
    )
    assert manifest["skipped"]["by_reason"] == {"no face found": 1}
    assert ("keep.jpg", (112, 112, 3), np.uint8) in seen
    images, _ = _collect(tmp_path / "o2")
    decoded = np.asarray(Image.open(tmp_path / "src" / "a" / "keep.jpg").convert("RGB"))
    np.testing.assert_array_equal(images[0], decoded[::-1])  # PNG: lossless after the flip
