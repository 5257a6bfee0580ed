"""Threshold calibration: the cosine threshold of a model for a target FAR, or best accuracy.

A verification threshold only means something for the model and the kind of images it was
measured on. ``calibrate_threshold`` runs the package's verification protocol (the
reference's 10 contiguous folds, see ``verification.py``) on a pair set and turns its
threshold into a cosine similarity:

* ``far`` given: on each fold's 9 training folds the distance threshold whose false-accept
  rate is ``far`` is found by interpolation (``tar_at_far``); the calibrated threshold is
  their mean, and the TAR/FAR reported are those measured on the held-out folds;
* otherwise the best-accuracy threshold (each fold's best on its training folds, averaged).

The protocol's thresholds are squared L2 distances ``d`` between unit vectors, and on
unit vectors ``cos = 1 - d / 2``. ``store_calibration`` writes the result into the
model's JSON sidecar (``model.keras`` -> ``model.json``, a SavedModel's
``keras_arcface.json``), which ``Embedder`` and ``keras-arcface verify`` read, and which
``keras-arcface export`` carries into every exported artifact.
"""

import os

import numpy as np

from keras_arcface.evaluation.verification import evaluate_verification, format_far


def check_pairs_for_calibration(issame, far=None):
    """Raises ``ValueError`` unless the pairs can calibrate (both kinds, enough impostors)."""
    issame = np.asarray(issame, bool)
    genuine, impostor = int(issame.sum()), int((~issame).sum())
    if genuine == 0 or impostor == 0:
        raise ValueError(
            "Calibration needs both genuine (same person) and impostor (different people) "
            f"pairs. Received: {genuine} genuine and {impostor} impostor pairs"
        )
    if far is not None:
        if not 0.0 < far < 1.0:
            raise ValueError(f"The target FAR must be in (0, 1). Received: far={far!r}")
        needed = int(np.ceil(1.0 / far))
        if impostor * 0.9 < needed:  # the training folds hold 9/10 of the impostors
            raise ValueError(
                f"FAR {format_far(far)} cannot be measured with {impostor} impostor pairs (the "
                f"protocol's training folds need at least {needed}); use a larger pair set or "
                f"a larger FAR. Received: far={far!r}"
            )
    return genuine, impostor


def calibrate_threshold(embed_fn, images, issame, *, far=None, flip=False, source="pairs"):
    """Finds a model's cosine threshold on a pair set.

    Args:
        embed_fn: maps float32 ``[B, 112, 112, 3]`` RGB 0..255 to embeddings.
        images: ``[2N, H, W, 3]`` pair images (``load_bin(path).images``).
        issame: ``[N]`` booleans.
        far: target false-accept rate (e.g. 1e-3); None calibrates for best accuracy.
        flip: fuse mirror-image embeddings (default False: ``Embedder.verify`` compares
            single images, so the threshold is measured the same way).
        source: name of the pair set, recorded with the threshold.

    Returns:
        A dict: ``threshold`` (cosine), ``criterion``, ``far_target``, ``tar``, ``far``,
        ``accuracy``, ``accuracy_std``, ``num_pairs``, ``num_genuine``, ``num_impostor``,
        ``flip``, ``source`` and ``threshold_source`` (one line saying all that).

    Raises:
        ValueError: only one kind of pair, or too few impostors for ``far``.

    Example:
        >>> pairs = load_bin("lfw.bin")  # doctest: +SKIP
        >>> record = calibrate_threshold(embedder.embed, pairs.images, pairs.issame,
        ...                              far=1e-3)  # doctest: +SKIP
    """
    genuine, impostor = check_pairs_for_calibration(issame, far)
    targets = (far,) if far is not None else ()
    result = evaluate_verification(
        embed_fn, images, issame, flip=flip, progress=False, far_targets=targets
    )
    record = {
        "criterion": "far" if far is not None else "best_accuracy",
        "far_target": far,
        "tar": None,
        "far": None,
        "accuracy": float(result["accuracy"]),
        "accuracy_std": float(result["accuracy_std"]),
        "num_pairs": int(len(issame)),
        "num_genuine": genuine,
        "num_impostor": impostor,
        "flip": bool(flip),
        "source": source,
    }
    distance, how = _chosen_distance(result, far, record)
    record["threshold"] = float(np.clip(1.0 - distance / 2.0, -1.0, 1.0))
    record["threshold_source"] = (
        f"calibrated for {how} on {source} ({len(issame)} pairs, 10-fold protocol)"
    )
    return record


def _chosen_distance(result, far, record):
    """The protocol's distance threshold for the criterion, and a phrase saying which.

    At a target FAR, also stores the measured ``tar`` and ``far`` in ``record``; raises
    when the pair set cannot reach that FAR.
    """
    if far is None:
        return float(result["best_threshold"]), f"best accuracy ({record['accuracy']:.4f})"
    entry = result["tar_at_far"][0]
    if entry["threshold"] is None or entry.get("note"):
        raise ValueError(
            f"FAR {format_far(far)} is not reached on this pair set ({entry.get('note')}). "
            f"Received: far={far!r}"
        )
    record.update(tar=float(entry["tar"]), far=float(entry["far"]))
    how = f"FAR {format_far(far)} (TAR {record['tar']:.4f} at FAR {record['far']:.2e})"
    return float(entry["threshold"]), how


def store_calibration(model_path, record):
    """Merges a calibration record into the model's JSON sidecar (atomically); returns its path.

    Args:
        model_path: a ``.keras`` file, a run folder (its ``embedding_best.keras``, else
            ``embedding_latest.keras``), a SavedModel directory, a ``.tflite`` or ``.onnx``.
        record: what :func:`calibrate_threshold` returned.
    """
    from keras_arcface.inference.contract import read_sidecar, sidecar_path, write_json_atomic
    from keras_arcface.inference.runtimes import resolve_model_path

    _, artifact = resolve_model_path(os.fspath(model_path))
    metadata = read_sidecar(artifact)
    metadata.update(
        threshold=record["threshold"],
        threshold_source=record["threshold_source"],
        calibration=record,
    )
    path = sidecar_path(artifact)
    write_json_atomic(path, metadata)
    return path
