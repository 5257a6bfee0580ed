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

    def check(serialized, item):
        return _check_example(serialized, item, num_classes, size, decode, problems, decode_image)

    for shard in manifest["shards"]:
        path = os.path.join(os.fspath(data_dir), shard["file"])
        read, valid, error = _scan_shard(tf, path, shard["file"], check, problems, bar)
        num_valid += valid
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


def _scan_shard(tf, path, name, check, problems, bar):
    """Reads one shard to its end or first unreadable byte: ``(read, valid, error or None)``.

    ``check(serialized, item)`` says whether a record is valid (and reports why not).
    """
    read, valid, error = 0, 0, None
    iterator = iter(tf.data.TFRecordDataset(path).as_numpy_iterator())
    while True:
        try:
            serialized = next(iterator)
        except StopIteration:
            break
        except tf.errors.OpError as failure:  # truncated or corrupt shard
            error = f"{type(failure).__name__}: {failure.message.splitlines()[0]}"
            problems.add("unreadable shard data", name)
            break
        read += 1
        bar.update(1)
        valid += int(check(serialized, f"{name}#{read - 1}"))
    return read, valid, error


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


# Datasets up to this size are checked with every image decoded after training; larger ones
# are read and parsed only (decoding millions of images in Python takes too long).
DECODE_CHECK_LIMIT = 100_000


def summarize_problems(report):
    """One line saying what :func:`check_dataset` found: bad records and lost shard tails.

    Example:
        >>> summarize_problems({"ok": True, "shards": [], "problems": {"by_reason": {}}})
        'no damaged records'
    """
    by_reason = dict(report["problems"].get("by_reason", {}))
    lost = by_reason.pop("missing records", 0)
    by_reason.pop("unreadable shard data", None)
    parts = []
    bad = sum(by_reason.values())
    if bad:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(by_reason.items()))
        parts.append(f"{bad} bad record(s) ({reasons})")
    damaged = [shard for shard in report["shards"] if shard["read"] < shard["expected"]]
    if lost or damaged:
        shown = "; ".join(
            f"{s['file']}: {s['expected'] - s['read']} of {s['expected']} unread"
            + (f" ({s['error']})" if s["error"] else "")
            for s in damaged[:3]
        )
        more = f"; and {len(damaged) - 3} more shard(s)" if len(damaged) > 3 else ""
        parts.append(f"{lost} record(s) lost in damaged shard tails ({shown}{more})")
    return " and ".join(parts) if parts else "no damaged records"


def damaged_data_error(data_dir, failure):
    """The :class:`DataError` for a pipeline failure on damaged data, or None if none is found.

    Runs :func:`check_dataset` on ``data_dir`` to name the damaged shards and records that a
    ``tf.errors.DataLossError`` ("truncated record at 26679") does not name.

    Example:
        >>> error = damaged_data_error("data/train", failure)  # doctest: +SKIP
    """
    from keras_arcface.errors import DataError

    manifest = schema.read_manifest(data_dir)
    decode = int(manifest["num_images"]) <= DECODE_CHECK_LIMIT
    report = check_dataset(data_dir, decode=decode, progress=False)
    if report["ok"]:
        return None
    first_line = str(getattr(failure, "message", failure)).splitlines()[0]
    return DataError(
        f"Damaged training data in {os.fspath(data_dir)}: {summarize_problems(report)}. "
        f"The input pipeline stopped at: {first_line}. Re-convert or repair the dataset "
        f"(`keras-arcface convert check {os.fspath(data_dir)}` lists every problem), or set "
        "data.dataset_kwargs.on_error=skip to skip damaged records and count them."
    )


def write_data_check(data_dir, path, *, decode=None):
    """Checks ``data_dir`` and writes the report (plus a one-line summary) to ``path``.

    Args:
        data_dir: the dataset folder.
        path: the JSON file to write (atomically), e.g. ``RUN/data_check.json``.
        decode: decode every image; default only for datasets up to ``DECODE_CHECK_LIMIT``.

    Returns:
        The report dict with ``summary`` and ``decoded`` added.

    Example:
        >>> write_data_check("data/train", "runs/x/data_check.json")["summary"]  # doctest: +SKIP
        'no damaged records'
    """
    from keras_arcface._io import atomic_write_json

    if decode is None:
        decode = int(schema.read_manifest(data_dir)["num_images"]) <= DECODE_CHECK_LIMIT
    report = check_dataset(data_dir, decode=decode, progress=False)
    report.update(summary=summarize_problems(report), decoded=bool(decode))
    report["data_dir"] = os.path.abspath(os.fspath(data_dir))
    atomic_write_json(path, report)
    return report
