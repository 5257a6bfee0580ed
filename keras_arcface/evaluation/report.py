"""Reports of evaluation results: JSON-safe summaries, markdown tables, atomic JSON files."""

import math

import numpy as np

from keras_arcface._io import atomic_write_json
from keras_arcface.evaluation.verification import format_far

# Per-pair / per-probe arrays stay out of reports (plots read them from the result dicts).
_ARRAY_KEYS = ("distances", "issame", "roc", "probe_ranks", "top1_scores")


def to_jsonable(value):
    """Converts NumPy scalars/arrays (and NaN/inf) into plain JSON values, recursively.

    Args:
        value: any mix of dicts, lists, tuples, NumPy values and Python scalars.

    Example:
        >>> to_jsonable({"a": np.float32(0.5), "b": np.arange(2), "c": float("nan")})
        {'a': 0.5, 'b': [0, 1], 'c': None}
    """
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarize(result):
    """The scalar part of a verification or identification result, JSON-safe.

    Args:
        result: a dict from ``verification_metrics``, ``evaluate_verification``,
            ``identification_metrics`` or ``evaluate_identification``.

    Example:
        >>> summarize({"accuracy": np.float64(0.99), "distances": np.zeros(3)})
        {'accuracy': 0.99}
    """
    return to_jsonable({k: v for k, v in result.items() if k not in _ARRAY_KEYS})


def write_json(path, payload):
    """Writes ``payload`` as indented JSON atomically (temporary file, then rename).

    Args:
        path: destination file; its folder is created when missing.
        payload: anything :func:`to_jsonable` accepts.

    Example:
        >>> write_json("eval.json", {"lfw": summarize(result)})  # doctest: +SKIP
    """
    atomic_write_json(path, to_jsonable(payload), allow_nan=False)


def _percent(value, digits=2):
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def verification_table(rows, far_targets=None):
    """A markdown table of verification results.

    Args:
        rows: iterable of ``(model_label, set_name, result)``.
        far_targets: FAR columns to show (default: those of the first result).

    Returns:
        The table as a string; accuracy, TAR, AUC and EER in percent. An unresolvable TAR
        shows ``n/a`` (its note is in the JSON report).

    Example:
        >>> print(verification_table([("model.keras", "lfw", result)]))  # doctest: +SKIP
    """
    rows = list(rows)
    if far_targets is None:
        far_targets = [e["far_target"] for e in rows[0][2]["tar_at_far"]] if rows else []
    header = ["model", "set", "pairs", "accuracy %", "threshold", "AUC %", "EER %"]
    header += [f"TAR@FAR={format_far(t)} %" for t in far_targets] + ["mean norm"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, name, result in rows:
        tars = {e["far_target"]: e["tar"] for e in result["tar_at_far"]}
        norm = result.get("mean_norm")
        cells = [
            model,
            name,
            str(result["num_pairs"]),
            f"{100 * result['accuracy']:.2f} ± {100 * result['accuracy_std']:.2f}",
            f"{result['best_threshold']:.3f}",
            _percent(result["auc"]),
            _percent(result["eer"]),
            *[_percent(tars.get(t)) for t in far_targets],
            "n/a" if norm is None else f"{norm:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def identification_table(rows):
    """A markdown table of identification results.

    Args:
        rows: iterable of ``(model_label, set_name, result)``.

    Example:
        >>> print(identification_table([("model.keras", "faces/", result)]))  # doctest: +SKIP
    """
    rows = list(rows)
    rank_keys = sorted(
        {k for _, _, r in rows for k in r if k.startswith("rank_")}, key=lambda k: int(k[5:])
    )
    fpirs = [e["fpir_target"] for e in rows[0][2]["tpir_at_fpir"]] if rows else []
    header = ["model", "set", "gallery", "probes (mated/non-mated)"]
    header += [f"rank-{k[5:]} %" for k in rank_keys]
    header += [f"TPIR@FPIR={format_far(f)} %" for f in fpirs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, name, result in rows:
        tpirs = {e["fpir_target"]: e["tpir"] for e in result["tpir_at_fpir"]}
        cells = [
            model,
            name,
            f"{result['num_gallery']} ({result['num_gallery_identities']} ids)",
            f"{result['num_probes']} ({result['num_mated']}/{result['num_nonmated']})",
            *[_percent(result.get(k)) for k in rank_keys],
            *[_percent(tpirs.get(f)) for f in fpirs],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes_of(result):
    """The explanatory notes of a result (unresolvable FAR/FPIR targets and the like).

    Example:
        >>> notes_of({"tar_at_far": [{"note": "FAR 1e-4 is below ..."}]})
        ['FAR 1e-4 is below ...']
    """
    entries = list(result.get("tar_at_far", [])) + list(result.get("tpir_at_fpir", []))
    return [e["note"] for e in entries if e.get("note")]
