"""The TFRecord schema and the dataset-folder manifest.

A dataset folder (see ``docs/data.md``) holds sharded TFRecord files, ``manifest.json``
and ``labels.tsv``. Each record is a ``tf.train.Example`` with these features:

==========================  =======  ==================================================
key                         type     meaning
==========================  =======  ==================================================
``image/encoded``           bytes    the encoded image (JPEG or PNG), RGB, 3 channels
``image/format``            bytes    ``b"jpeg"`` or ``b"png"``
``image/height``            int64    height in pixels
``image/width``             int64    width in pixels
``image/class/label``       int64    integer label in ``[0, num_classes)``
``image/class/identity``    bytes    identity name (the label map's name for the label)
``image/source_id``         bytes    where the image came from (path, record key)
==========================  =======  ==================================================

The manifest is written last; a folder without ``manifest.json`` is not a dataset.
"""

import json
import os

SCHEMA_VERSION = 1
FORMAT_NAME = "keras-arcface-tfrecord"
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.tsv"
SHARD_PREFIX = "train"

KEY_ENCODED = "image/encoded"
KEY_FORMAT = "image/format"
KEY_HEIGHT = "image/height"
KEY_WIDTH = "image/width"
KEY_LABEL = "image/class/label"
KEY_IDENTITY = "image/class/identity"
KEY_SOURCE_ID = "image/source_id"

FEATURE_DOC = {
    KEY_ENCODED: "bytes: encoded image (JPEG or PNG), RGB",
    KEY_FORMAT: "bytes: 'jpeg' or 'png'",
    KEY_HEIGHT: "int64: height in pixels",
    KEY_WIDTH: "int64: width in pixels",
    KEY_LABEL: "int64: label in [0, num_classes)",
    KEY_IDENTITY: "bytes: identity name",
    KEY_SOURCE_ID: "bytes: source path or record key",
}


def shard_name(index, num_shards, prefix=SHARD_PREFIX):
    """Returns the file name of shard ``index`` of ``num_shards``.

    Example:
        >>> shard_name(3, 12)
        'train-00003-of-00012.tfrecord'
    """
    return f"{prefix}-{index:05d}-of-{num_shards:05d}.tfrecord"


def serialize_example(
    encoded, label, *, identity="", source_id="", image_format="jpeg", height=0, width=0
):
    """Serialises one image as a ``tf.train.Example`` following the schema.

    Args:
        encoded: the encoded image bytes.
        label: integer label.
        identity: identity name (str).
        source_id: where the image came from (str).
        image_format: ``"jpeg"`` or ``"png"``.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        The serialised bytes.

    Example:
        >>> record = serialize_example(b"...", 3, identity="alice", height=112, width=112)
    """
    import tensorflow as tf

    def _bytes(value):
        if isinstance(value, str):
            value = value.encode("utf-8")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    features = {
        KEY_ENCODED: _bytes(encoded),
        KEY_FORMAT: _bytes(image_format),
        KEY_HEIGHT: _int(height),
        KEY_WIDTH: _int(width),
        KEY_LABEL: _int(label),
        KEY_IDENTITY: _bytes(identity),
        KEY_SOURCE_ID: _bytes(source_id),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString()


def feature_spec():
    """The ``tf.io.parse_single_example`` spec of the schema.

    Example:
        >>> spec = feature_spec()
        >>> sorted(spec)[0]
        'image/class/identity'
    """
    import tensorflow as tf

    return {
        KEY_ENCODED: tf.io.FixedLenFeature([], tf.string),
        KEY_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
        KEY_HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        KEY_WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        KEY_LABEL: tf.io.FixedLenFeature([], tf.int64),
        KEY_IDENTITY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        KEY_SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


def read_manifest(data_dir):
    """Reads and checks the manifest of a TFRecord dataset folder.

    Args:
        data_dir: the dataset folder (holds ``manifest.json``, ``labels.tsv`` and shards).

    Returns:
        The manifest dict: ``schema_version``, ``format``, ``num_images``, ``num_classes``,
        ``image_size`` ([height, width]), ``channels``, ``image_formats`` (encodings
        present, e.g. ``["jpeg"]``), ``shards`` (list of
        ``{"file", "count"}``), ``labels_file``, ``source``, ``skipped``, ``created``.

    Raises:
        FileNotFoundError: no ``manifest.json`` (the folder is not a finished dataset).
        ValueError: the manifest is malformed, of a newer schema, or names a missing shard.

    Example:
        >>> manifest = read_manifest("runs/synthetic/train")  # doctest: +SKIP
        >>> manifest["num_classes"]  # doctest: +SKIP
        300
    """
    data_dir = os.fspath(data_dir)
    path = os.path.join(data_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No {MANIFEST_NAME} in the dataset folder: it is not a keras-arcface TFRecord "
            f"dataset, or its conversion did not finish. Received: data_dir={data_dir!r}"
        )
    with open(path, encoding="utf-8") as handle:
        try:
            manifest = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path} is not valid JSON ({error}). Received: data_dir={data_dir!r}"
            ) from None
    required = ("schema_version", "num_images", "num_classes", "image_size", "shards")
    missing = [key for key in required if key not in manifest]
    if missing:
        raise ValueError(f"{path} lacks the keys {missing}. Received: data_dir={data_dir!r}")
    if int(manifest["schema_version"]) > SCHEMA_VERSION:
        raise ValueError(
            f"{path} has schema_version {manifest['schema_version']}, newer than this "
            f"keras-arcface reads ({SCHEMA_VERSION}); upgrade keras-arcface. "
            f"Received: data_dir={data_dir!r}"
        )
    for shard in manifest["shards"]:
        if not os.path.isfile(os.path.join(data_dir, shard["file"])):
            raise ValueError(
                f"The manifest names the shard {shard['file']!r} but it is missing. "
                f"Received: data_dir={data_dir!r}"
            )
    counted = sum(int(shard["count"]) for shard in manifest["shards"])
    if counted != int(manifest["num_images"]):
        raise ValueError(
            f"{path}: shard counts add up to {counted} but num_images is "
            f"{manifest['num_images']}. Received: data_dir={data_dir!r}"
        )
    return manifest


def shard_paths(data_dir, manifest=None):
    """Full paths of a dataset's shards in manifest order.

    Example:
        >>> paths = shard_paths("runs/synthetic/train")  # doctest: +SKIP
    """
    manifest = manifest or read_manifest(data_dir)
    return [os.path.join(os.fspath(data_dir), shard["file"]) for shard in manifest["shards"]]


def write_labels_tsv(path, class_names):
    """Writes the label map, one ``label<TAB>name`` line per class.

    Example:
        >>> write_labels_tsv("/tmp/labels.tsv", ["alice", "bob"])  # doctest: +SKIP
    """
    with open(path, "w", encoding="utf-8") as handle:
        for label, name in enumerate(class_names):
            name = str(name).replace("\t", " ").replace("\n", " ")
            handle.write(f"{label}\t{name}\n")


def read_labels_tsv(path):
    """Reads a label map back as a list of names indexed by label.

    Example:
        >>> names = read_labels_tsv("runs/synthetic/train/labels.tsv")  # doctest: +SKIP
    """
    names = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            label, _, name = line.partition("\t")
            try:
                names[int(label)] = name
            except ValueError:
                raise ValueError(
                    f"{path}:{line_number}: expected 'label<TAB>name'. Received: line={line!r}"
                ) from None
    return [names.get(label, "") for label in range(max(names, default=-1) + 1)]
