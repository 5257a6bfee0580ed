"""What a training run writes besides checkpoints: metrics, verification, the curve.

- :class:`MetricsLogger` appends one row per logged step to ``RUN/metrics.csv`` (kept across
  resumes) and writes the same scalars to TensorBoard (``RUN/tensorboard``).
- :class:`VerificationMonitor` runs the reference 10-fold verification protocol
  (``keras_arcface.evaluation.evaluate_verification``: flip fusion, squared-L2 distance,
  contiguous folds) on ``.bin`` sets and keeps ``embedding_best.keras`` by mean accuracy.
- :func:`plot_training_curve` draws ``RUN/training_curve.png`` from ``metrics.csv``
  (matplotlib, an optional extra).

Example:
    >>> logger = MetricsLogger("runs/x")
    >>> logger.log(100, {"loss": 3.2, "learning_rate": 0.1, "images_per_second": 410.0})
"""

import csv
import math
import os

from keras_arcface._deprecation import warn_renamed
from keras_arcface._io import atomic_open, atomic_path

CSV_NAME = "metrics.csv"
BASE_COLUMNS = ("step", "epoch", "loss", "learning_rate", "images_per_second")


def _format(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class MetricsLogger:
    """CSV rows plus TensorBoard scalars.

    Columns are ``step, epoch, loss, learning_rate, images_per_second`` then one
    ``verify/<set>/accuracy`` column per verification set (empty on steps without it).
    On resume, rows after the resumed step are dropped so the file never holds a step twice.

    Args:
        run_dir: the run folder.
        extra_columns: further column names (verification metrics). Default ``()``.
        tensorboard: write TensorBoard scalars. Default True.
        resume_step: when resuming, the restored step; rows beyond it are removed.
    """

    def __init__(self, run_dir, extra_columns=(), tensorboard=True, resume_step=None):
        self.path = os.path.join(run_dir, CSV_NAME)
        self.columns = list(BASE_COLUMNS) + [c for c in extra_columns if c not in BASE_COLUMNS]
        self._prepare(resume_step)
        self.writer = None
        if tensorboard:
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))

    def _prepare(self, resume_step):
        rows = []
        if resume_step is not None and os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with atomic_open(self.path, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def log(self, step, values):
        """Appends a row and writes the scalars (non-numbers and None are skipped)."""
        row = {"step": step, **values}
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            writer.writerow({k: _format(row.get(k)) for k in self.columns})
        if self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default(step=int(step)):
                for key, value in values.items():
                    if isinstance(value, (int, float)) and math.isfinite(value) and key != "epoch":
                        tf.summary.scalar(key, float(value))
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def read_metrics(path):
    """Reads ``metrics.csv`` into a dict of column -> list of floats (NaN where empty)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = rows[0].keys() if rows else []
    return {c: [float(r[c]) if r[c] not in ("", None) else math.nan for r in rows] for c in columns}


class VerificationMonitor:
    """Verification accuracy on ``.bin`` sets during training; tracks the best model.

    Args:
        bins: paths of ``.bin`` sets (read once with ``keras_arcface.data.load_bin``), or
            ``(name, images, issame)`` triples already in memory.
        batch_size: images per embedding batch. Default 128.
        flip: flip fusion (the reference protocol's). Default True.

    Example:
        >>> monitor = VerificationMonitor(["lfw.bin"])
        >>> scores = monitor(embedding_model)  # {"verify/lfw/accuracy": 0.99, ...}
    """

    def __init__(self, bins, batch_size=128, flip=True):
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.sets = []
        for item in bins:
            if isinstance(item, (tuple, list)):
                name, images, issame = item
            else:
                from keras_arcface.data import load_bin

                pair_set = load_bin(item)
                name = os.path.splitext(os.path.basename(item))[0]
                images, issame = pair_set.images, pair_set.issame
            self.sets.append((name, images, issame))
        self.best = -1.0

    @property
    def columns(self):
        """Metric names this monitor produces."""
        cols = []
        for name, _, _ in self.sets:
            cols += [f"verify/{name}/accuracy", f"verify/{name}/accuracy_std"]
        return cols

    def __call__(self, embed_fn):
        """Evaluates every set; returns ``{column: value}`` plus ``verify/mean_accuracy``."""
        from keras_arcface.evaluation import evaluate_verification

        scores = {}
        for name, images, issame in self.sets:
            result = evaluate_verification(
                embed_fn,
                images,
                issame,
                batch_size=self.batch_size,
                flip=self.flip,
                progress=False,
            )
            scores[f"verify/{name}/accuracy"] = float(result["accuracy"])
            scores[f"verify/{name}/accuracy_std"] = float(result["accuracy_std"])
        accs = [scores[f"verify/{name}/accuracy"] for name, _, _ in self.sets]
        scores["verify/mean_accuracy"] = sum(accs) / max(len(accs), 1)
        return scores

    def is_best(self, scores):
        """True (and remembers it) when the mean accuracy beats every earlier one."""
        mean = scores.get("verify/mean_accuracy", -1.0)
        if mean > self.best:
            self.best = mean
            return True
        return False


class Verifier(VerificationMonitor):
    """Deprecated name of :class:`VerificationMonitor`."""

    def __init__(self, *args, **kwargs):
        warn_renamed("Verifier", "VerificationMonitor")
        super().__init__(*args, **kwargs)


def plot_training_curve(metrics_path, out_path, title="training"):
    """Draws loss (and learning rate, verification accuracy) against step as a PNG.

    Args:
        metrics_path: ``RUN/metrics.csv``.
        out_path: ``RUN/training_curve.png``.
        title: figure title.

    Returns:
        ``out_path``, or None when matplotlib is not installed (a hint is printed).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('training_curve.png skipped: pip install "keras-arcface[plot]" (matplotlib)')
        return None
    data = read_metrics(metrics_path)
    if not data.get("step"):
        return None
    acc_cols = [c for c in data if c.startswith("verify/") and c.endswith("/accuracy")]
    fig, axes = plt.subplots(1, 2 if acc_cols else 1, figsize=(11 if acc_cols else 6, 4))
    axes = list(axes) if acc_cols else [axes]
    ax = axes[0]
    ax.plot(data["step"], data["loss"], color="tab:blue", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(data["step"], data["learning_rate"], color="tab:orange", alpha=0.7)
    lr_ax.set_ylabel("learning rate", color="tab:orange")
    ax.set_title(f"{title}: loss and learning rate")
    if acc_cols:
        for col in acc_cols:
            points = [(s, a) for s, a in zip(data["step"], data[col]) if not math.isnan(a)]
            if points:
                xs, ys = zip(*points)
                axes[1].plot(xs, ys, marker="o", label=col.split("/")[1])
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("verification accuracy")
        axes[1].set_title("held-out verification (10-fold)")
        axes[1].grid(alpha=0.3)
        axes[1].legend()
    fig.tight_layout()
    try:
        with atomic_path(out_path, suffix=".png") as temporary:
            fig.savefig(temporary, dpi=110)
    finally:
        plt.close(fig)
    return out_path
