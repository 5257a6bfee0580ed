"""Full check of a TFRecord dataset folder, record by record.

The training pipeline checks records as it reads them; this scan is the offline audit:
it reads every shard to its end, compares counts with the manifest (a truncated shard
shows up as missing records), parses every example and decodes every image.
"""

import os

from keras_arcface.data import schema
from keras_arcface.data.errors import SkipReport


def check_dataset(data_dir, *, decode=True, progress=True):
    """Scans every record of a dataset folder and reports what is wrong.

    Args:
        data_dir: the dataset folder.
        decode: also decode every image and check its size and channel count.
        progress: show a progress bar.

    Returns:
        A dict: ``ok`` (bool), ``num_images`` (manifest), ``num_read``, ``num_valid``,
        ``shards`` (per file: ``expected``, ``read``, ``error``) and ``problems`` (a
        :class:`~keras_arcface.data.errors.SkipReport` dict by reason).

    Example:
        >>> report = check_dataset("runs/synthetic/train")  # doctest: +SKIP
        >>> report["ok"]  # doctest: +SKIP
        True
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    from keras_arcface.data.verification_bin import decode_image

    manifest = schema.read_manifest(data_dir)
    num_classes = int(manifest["num_classes"])
    size = tuple(int(v) for v in manifest["image_size"])
    problems = SkipReport()
    shards, num_read, num_valid = [], 0, 0
    bar = tqdm(
        total=int(manifest["num_images"]), desc="verifying", unit="rec", disable=not progress
    )
    for shard in manifest["shards"]:
        path = os.path.join(os.fspath(data_dir), shard["file"])
        read, error = 0, None
        iterator = iter(tf.data.TFRecordDataset(path).as_numpy_iterator())
        while True:
            try:
                serialized = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as failure:  # truncated or corrupt shard
                error = f"{type(failure).__name__}: {failure.message.splitlines()[0]}"
                problems.add("unreadable shard data", shard["file"])
                break
            read += 1
            bar.update(1)
            item = f"{shard['file']}#{read - 1}"
            valid = _check_example(
                serialized, item, num_classes, size, decode, problems, decode_image
            )
            num_valid += int(valid)
        if read != int(shard["count"]):
            problems.counts["missing records"] += max(0, int(shard["count"]) - read)
        shards.append(
            {"file": shard["file"], "expected": int(shard["count"]), "read": read, "error": error}
        )
        num_read += read
    bar.close()
    return {
        "ok": problems.total == 0,
        "num_images": int(manifest["num_images"]),
        "num_read": num_read,
        "num_valid": num_valid,
        "shards": shards,
        "problems": problems.as_dict(),
    }


def _check_example(serialized, item, num_classes, size, decode, problems, decode_image):
    import tensorflow as tf

    try:
        example = tf.train.Example.FromString(serialized)
        feature = example.features.feature
        label = feature[schema.KEY_LABEL].int64_list.value[0]
        encoded = feature[schema.KEY_ENCODED].bytes_list.value[0]
    except Exception:  # a record that is not an Example of this schema
        problems.add("malformed example", item)
        return False
    if not 0 <= label < num_classes:
        problems.add("label out of range", item)
        return False
    if decode:
        import io

        from PIL import Image

        try:
            with Image.open(io.BytesIO(encoded)) as image:
                image.load()
                bands = len(image.getbands())
        except Exception:
            problems.add("corrupt image", item)
            return False
        if bands != 3:
            problems.add("unexpected channel count", item)
            return False
        try:
            decode_image(encoded, size, item)
        except ValueError:
            problems.add("unexpected image size", item)
            return False
    return True
