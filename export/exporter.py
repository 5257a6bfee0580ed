"""``export_model``: every format of one embedding model, behind the parity gate."""

import hashlib
import json
import os
import tempfile
import time

import numpy as np

from keras_arcface._io import atomic_directory
from keras_arcface.errors import InputError
from keras_arcface.export.parity import (
    ParityGateError,
    ParityReport,
    check_parity,
    verification_accuracy,
)
from keras_arcface.export.signatures import check_embedding_model
from keras_arcface.export.tflite import QUANTIZATIONS, check_quantization
from keras_arcface.inference.contract import (
    contract_metadata,
    sidecar_path,
    write_json_atomic,
)

FORMATS = ("saved_model", "tflite", "onnx")
MANIFEST_NAME = "metadata.json"
REPORT_NAME = "parity_report.json"
DEFAULT_PARITY_IMAGES = 64
DEFAULT_CALIBRATION_IMAGES = 100


class ExportFolderError(InputError):
    """The export folder holds files that are not a previous export of this tool."""


def artifact_filename(fmt, quantization="float32"):
    """File name of an artifact inside the export folder.

    Example:
    >>> artifact_filename("tflite", "int8"), artifact_filename("onnx")
    ('model_int8.tflite', 'model.onnx')
    """
    if fmt == "saved_model":
        return "saved_model"
    if fmt == "tflite":
        return f"model_{quantization}.tflite"
    return "model.onnx"


def _check_formats(formats, quantize):
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"Expected formats among {list(FORMATS)}. Received: formats={list(formats)}"
        )
    if quantize is None:
        quantize = tuple(q for q in QUANTIZATIONS if q != "float32") if "tflite" in formats else ()
    quantize = tuple(dict.fromkeys(check_quantization(q) for q in quantize))
    if quantize and "tflite" not in formats:
        raise ValueError(
            "Quantisation applies to TFLite only; add 'tflite' to formats. "
            f"Received: formats={list(formats)}, quantize={list(quantize)}"
        )
    return formats, quantize


def load_embedding_model(model_or_path):
    """Returns ``(keras.Model, source description)`` from a model, ``.keras`` or run folder.

    Example:
    >>> model, source = load_embedding_model("runs/demo")  # doctest: +SKIP
    """
    from keras_arcface.inference.runtimes import KerasRuntime, resolve_model_path

    if not isinstance(model_or_path, (str, os.PathLike)):
        KerasRuntime(model_or_path)  # validates the contract
        return model_or_path, f"in-memory model {model_or_path.name!r}"
    kind, path = resolve_model_path(model_or_path)
    if kind != "keras":
        raise ValueError(
            "Export starts from a Keras embedding model: a .keras file or a run folder. "
            f"Received: model_or_path={os.fspath(model_or_path)!r} (a {kind} artifact)"
        )
    return KerasRuntime.from_path(path).model, path


def check_finite_weights(model):
    """Refuses a model with NaN/Inf weights (a diverged run): no format can export it.

    Example:
        >>> check_finite_weights(model)  # doctest: +SKIP
    """
    bad = [
        getattr(weight, "path", weight.name)
        for weight in model.weights
        if not np.all(np.isfinite(np.asarray(weight, dtype=np.float64)))
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise InputError(
            f"The model has NaN or Inf weights ({shown}): its embeddings are NaN and int8 "
            "calibration cannot run. Export a checkpoint from before the training diverged "
            f"(a run keeps its last finite one). Received: model={model.name!r}"
        )


def _calibration_of(source):
    """The calibrated threshold in a ``.keras`` model's sidecar, carried into the export."""
    from keras_arcface.inference.contract import read_sidecar

    if not os.path.isfile(source):  # an in-memory model has no sidecar
        return {}
    metadata = read_sidecar(source)
    keys = ("threshold", "threshold_source", "calibration")
    return {key: metadata[key] for key in keys if key in metadata}


def as_float32_model(model):
    """Returns ``model`` itself, or a float32 copy when it computes in float16/bfloat16.

    Exports compute in float32 on every runtime (TFLite/ONNX CPU kernels and the quantisers
    expect float32 graphs); a model trained under a mixed policy is cloned layer by layer with
    ``dtype="float32"`` and given the same weights.

    Args:
        model: A Keras embedding model.

    Example:
    >>> as_float32_model(model).layers[-1].compute_dtype  # doctest: +SKIP
    'float32'
    """
    import keras

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model

    def float32_layer(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=float32_layer)
    clone.set_weights(model.get_weights())
    return clone


def draw_sample_images(
    num_images,
    *,
    sample_images=None,
    data_dir=None,
    bin_path=None,
    image_size=112,
    seed=0,
):
    """Draws the images used for int8 calibration and the parity gate.

    Sources, first match wins: ``sample_images`` (arrays or file paths), ``data_dir`` (a
    TFRecord dataset folder read with ``keras_arcface.data.make_dataset``, shuffled with
    ``seed``), ``bin_path`` (the images of a ``.bin`` set), else freshly rendered synthetic
    identities (``keras_arcface.data.render_identities``).

    Args:
        num_images: How many images to return (fewer if the source holds fewer).
        sample_images: Images given directly.
        data_dir: TFRecord dataset folder (a run's training data).
        bin_path: ``.bin`` verification set.
        image_size: Side of the model's input.
        seed: Seed of the shuffle / the synthetic identities.

    Returns:
        ``(images float32 [N, S, S, 3] 0..255, description)``.

    Example:
    >>> images, source = draw_sample_images(64, data_dir="data/synthetic/train")  # doctest: +SKIP
    """
    from keras_arcface.inference import to_batch

    if sample_images is not None:
        images = to_batch(sample_images, image_size)
        return images[:num_images], f"{len(images[:num_images])} given images"
    if data_dir is not None:
        return _draw_from_tfrecords(data_dir, num_images, image_size, seed)
    if bin_path is not None:
        from keras_arcface.data import load_bin

        images = load_bin(bin_path, image_size=(image_size, image_size)).images
        step = max(1, len(images) // max(num_images, 1))
        return images[::step][:num_images].astype(np.float32), f"images of {bin_path}"
    from keras_arcface.data import render_identities

    identities = max(1, num_images // 4)
    images, _ = render_identities(
        identities, 4, seed=seed, image_size=image_size, heldout=True, num_workers=1
    )
    return images[:num_images].astype(np.float32), "synthetic identities (held-out range)"


def _draw_from_tfrecords(data_dir, num_images, image_size, seed):
    """One shuffled, unaugmented batch of up to ``num_images`` images of a dataset folder."""
    from keras_arcface.data import make_dataset, read_manifest

    available = int(read_manifest(data_dir)["num_images"])
    count = max(1, min(num_images, available))
    dataset = make_dataset(
        data_dir,
        count,
        training=True,
        augment=False,
        seed=seed,
        deterministic=True,
        image_size=(image_size, image_size),
    )
    images, _ = next(iter(dataset))
    return np.asarray(images, np.float32), f"TFRecords in {os.fspath(data_dir)}"


def _sha256(path):
    digest = hashlib.sha256()
    paths = [path]
    if os.path.isdir(path):
        paths = sorted(
            os.path.join(root, name) for root, _, names in os.walk(path) for name in names
        )
    for item in paths:
        with open(item, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _size(path):
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, n)) for r, _, names in os.walk(path) for n in names)


def _plan(formats, quantize):
    steps = []
    if "saved_model" in formats:
        steps.append(("saved_model", "saved_model", "float32"))
    if "tflite" in formats:
        steps.append(("tflite_float32", "tflite", "float32"))
        steps += [(f"tflite_{q}", "tflite", q) for q in quantize if q != "float32"]
    if "onnx" in formats:
        steps.append(("onnx", "onnx", "float32"))
    return steps


def _write_artifacts(model, out_dir, steps, calibration, opset, extra, progress):
    from tqdm.auto import tqdm

    from keras_arcface.export.onnx import export_onnx
    from keras_arcface.export.saved_model import export_saved_model
    from keras_arcface.export.tflite import export_tflite, write_serving_saved_model

    written = []
    with tempfile.TemporaryDirectory() as scratch:
        serving = os.path.join(out_dir, "saved_model")
        if not any(fmt == "saved_model" for _, fmt, _ in steps):
            serving = write_serving_saved_model(model, os.path.join(scratch, "serving"))
        float32_tflite = os.path.join(scratch, "model_float32.tflite")
        for name, fmt, precision in tqdm(
            steps, desc="exporting", unit="artifact", disable=not progress
        ):
            path = os.path.join(out_dir, artifact_filename(fmt, precision))
            started = time.perf_counter()
            try:
                if fmt == "saved_model":
                    export_saved_model(model, path, metadata=extra)
                elif fmt == "tflite":
                    export_tflite(
                        model,
                        path,
                        precision,
                        representative_images=calibration,
                        saved_model=serving,
                        metadata=extra,
                    )
                    if precision == "float32":
                        float32_tflite = path
                else:
                    if not os.path.isfile(float32_tflite):
                        export_tflite(model, float32_tflite, "float32", saved_model=serving)
                    export_onnx(
                        model, path, opset=opset, tflite_float32_path=float32_tflite, metadata=extra
                    )
            except Exception as error:
                error.add_note(f"while exporting the {name} artifact ({path})")
                raise
            written.append((name, fmt, precision, path, time.perf_counter() - started))
    return written


def export_model(
    model_or_path,
    out_dir,
    *,
    formats=FORMATS,
    quantize=None,
    sample_images=None,
    data_dir=None,
    bin_path=None,
    opset=17,
    gate=True,
    num_parity_images=DEFAULT_PARITY_IMAGES,
    num_calibration_images=DEFAULT_CALIBRATION_IMAGES,
    progress=True,
    verbose=True,
    overwrite=False,
):
    """Exports an embedding model to SavedModel, TFLite and ONNX and runs the parity gate.

    Only the embedding model is exported (never the class centers). Every artifact follows
    one contract (docs/export.md): input ``images`` RGB NHWC 112x112, values 0..255 (float32;
    the int8 TFLite takes uint8), preprocessing inside the graph, output ``embeddings``
    float32 L2-normalized, dynamic batch. ``out_dir`` receives the artifacts,
    ``metadata.json`` (contract, files, sizes, SHA-256) and ``parity_report.json``.

    Args:
        model_or_path: A Keras embedding model, a ``.keras`` file or a run folder.
        out_dir: Export folder. The export is written beside it and swapped in whole, so a
            reader never sees a mixture of two exports. It may be missing, empty or a
            previous export of this tool; anything else needs ``overwrite``.
        formats: Any of ``"saved_model"``, ``"tflite"``, ``"onnx"`` (default: all three).
        quantize: TFLite variants besides float32 among ``"float16"``, ``"dynamic"``,
            ``"int8"``; default all three when ``"tflite"`` is exported.
        sample_images: Images for calibration and the gate (arrays or paths).
        data_dir: TFRecord dataset folder to draw them from (the run's training data).
        bin_path: ``.bin`` pair set: the gate then also compares verification accuracy, and
            the Keras model's best threshold is stored in the metadata (as a cosine).
        opset: ONNX opset (default 17).
        gate: Raise :class:`ParityGateError` when an artifact fails the gate (default True;
            ``False`` only reports).
        num_parity_images: Images in the cosine gate (64).
        num_calibration_images: Images calibrating the int8 TFLite model (100).
        progress: Show progress bars.
        verbose: Print the parity table.
        overwrite: Replace a folder holding other files; its content is moved to
            ``OUT.replaced-TIME`` beside it (never deleted).

    Returns:
        The :class:`ParityReport` (also written to ``out_dir/parity_report.json``).

    Raises:
        ExportFolderError: ``out_dir`` holds files that are not a previous export.

    Example:
    >>> report = export_model("runs/demo", "runs/demo/export", data_dir="data/train",
    ...                       bin_path="data/verification.bin")  # doctest: +SKIP
    >>> report.passed  # doctest: +SKIP
    True
    """
    from keras_arcface.inference import Embedder

    formats, quantize = _check_formats(formats, quantize)
    check_export_folder(os.fspath(out_dir), overwrite)  # fail before the slow work
    model, source = load_embedding_model(model_or_path)
    check_finite_weights(model)
    reference = Embedder.from_model(model)
    images, image_source = draw_sample_images(
        num_parity_images + num_calibration_images,
        sample_images=sample_images,
        data_dir=data_dir,
        bin_path=bin_path,
        image_size=reference.image_size,
    )
    parity_images, calibration = _split_samples(images, num_parity_images)
    evaluation, extra = _keras_reference(reference, source, bin_path, progress)
    out_dir = os.fspath(out_dir)
    foreign = check_export_folder(out_dir, overwrite)
    plan = dict(
        steps=_plan(formats, quantize),
        calibration=calibration,
        opset=opset,
        extra=extra,
        out_dir=out_dir,
    )
    with atomic_directory(out_dir) as staging:
        report = _export_into(
            staging,
            model,
            source,
            plan,
            parity_images,
            image_source,
            bin_path,
            progress,
            evaluation,
        )
        if foreign:
            moved = _move_aside(out_dir)
    if foreign:
        print(f"Moved the previous content of {out_dir} to {moved} (--overwrite).")
    report.path = os.path.join(out_dir, REPORT_NAME)
    return _print_and_gate(report, verbose, gate)


def _split_samples(images, num_parity_images):
    """``(gate images, int8 calibration images)``; a small draw calibrates on all of it."""
    split = min(num_parity_images, max(1, len(images) // 2))
    return images[:split], images[split:] if len(images) > split else images


def _keras_reference(reference, source, bin_path, progress):
    """What the gate compares against, and the threshold metadata: ``(evaluation, extra)``.

    With a ``.bin`` pair set the Keras model's verification accuracy is measured and its
    best threshold stored (as a cosine); otherwise the calibrated threshold in a ``.keras``
    model's sidecar (if any) is carried over.
    """
    pair_set, extra, keras_accuracy = None, {}, None
    if bin_path is not None:
        from keras_arcface.data import load_bin

        pair_set = load_bin(bin_path, image_size=(reference.image_size,) * 2)
        result = verification_accuracy(reference, pair_set, progress=progress)
        keras_accuracy = result["accuracy"]
        # The protocol's threshold is a squared L2 distance d; on unit vectors cos = 1 - d / 2.
        extra["threshold"] = float(1.0 - result["best_threshold"] / 2.0)
        extra["threshold_source"] = f"{os.path.basename(os.fspath(bin_path))} (Keras model)"
    else:
        extra.update(_calibration_of(source))
    evaluation = dict(reference=reference, pair_set=pair_set, keras_accuracy=keras_accuracy)
    return evaluation, extra


def _print_and_gate(report, verbose, gate):
    """Prints the parity table (``verbose``); raises :class:`ParityGateError` on failure."""
    if verbose:
        print(report.format_table())
    if gate and not report.passed:
        raise ParityGateError(report)
    return report


def _export_into(
    staging, model, source, plan, parity_images, image_source, bin_path, progress, evaluation
):
    """Writes every artifact, the parity report and the manifest into ``staging``."""
    written = _write_artifacts(
        as_float32_model(model),
        staging,
        plan["steps"],
        plan["calibration"],
        plan["opset"],
        plan["extra"],
        progress,
    )
    report = check_parity(
        evaluation["reference"],
        [(name, path, precision) for name, _, precision, path, _ in written],
        parity_images,
        image_source=image_source,
        pair_set=evaluation["pair_set"],
        bin_path=bin_path,
        keras_accuracy=evaluation["keras_accuracy"],
        progress=progress,
    )
    _write_manifest(staging, model, source, written, report, plan["extra"], plan["opset"])
    for artifact in report.artifacts:  # where they will be once the folder is swapped in
        artifact.path = os.path.join(plan["out_dir"], os.path.relpath(artifact.path, staging))
    report.write(os.path.join(staging, REPORT_NAME))
    return report


def _previous_export(out_dir):
    """``(top-level names it owns, artifacts changed since)`` of a previous export, or None."""
    try:
        with open(os.path.join(out_dir, MANIFEST_NAME), encoding="utf-8") as handle:
            manifest = json.load(handle)
        artifacts = dict(manifest["artifacts"])
        manifest["contract"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    owned, changed = {MANIFEST_NAME, REPORT_NAME}, []
    for entry in artifacts.values():
        relative = os.path.normpath(str(entry.get("path", "")))
        path = os.path.join(out_dir, relative)
        if not os.path.exists(path) or _sha256(path) != entry.get("sha256"):
            changed.append(relative)  # edited since it was exported: not ours to replace
        owned.add(relative.split(os.sep)[0])
        if not os.path.isdir(path):  # a .tflite/.onnx file's JSON sidecar
            owned.add(os.path.basename(sidecar_path(path)))
    return owned, changed


def check_export_folder(out_dir, overwrite=False):
    """Checks that exporting into ``out_dir`` loses nothing; returns whether it holds other files.

    An export replaces its folder as a whole (written beside it, then swapped in), so a
    missing folder, an empty one, or an unchanged previous export of this tool (every
    artifact matching the SHA-256 in its ``metadata.json``, nothing else beside them) is
    fine. Anything else is refused unless ``overwrite``; then the folder's content is moved
    aside (never deleted).

    Raises:
        ExportFolderError: ``out_dir`` holds other files and ``overwrite`` is False.
        NotADirectoryError: ``out_dir`` is a file.

    Example:
        >>> check_export_folder("runs/demo/export")  # doctest: +SKIP
        False
    """
    if not os.path.lexists(out_dir):
        return False
    if not os.path.isdir(out_dir) or os.path.islink(out_dir):
        raise NotADirectoryError(
            f"The export folder is a file or a link; choose a folder. Received: out={out_dir!r}"
        )
    entries = sorted(os.listdir(out_dir))
    previous = _previous_export(out_dir) if entries else None
    if not entries or (previous and not previous[1] and set(entries) <= previous[0]):
        return False
    if overwrite:
        return True
    if previous is None:
        problem = f"is not a keras-arcface export (it holds {_some(entries)})"
    else:
        others = [name for name in entries if name not in previous[0]]
        problem = "holds a keras-arcface export with " + "; ".join(
            part
            for part in (
                f"files added beside it ({_some(others)})" if others else "",
                f"artifacts changed since ({_some(previous[1])})" if previous[1] else "",
            )
            if part
        )
    raise ExportFolderError(
        f"The export folder {out_dir} {problem}. Choose an empty or new folder, or pass "
        "--overwrite (overwrite=True) to replace it: its content is then moved to "
        f"{out_dir}.replaced-TIME beside it, nothing is deleted. Received: out={out_dir!r}"
    )


def _some(names, limit=5):
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _move_aside(out_dir):
    moved = f"{out_dir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 0
    while os.path.lexists(moved + (f"-{suffix}" if suffix else "")):
        suffix += 1
    moved += f"-{suffix}" if suffix else ""
    os.replace(out_dir, moved)
    return moved


def _write_manifest(out_dir, model, source, written, report, extra, opset):
    image_size, embedding_dim = check_embedding_model(model)
    passed = {a.name: a.passed for a in report.artifacts}
    manifest = {
        "contract": contract_metadata(embedding_dim, image_size=image_size, **extra),
        "source_model": source,
        "onnx_opset": int(opset),
        "artifacts": {
            name: {
                "path": os.path.relpath(path, out_dir),
                "format": fmt,
                "precision": precision,
                "input_dtype": "uint8" if precision == "int8" else "float32",
                "size_bytes": _size(path),
                "sha256": _sha256(path),
                "export_seconds": round(seconds, 2),
                "parity_passed": passed.get(name),
            }
            for name, fmt, precision, path, seconds in written
        },
        "parity_passed": report.passed,
    }
    write_json_atomic(os.path.join(out_dir, MANIFEST_NAME), manifest)


def check_export(
    model_or_path,
    out_dir,
    *,
    sample_images=None,
    data_dir=None,
    bin_path=None,
    num_parity_images=DEFAULT_PARITY_IMAGES,
    progress=True,
    verbose=True,
    gate=True,
):
    """Re-runs the parity gate on an existing export folder against its Keras model.

    Reads ``out_dir/metadata.json`` for the artifacts, compares each with the model, writes
    ``parity_report.json`` again and raises :class:`ParityGateError` on failure (``gate``).

    Args:
        model_or_path: The Keras embedding model, ``.keras`` file or run folder.
        out_dir: A folder written by :func:`export_model`.
        sample_images, data_dir, bin_path: Image sources, as in :func:`export_model`.
        num_parity_images: Images in the cosine gate (64).
        progress: Show progress bars.
        verbose: Print the parity table.
        gate: Raise on failure (default True).

    Returns:
        The :class:`ParityReport`.

    Example:
    >>> check_export("runs/demo", "runs/demo/export")  # doctest: +SKIP
    """
    from keras_arcface.inference import Embedder

    artifacts = _exported_artifacts(out_dir)
    model, _ = load_embedding_model(model_or_path)
    reference = Embedder.from_model(model)
    images, image_source = draw_sample_images(
        num_parity_images,
        sample_images=sample_images,
        data_dir=data_dir,
        bin_path=bin_path,
        image_size=reference.image_size,
    )
    pair_set = None
    if bin_path is not None:
        from keras_arcface.data import load_bin

        pair_set = load_bin(bin_path, image_size=(reference.image_size,) * 2)
    report = check_parity(
        reference,
        artifacts,
        images,
        image_source=image_source,
        pair_set=pair_set,
        bin_path=bin_path,
        progress=progress,
    )
    report.write(os.path.join(os.fspath(out_dir), REPORT_NAME))
    return _print_and_gate(report, verbose, gate)


def _exported_artifacts(out_dir):
    """``[(name, path, precision)]`` of the artifacts an export folder's manifest lists."""
    manifest_path = os.path.join(os.fspath(out_dir), MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        raise FileNotFoundError(
            f"No export manifest ({MANIFEST_NAME}) in this folder. Received: out_dir={out_dir!r}"
        )
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    return [
        (name, os.path.join(os.fspath(out_dir), entry["path"]), entry["precision"])
        for name, entry in manifest["artifacts"].items()
    ]


__all__ = [
    "ExportFolderError",
    "FORMATS",
    "check_export_folder",
    "ParityReport",
    "artifact_filename",
    "check_export",
    "export_model",
    "load_embedding_model",
    "draw_sample_images",
]
