"""make_dataset: round trips, determinism, resume, sharding, augmentation, bad data."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_data_helpers import encode, noise_image, smooth_image, write_raw_dataset

from keras_arcface.data import (
    AugmentConfig,
    ErrorCounter,
    convert_image_folder,
    make_dataset,
    read_manifest,
)

NUM_CLASSES = 4
PER_CLASS = 6


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
    """An image folder of noise PNGs (lossless) plus the expected pixels per file."""
    root = tmp_path_factory.mktemp("faces")
    expected = {}
    for label in range(NUM_CLASSES):
        os.makedirs(root / f"person_{label}")
        for k in range(PER_CLASS):
            image = noise_image(100 * label + k)
            Image.fromarray(image).save(root / f"person_{label}" / f"{k}.png")
            expected[image.tobytes()] = label
    return root, expected


@pytest.fixture(scope="module")
def png_dataset(png_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "png"
    convert_image_folder(png_folder[0], out, num_shards=4, progress=False)
    return out


def _collect(dataset):
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def test_png_round_trip_is_exact(png_folder, png_dataset):
    _, expected = png_folder
    images, labels = _collect(make_dataset(png_dataset, 5, training=False))
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.shape == (NUM_CLASSES * PER_CLASS, 112, 112, 3)
    seen = set()
    for image, label in zip(images, labels):
        key = image.astype(np.uint8).tobytes()
        assert np.array_equal(image, np.round(image))  # integer-valued 0..255 floats
        assert expected[key] == label  # pixels and label both survived
        seen.add(key)
    assert len(seen) == len(expected)


def test_manifest_and_label_map(png_dataset):
    manifest = read_manifest(png_dataset)
    assert manifest["num_images"] == NUM_CLASSES * PER_CLASS
    assert manifest["num_classes"] == NUM_CLASSES
    assert manifest["image_size"] == [112, 112]
    assert sum(s["count"] for s in manifest["shards"]) == manifest["num_images"]
    lines = (png_dataset / "labels.tsv").read_text().splitlines()
    assert lines == [f"{k}\tperson_{k}" for k in range(NUM_CLASSES)]


def test_jpeg_round_trip_keeps_bytes_and_pixels(tmp_path):
    root = tmp_path / "faces"
    os.makedirs(root / "a")
    source = smooth_image(1)
    data = encode(source, "JPEG", quality=90)
    (root / "a" / "0.jpg").write_bytes(data)
    out = tmp_path / "ds"
    convert_image_folder(root, out, progress=False)
    record = next(iter(tf.data.TFRecordDataset(str(out / read_manifest(out)["shards"][0]["file"]))))
    example = tf.train.Example.FromString(record.numpy())
    assert example.features.feature["image/encoded"].bytes_list.value[0] == data
    image, label = next(iter(make_dataset(out, 1, training=False)))
    reference = np.asarray(Image.open(out.parent / "faces" / "a" / "0.jpg"), dtype=np.float32)
    assert label.numpy().tolist() == [0]
    # Same bytes; libjpeg builds may upsample chroma differently by a few levels.
    difference = np.abs(image.numpy()[0] - reference)
    assert difference.mean() < 2.0 and difference.max() <= 8.0


def test_training_stream_shapes_and_determinism(png_dataset):
    def first_batches(seed):
        dataset = make_dataset(png_dataset, 8, seed=seed, deterministic=True)
        return [(x.numpy(), y.numpy()) for x, y in dataset.take(6)]

    a, b, c = first_batches(3), first_batches(3), first_batches(4)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (8, 112, 112, 3) and ya.shape == (8,)
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert any(not np.array_equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))
    # 6 batches of 8 = 2 epochs of 24: each epoch holds every image once, in a new order.
    labels = np.concatenate([y for _, y in a])
    assert sorted(labels[:24].tolist()) == sorted(labels[24:].tolist())
    assert labels[:24].tolist() != labels[24:].tolist()


def test_resume_with_start_epoch_and_skip(png_dataset):
    full = make_dataset(png_dataset, 4, seed=7, deterministic=True)
    stream = [(x.numpy(), y.numpy()) for x, y in full.take(12)]  # 2 epochs of 6 batches
    # Resume in epoch 1 after 2 of its batches.
    resumed = make_dataset(
        png_dataset, 4, seed=7, deterministic=True, start_epoch=1, skip_examples=8
    )
    tail = [(x.numpy(), y.numpy()) for x, y in resumed.take(4)]
    for (xs, ys), (xr, yr) in zip(stream[8:], tail):
        assert np.array_equal(ys, yr) and np.array_equal(xs, xr)


def test_stream_ignores_a_global_tf_seed(png_dataset):
    import tensorflow as tf

    def labels(dataset):
        return np.concatenate([y.numpy() for _, y in dataset.take(4)])

    expected = labels(make_dataset(png_dataset, 4, seed=7, deterministic=True, start_epoch=1))
    tf.random.set_seed(1234)
    try:
        seeded = make_dataset(png_dataset, 4, seed=7, deterministic=True, start_epoch=1)
        assert np.array_equal(labels(seeded), expected)
    finally:
        tf.random.set_seed(None)


@pytest.mark.parametrize("image_dtype", ["float32", "uint8"])
def test_flip_augmentation_is_a_mirror_or_identity(png_folder, png_dataset, image_dtype):
    _, expected = png_folder
    originals = {key: None for key in expected}
    dataset = make_dataset(png_dataset, 8, seed=0, deterministic=True, image_dtype=image_dtype)
    images, _ = _collect(dataset.take(6))
    assert images.dtype == image_dtype
    flipped = 0
    for image in images.astype(np.uint8):
        if image.tobytes() in originals:
            continue
        assert image[:, ::-1].tobytes() in originals  # the mirror of a stored image
        flipped += 1
    assert 0.25 < flipped / len(images) < 0.75


def test_optional_augmentations_stay_in_range(png_dataset):
    config = AugmentConfig(
        crop_resize=True, brightness=0.2, contrast=0.3, saturation=0.3, erasing_probability=1.0
    )
    images, _ = _collect(make_dataset(png_dataset, 8, seed=0, augment=config).take(2))
    assert images.shape == (16, 112, 112, 3)
    assert images.min() >= 0.0 and images.max() <= 255.0
    # Random erasing with probability 1: every image holds a mid-grey rectangle.
    assert all(np.sum(np.all(image == 127.5, axis=-1)) > 0.01 * 112 * 112 for image in images)
    with pytest.raises(ValueError, match="brightness"):
        AugmentConfig(brightness=2.0)


def test_uint8_images_are_the_stored_pixels(png_folder, png_dataset):
    # Oracle: the PNG pixels the fixture wrote (lossless), not the float32 pipeline.
    _, expected = png_folder
    dataset = make_dataset(png_dataset, 5, training=False, image_dtype="uint8")
    images, labels = _collect(dataset)
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert sorted(expected[image.tobytes()] for image in images) == sorted(labels.tolist())
    assert len({image.tobytes() for image in images}) == len(expected)


def test_uint8_float_augmentation_rounds_the_float32_result(png_dataset):
    config = AugmentConfig(crop_resize=True, brightness=0.2, erasing_probability=0.5)
    kwargs = dict(seed=3, deterministic=True, augment=config)
    as_float, _ = _collect(make_dataset(png_dataset, 8, **kwargs).take(2))
    as_bytes, _ = _collect(make_dataset(png_dataset, 8, image_dtype="uint8", **kwargs).take(2))
    assert as_bytes.dtype == np.uint8
    np.testing.assert_array_equal(as_bytes, np.round(as_float).astype(np.uint8))


def _labels_of(dataset):
    return sorted(np.concatenate([y.numpy() for _, y in dataset]).tolist())


@pytest.mark.parametrize("num_shards, mode", [(4, "file"), (1, "element")])
def test_input_context_shards_disjointly(png_folder, tmp_path, num_shards, mode):
    out = tmp_path / "ds"
    convert_image_folder(png_folder[0], out, num_shards=num_shards, progress=False)
    manifest = read_manifest(out)
    seen = []
    for index in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=index, num_replicas_in_sync=2
        )
        images, _ = _collect(make_dataset(out, 3, training=False, input_context=context))
        seen.append({image.astype(np.uint8).tobytes() for image in images})
    assert not seen[0] & seen[1]  # disjoint
    assert len(seen[0] | seen[1]) == manifest["num_images"]  # complete
    if mode == "file":  # whole files per pipeline: 2 of the 4 shards each
        assert len(seen[0]) == sum(s["count"] for s in manifest["shards"][0::2])


# ------------------------------------------------------------------------------- bad data
def _bad_dataset(tmp_path, bad):
    good = [(encode(noise_image(k), "PNG"), k % 2, f"good{k}") for k in range(5)]
    return write_raw_dataset(tmp_path / "ds", good[:2] + [bad] + good[2:], num_classes=2)


BAD_RECORDS = {
    "label out of range": (encode(noise_image(9), "PNG"), 2, "bad"),
    "negative label": (encode(noise_image(9), "PNG"), -1, "bad"),
    "corrupt jpeg": (encode(smooth_image(9), "JPEG")[:300] + b"\x00" * 50, 0, "bad"),
    "wrong size": (encode(noise_image(9, size=100), "PNG"), 0, "bad"),
    "grayscale channel count": (encode(noise_image(9, channels=1), "PNG"), 0, "bad"),
    "rgba channel count": (encode(np.dstack([noise_image(9)] * 2)[..., :4], "PNG"), 0, "bad"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_raises_or_is_skipped_and_counted(tmp_path, case):
    _bad_dataset(tmp_path, BAD_RECORDS[case])
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        _collect(make_dataset(tmp_path / "ds", 2, training=False))
    if case != "corrupt jpeg":  # the decoder's own error; the checks name the record
        assert "source_id=] [bad]" in str(raised.value), str(raised.value)
    counter = ErrorCounter()
    images, labels = _collect(
        make_dataset(tmp_path / "ds", 2, training=False, on_error="skip", error_counter=counter)
    )
    assert len(labels) == 5 and set(labels.tolist()) <= {0, 1}
    assert (counter.read, counter.kept, counter.skipped) == (6, 5, 1)


def test_truncated_shard_raises_or_stops_at_the_damage(tmp_path):
    path = _bad_dataset(tmp_path, (encode(noise_image(9), "PNG"), 0, "fine"))
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size - 1000)  # cut into the last record
    with pytest.raises(tf.errors.DataLossError):
        _collect(make_dataset(tmp_path / "ds", 2, training=False))
    counter = ErrorCounter()
    _, labels = _collect(
        make_dataset(tmp_path / "ds", 2, training=False, on_error="skip", error_counter=counter)
    )
    assert len(labels) == 5 and counter.kept == 5  # the manifest says 6: one lost

    from keras_arcface.data import check_dataset

    report = check_dataset(tmp_path / "ds", progress=False)
    assert not report["ok"] and report["num_read"] == 5
    assert report["problems"]["by_reason"] == {"unreadable shard data": 1, "missing records": 1}


def test_arguments_are_validated(png_dataset):
    with pytest.raises(ValueError, match="on_error"):
        make_dataset(png_dataset, 4, on_error="ignore")
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(png_dataset, 0)
    with pytest.raises(ValueError, match="image_size"):
        make_dataset(png_dataset, 4, image_size=(96, 96))
    with pytest.raises(ValueError, match="image_dtype"):
        make_dataset(png_dataset, 4, image_dtype="float16")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        make_dataset(png_dataset / "nope", 4)


# ------------------------------------------------------------------------ batched stages
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_batched_flip_mirrors_exactly_the_chosen_images(dtype):
    from keras_arcface.data.pipeline import _flipped

    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (6, 5, 7, 3)).astype(dtype)
    for flip in ([1, 0, 0, 1, 1, 0], [0] * 6, [1] * 6):
        chosen = np.array(flip, bool)
        expected = np.where(chosen[:, None, None, None], images[:, :, ::-1, :], images)
        got = _flipped(tf, tf.constant(images), tf.constant(chosen))
        assert got.dtype == dtype and got.shape == images.shape
        np.testing.assert_array_equal(got, expected)


def test_decode_map_runs_its_ops_inline():
    from tensorflow.python.data.ops import map_op

    from keras_arcface.data.pipeline import _inline_map

    mapped = _inline_map(tf, tf.data.Dataset.range(4), lambda x: x * 2, -1)
    # Fails when TensorFlow's dataset class changes and the public map is used instead.
    assert isinstance(mapped, map_op._ParallelMapDataset)
    assert mapped._use_inter_op_parallelism is False
    assert list(mapped.as_numpy_iterator()) == [0, 2, 4, 6]
