"""Aligning a folder of raw photos: ``align_folder`` (the ``keras-arcface align`` command).

The sub-folder layout (one folder per identity) is mirrored; each photo gives one aligned crop
(its largest face) or one per face (``all_faces``). Every photo ends in the report with a status:

- ``aligned``: crops written (faces scoring below ``min_score`` are listed, not written);
- ``no_face``: nothing found; ``low_score``: faces found, all below ``min_score``;
- ``unreadable``: the file could not be read as an image (corrupt, empty, a folder ...);
- ``not_an_image``: a file whose extension is not an image format.

Crash safety: each crop is written atomically, and a photo's record is appended to
``OUT/.align_journal.jsonl`` only after its crops exist, so a re-run skips finished photos and
redoes the rest. The report (JSON, or CSV for a ``.csv`` path) is written atomically at the end.
"""

import csv
import io
import json
import os

from keras_arcface._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from keras_arcface.errors import DataError, InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
FINAL_STATUSES = ("aligned", "no_face", "low_score", "not_an_image")
JOURNAL = ".align_journal.jsonl"
PROCESS_POOL_MIN_PHOTOS = 200
_WORKER = {}


def scan_photos(src_dir):
    """Relative paths of every file under ``src_dir`` (hidden ones skipped), sorted."""
    src_dir = os.fspath(src_dir)
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"No such folder. Received: src_dir={src_dir!r}")
    found = []
    for root, dirs, names in os.walk(src_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            found.append(os.path.relpath(os.path.join(root, name), src_dir))
    return found


def output_names(relative_paths, file_format):
    """Crop name stem per photo: ``a/b.jpg -> a/b``; ``a/b.png`` too would give ``a/b.png``."""
    stems = {}
    for rel in relative_paths:
        stems.setdefault(os.path.splitext(rel)[0], []).append(rel)
    names = {}
    for stem, rels in stems.items():
        for rel in rels:
            names[rel] = stem if len(rels) == 1 else rel  # keep the extension on a collision
    return names


def _settings(image_size, all_faces, min_score, file_format, detector_name):
    return {
        "image_size": int(image_size),
        "all_faces": bool(all_faces),
        "min_score": float(min_score),
        "format": file_format,
        "detector": detector_name,
    }


def _read_journal(out_dir, settings, overwrite):
    path = os.path.join(out_dir, JOURNAL)
    if overwrite or not os.path.isfile(path):
        return {}
    done = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that photo is redone
            if "settings" in record:
                if record["settings"] != settings:
                    raise InputError(
                        f"{out_dir} was aligned with other settings ({record['settings']}); "
                        "use a new output folder or --overwrite. "
                        f"Received: settings={settings}"
                    )
                continue
            done[record["file"]] = record
    return {
        rel: record
        for rel, record in done.items()
        if record["status"] in FINAL_STATUSES
        and all(os.path.isfile(os.path.join(out_dir, f["output"])) for f in _written(record))
    }


def _written(record):
    return [face for face in record.get("faces", []) if face.get("output")]


def _init_worker(options):
    # One process per core: keep each one's libraries on one thread.
    os.environ["OMP_NUM_THREADS"] = "1"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    _setup(options)


def _setup(options, detector=None):
    from keras_arcface.faces.aligner import FaceAligner
    from keras_arcface.faces.detect import get_detector

    detector = detector or get_detector(options["detector"])
    _WORKER["aligner"] = FaceAligner(detector=detector, image_size=options["image_size"])
    _WORKER["options"] = options


def _encode(crop, file_format):
    import cv2

    bgr = crop[..., ::-1]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if file_format == "jpg" else []
    ok, data = cv2.imencode(f".{file_format}", bgr, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a crop as {file_format}")
    return data.tobytes()


def align_one(task):
    """Aligns one photo (runs in a worker); returns its report record."""
    rel, stem = task
    options = _WORKER["options"]
    record = {"file": rel, "faces_found": 0, "faces": [], "message": ""}
    if not rel.lower().endswith(IMAGE_EXTENSIONS):
        return {**record, "status": "not_an_image", "message": "extension is not an image format"}
    try:
        aligned = _WORKER["aligner"].align(os.path.join(options["src_dir"], rel), face="all")
    except (DataError, OSError) as error:
        return {**record, "status": "unreadable", "message": " ".join(str(error).split())}
    record["faces_found"] = len(aligned)
    keep = [item for item in aligned if item.face.score >= options["min_score"]]
    if keep and not options["all_faces"]:
        keep = [max(keep, key=lambda item: item.face.area)]
    for index, item in enumerate(aligned):
        entry = {"index": index, **item.to_dict(), "output": None}
        if any(item is chosen for chosen in keep):
            suffix = f"_{index}" if options["all_faces"] else ""
            entry["output"] = f"{stem}{suffix}.{options['format']}"
            target = os.path.join(options["out_dir"], entry["output"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            atomic_write_bytes(target, _encode(item.crop, options["format"]))
        record["faces"].append(entry)
    status = "aligned" if keep else ("low_score" if aligned else "no_face")
    return {**record, "status": status}


def align_folder(
    src_dir,
    out_dir,
    *,
    image_size=112,
    all_faces=False,
    min_score=0.7,
    file_format="png",
    workers=None,
    on_error="raise",
    report=None,
    overwrite=False,
    progress=True,
    detector="yunet_onet",
):
    """Writes an aligned crop per photo (or per face) of ``src_dir`` under ``out_dir``.

    Args:
        src_dir: Folder of raw photos (any depth; identity sub-folders are mirrored).
        out_dir: Output folder (created; must not lie inside ``src_dir``).
        image_size: Side of the crops, 112.
        all_faces: One crop per face instead of the largest face only, False.
        min_score: Faces whose detection score is below this are listed, not written, 0.7.
        file_format: ``"png"`` (lossless, default) or ``"jpg"`` (quality 95).
        workers: Processes; 1 runs in this process. Default: one per core for 200 photos or
            more (a worker takes seconds to start), else 1.
        on_error: ``"raise"`` stops at the first unreadable photo; ``"skip"`` lists it.
        report: Report path, ``.json`` or ``.csv``; default ``OUT/align_report.json``.
        overwrite: Redo photos a previous run finished, False.
        progress: Show a tqdm progress bar, True.
        detector: Detector name, or a ``Detector`` object (only with ``workers=1``).

    Returns:
        A summary dict: ``counts`` per status, ``crops`` written, ``report`` path, ``problems``.

    Example:
    >>> summary = align_folder("raw/", "aligned/", workers=2)  # doctest: +SKIP
    >>> summary["counts"]  # doctest: +SKIP
    {'aligned': 118, 'no_face': 2, 'unreadable': 1}
    """
    options = _check_arguments(
        src_dir, out_dir, image_size, min_score, file_format, on_error, workers, detector
    )
    settings = _settings(image_size, all_faces, min_score, file_format, options["detector"])
    options.update(all_faces=bool(all_faces), min_score=float(min_score))
    files = scan_photos(src_dir)
    os.makedirs(out_dir, exist_ok=True)
    done = _read_journal(out_dir, settings, overwrite)
    names = output_names(files, file_format)
    todo = [(rel, names[rel]) for rel in files if rel not in done]
    records = dict(done)
    results = _run(todo, options, workers, detector, progress, len(done))
    _journal(results, records, out_dir, settings, overwrite, src_dir, on_error)
    ordered = [records[rel] for rel in files if rel in records]
    report = report or os.path.join(out_dir, "align_report.json")
    write_report(report, ordered)
    return _summary(ordered, report, skipped_done=len(done))


def _journal(results, records, out_dir, settings, overwrite, src_dir, on_error):
    """Stores each photo's record in ``records`` and appends it to the journal as it comes.

    A crash loses no finished photo; with ``on_error="raise"`` the first unreadable photo
    raises a :class:`DataError` after the ones before it were journaled.
    """
    journal_path = os.path.join(out_dir, JOURNAL)
    mode = "w" if overwrite or not os.path.isfile(journal_path) else "a"
    with open(journal_path, mode, encoding="utf-8") as journal:
        if mode == "w":
            journal.write(json.dumps({"settings": settings}) + "\n")
        for record in results:
            if record["status"] == "unreadable" and on_error == "raise":
                raise DataError(
                    f"unreadable photo: {os.path.join(src_dir, record['file'])} "
                    f"({record['message']}). Pass --on-error skip to list it and go on.",
                    reason="unreadable photo",
                    item=record["file"],
                )
            records[record["file"]] = record
            journal.write(json.dumps(record) + "\n")
            journal.flush()


def _check_arguments(src_dir, out_dir, image_size, min_score, file_format, on_error, workers, det):
    from keras_arcface.errors import check_on_error
    from keras_arcface.faces.align import arcface_template

    check_on_error(on_error)
    arcface_template(image_size)
    if file_format not in ("png", "jpg"):
        raise ValueError(f"Expected 'png' or 'jpg'. Received: file_format={file_format!r}")
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"Expected min_score in [0, 1]. Received: min_score={min_score}")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"Expected workers >= 1. Received: workers={workers}")
    if not isinstance(det, str) and (workers or 2) > 1:
        raise ValueError(
            "A Detector object cannot be sent to worker processes; pass a detector name or "
            f"workers=1. Received: workers={workers}"
        )
    source, target = os.path.realpath(src_dir), os.path.realpath(out_dir)
    if target == source or target.startswith(source + os.sep):
        raise InputError(
            "The output folder must not lie inside the photo folder (its crops would be read "
            f"as photos on the next run). Received: out_dir={os.fspath(out_dir)!r}"
        )
    name = det if isinstance(det, str) else type(det).__name__
    return {
        "src_dir": os.fspath(src_dir),
        "out_dir": os.fspath(out_dir),
        "format": file_format,
        "image_size": int(image_size),
        "detector": name,
    }


def _run(todo, options, workers, detector, progress, already_done):
    from tqdm.auto import tqdm

    if workers is None:  # starting a process costs seconds (TensorFlow): only for big folders
        workers = (os.cpu_count() or 1) if len(todo) >= PROCESS_POOL_MIN_PHOTOS else 1
    workers = int(workers)
    bar = tqdm(
        total=len(todo) + already_done,
        initial=already_done,
        unit="photo",
        desc="align",
        disable=not progress,
    )
    with bar:
        if workers == 1 or len(todo) < 2:
            _setup(options, detector=None if isinstance(detector, str) else detector)
            results = map(align_one, todo)
            yield from _tick(results, bar)
            return
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
        with concurrent.futures.ProcessPoolExecutor(
            min(workers, len(todo)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(options,),
        ) as pool:
            yield from _tick(pool.map(align_one, todo, chunksize=4), bar)


def _tick(results, bar):
    for record in results:
        bar.update(1)
        yield record


REPORT_COLUMNS = (
    "file",
    "status",
    "faces_found",
    "face",
    "score",
    "landmark_score",
    "box",
    "landmarks",
    "output",
    "message",
)


def write_report(path, records):
    """Writes the per-photo ``records`` as JSON, or as CSV (one row per face) for ``.csv``."""
    if not os.fspath(path).lower().endswith(".csv"):
        atomic_write_json(path, records)
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    for record in records:
        base = {key: record[key] for key in ("file", "status", "faces_found", "message")}
        for face in record["faces"] or [None]:
            row = dict(base)
            if face is not None:
                row.update(
                    face=face["index"],
                    score=face["score"],
                    output=face["output"] or "",
                    landmark_score=face["landmark_score"],
                    box=json.dumps(face["box"]),
                    landmarks=json.dumps(face["landmarks"]),
                )
            writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def _summary(records, report, skipped_done):
    counts = {}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    problems = [
        (record["file"], record["status"], record["message"])
        for record in records
        if record["status"] != "aligned"
    ]
    crops = sum(len(_written(record)) for record in records)
    return {
        "counts": counts,
        "crops": crops,
        "report": os.fspath(report),
        "problems": problems,
        "skipped_done": skipped_done,
    }
