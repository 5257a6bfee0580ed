"""PNG plots of verification results: ROC curves (log FAR) and score histograms.

matplotlib is an optional extra (``pip install "keras-arcface[plot]"``). The figures are
drawn on a private ``Figure`` with the Agg canvas, so plotting never touches pyplot's global
state or needs a display.
"""

import os

import numpy as np

from keras_arcface._io import atomic_path
from keras_arcface.evaluation.verification import roc_curve

_INSTALL_HINT = 'Plots need matplotlib: pip install "keras-arcface[plot]"'


def _figure(width=6.4, height=4.8):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    figure = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    path = os.fspath(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", bbox_inches="tight")
    return path


def _curve_of(curve, label):
    if isinstance(curve, dict) and "distances" in curve and "issame" in curve:
        fpr, tpr, _ = roc_curve(curve["distances"], curve["issame"])
        return fpr, tpr, int(np.sum(~np.asarray(curve["issame"], bool)))
    if isinstance(curve, (tuple, list)) and len(curve) == 2:
        fpr, tpr = (np.asarray(c, np.float64) for c in curve)
        positive = fpr[fpr > 0]
        return fpr, tpr, int(round(1 / positive.min())) if len(positive) else 1
    raise TypeError(
        "Each curve must be a verification result dict or a (fpr, tpr) pair. "
        f"Received: {label}={type(curve).__name__}"
    )


def plot_roc(curves, path, *, title="ROC", far_targets=(1e-4, 1e-3, 1e-2, 1e-1)):
    """Draws the ROC curves of several models or formats on one log-FAR chart (PNG).

    FAR values below 1 / (number of impostor pairs) cannot be measured, so each curve starts
    at its smallest non-zero FAR; dotted lines mark ``far_targets``.

    Args:
        curves: ``{label: result}`` where result is a verification result dict (from
            ``verification_metrics`` / ``evaluate_verification``) or an ``(fpr, tpr)`` pair.
        path: the PNG file to write (folders are created).
        title: chart title (default "ROC").
        far_targets: FAR values marked with vertical lines.

    Returns:
        The written path.

    Example:
        >>> plot_roc({"keras": keras_result, "onnx": onnx_result}, "roc.png")  # doctest: +SKIP
    """
    if not curves:
        raise ValueError(f"curves must name at least one curve. Received: curves={curves!r}")
    figure = _figure()
    axes = figure.add_subplot(1, 1, 1)
    smallest = 1.0
    for label, curve in curves.items():
        fpr, tpr, num_impostor = _curve_of(curve, label)
        floor = 1.0 / max(num_impostor, 1)
        smallest = min(smallest, floor)
        visible = fpr >= floor
        # Start the step curve where the measurable FAR range starts.
        start_tpr = tpr[fpr < floor].max() if np.any(fpr < floor) else 0.0
        xs = np.r_[floor, fpr[visible]]
        ys = np.r_[start_tpr, tpr[visible]]
        axes.step(xs, 100 * ys, where="post", label=str(label), linewidth=1.5)
    for target in far_targets:
        if target >= smallest:
            axes.axvline(target, color="0.7", linestyle=":", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlim(smallest, 1.0)
    axes.set_ylim(None, 100.5)
    axes.set_xlabel("false accept rate (FAR)")
    axes.set_ylabel("true accept rate (TAR) %")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="lower right")
    return _save(figure, path)


def plot_score_histogram(result, path, *, title="Genuine and impostor scores", bins=60):
    """Draws genuine vs impostor cosine-similarity histograms with the chosen threshold (PNG).

    The protocol's threshold is a squared distance ``d`` between unit vectors; it is shown
    as the cosine ``1 - d / 2`` (the mean best threshold over the folds).

    Args:
        result: a verification result dict (needs ``distances``, ``issame``,
            ``best_threshold``).
        path: the PNG file to write.
        title: chart title.
        bins: histogram bins (default 60).

    Returns:
        The written path.

    Example:
        >>> plot_score_histogram(result, "lfw_scores.png")  # doctest: +SKIP
    """
    for key in ("distances", "issame", "best_threshold"):
        if key not in result:
            raise ValueError(
                f"result must be a verification result dict with '{key}'. "
                f"Received: keys={sorted(result)}"
            )
    scores = 1.0 - np.asarray(result["distances"], np.float64) / 2.0
    issame = np.asarray(result["issame"], bool)
    threshold = 1.0 - float(result["best_threshold"]) / 2.0
    figure = _figure()
    axes = figure.add_subplot(1, 1, 1)
    edges = np.linspace(
        min(scores.min(), threshold) - 0.02, max(scores.max(), threshold) + 0.02, bins + 1
    )
    axes.hist(scores[~issame], bins=edges, alpha=0.6, label=f"impostor ({(~issame).sum()})")
    axes.hist(scores[issame], bins=edges, alpha=0.6, label=f"genuine ({issame.sum()})")
    accuracy = result.get("accuracy")
    caption = f"threshold cos={threshold:.3f}"
    if accuracy is not None:
        caption += f" (accuracy {100 * accuracy:.2f}%)"
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=caption)
    axes.set_xlabel("cosine similarity")
    axes.set_ylabel("pairs")
    axes.set_title(title)
    axes.legend(loc="best")
    return _save(figure, path)
