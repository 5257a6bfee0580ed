"""``convert images|bin ... --align``: raw photos are detected and aligned on the way in."""

import os
import shutil

import numpy as np
import pytest

from keras_arcface.faces import AlignTransform, FaceAligner

DATA = os.path.join(os.path.dirname(__file__), "data", "faces")


@pytest.fixture(scope="module")
def transform():
    return AlignTransform()


@pytest.fixture()
def raw(tmp_path):
    root = tmp_path / "raw"
    for person, names in {
        "rob": ("Rob_Lowe_0001.jpg", "Rob_Lowe_0002.jpg"),
        "nathalie": ("Nathalie_Baye_0002.jpg", "no_face.png"),
    }.items():
        (root / person).mkdir(parents=True)
        for name in names:
            shutil.copy(os.path.join(DATA, name), root / person / name)
    return root


def _expected_crop(transform, path):
    aligned = FaceAligner(detector=transform.detector).align(str(path), face="largest")
    return aligned[0].crop


def test_convert_images_align_stores_the_aligned_crops(raw, tmp_path, transform):
    import tensorflow as tf

    from keras_arcface.data.image_folder import convert_image_folder
    from keras_arcface.data.schema import feature_spec, read_manifest, shard_paths

    out = tmp_path / "data"
    manifest = convert_image_folder(
        raw,
        out,
        transform=transform,
        image_format="png",
        on_error="skip",
        progress=False,
        num_workers=2,
    )
    assert manifest["num_images"] == 3
    assert manifest["skipped"]["by_reason"] == {"no face": 1}
    records = {}
    for raw_record in tf.data.TFRecordDataset(shard_paths(str(out), read_manifest(str(out)))):
        example = tf.io.parse_single_example(raw_record, feature_spec())
        pixels = tf.io.decode_image(example["image/encoded"], channels=3).numpy()
        records[example["image/source_id"].numpy().decode()] = pixels
    assert len(records) == 3
    for source_id, pixels in records.items():
        assert pixels.shape == (112, 112, 3)
        expected = _expected_crop(transform, raw / source_id)
        # Stored as PNG: exactly the pixels of aligning the photo directly.
        np.testing.assert_array_equal(pixels, expected)


@pytest.mark.slow
def test_convert_bin_align(raw, tmp_path, transform):
    from keras_arcface.data.pairs import PairList, write_pairs_bin
    from keras_arcface.data.verification_bin import load_bin

    paths = [str(raw / "rob" / "Rob_Lowe_0001.jpg"), str(raw / "rob" / "Rob_Lowe_0002.jpg")]
    paths += [str(raw / "rob" / "Rob_Lowe_0001.jpg"), str(raw / "nathalie" / "no_face.png")]
    pairs = PairList(paths, [True, False])
    path, report = write_pairs_bin(
        pairs, tmp_path / "pairs.bin", transform=transform, image_format="png", on_error="skip"
    )
    assert report.total == 1  # the pair with the no-face photo is dropped and counted
    loaded = load_bin(path)
    assert loaded.images.shape == (2, 112, 112, 3)
    expected = _expected_crop(transform, paths[0])
    np.testing.assert_array_equal(loaded.images[0], expected)


@pytest.mark.slow
def test_convert_command_align_flag(raw, tmp_path, capsys):
    from keras_arcface.cli import main

    out = tmp_path / "cli"
    status = main(
        ["convert", "images", str(raw), str(out), "--align", "--quiet", "--on-error", "skip"]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "wrote 3 images of 2 identities" in printed and '"no face": 1' in printed
