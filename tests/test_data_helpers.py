"""Builders shared by the data tests (no tests here): images, folders, raw TFRecord sets."""

import io
import json
import os

import numpy as np
from PIL import Image


def noise_image(seed, size=112, channels=3):
    rng = np.random.default_rng(seed)
    shape = (size, size, channels) if channels > 1 else (size, size)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def smooth_image(seed, size=112):
    """A smooth RGB image (JPEG keeps it close to the original)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size] / size
    channels = [
        128 + 100 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * xs + rng.uniform(0.5, 2) * ys))
        for _ in range(3)
    ]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def encode(array, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def write_raw_dataset(path, records, num_classes, image_size=(112, 112), counts=None):
    """Writes a dataset folder by hand (TFRecordWriter + a hand-made manifest), so tests can
    plant records the package's writer would refuse."""
    import tensorflow as tf

    os.makedirs(path, exist_ok=True)
    name = "train-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(os.path.join(path, name)) as writer:
        for encoded, label, source in records:
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "image/source_id": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[source.encode()])
                ),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    manifest = {
        "schema_version": 1,
        "num_images": len(records) if counts is None else counts,
        "num_classes": num_classes,
        "image_size": list(image_size),
        "shards": [{"file": name, "count": len(records) if counts is None else counts}],
    }
    with open(os.path.join(path, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return os.path.join(path, name)
