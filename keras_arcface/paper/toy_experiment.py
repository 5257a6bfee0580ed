"""The paper's 8-identity toy experiment: 2-D features under Softmax and ArcFace.

Deng et al., arXiv 1801.07698, section 2.1 and Figure 3: with 2-D embeddings, softmax
gives roughly separable features with ambiguous boundaries, while ArcFace leaves a
clear angular gap between neighbouring classes. Here the identities come from the
package's synthetic face renderer (``keras_arcface.data.render_identities``), the
network is the ``toy2d`` backbone preset, and the gaps are measured, not drawn by eye.
"""

import dataclasses
import math
import os

import numpy as np

from keras_arcface._deprecation import RenamedKeys
from keras_arcface._math import l2_normalize
from keras_arcface.paper._io import atomic_save_figure, require_matplotlib
from keras_arcface.paper.trainer import Objective, TrainConfig, train


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """Settings of the toy experiment.

    Args:
        num_identities: identities (default 8, the paper's).
        images_per_identity: synthetic images per identity (default 1500).
        image_size: rendered image side in pixels (default 32; small is enough here).
        steps: SGD steps per loss (default 1500).
        scale: ArcFace scale s (default 16; with 2-D features and 8 classes a
            moderate scale trains reliably).
        margin: ArcFace additive angular margin in radians (default 0.5).
        quantile: fraction of each class's samples ignored at either edge when
            measuring the arc it occupies (default 0.01, i.e. the 1%-99% arc).
        margin_warmup_fraction: share of the ArcFace run trained first without the
            margin (Norm-Softmax on the same head), default 0.
        nuisance: multiplier of the renderer's default per-image nuisance (pose,
            lighting, blur, noise, occlusion, ...); default 0.5: the paper's toy uses
            clean identities with enough samples, and 2-D features of a tiny network
            cannot hold the full benchmark's difficulty.
        seed: seeds data, weights and batches (default 0).
    """

    num_identities: int = 8
    images_per_identity: int = 1500
    image_size: int = 32
    steps: int = 1500
    scale: float = 16.0
    margin: float = 0.5
    quantile: float = 0.01
    margin_warmup_fraction: float = 0.0
    nuisance: float = 0.5
    seed: int = 0

    def __post_init__(self):
        for name in ("num_identities", "images_per_identity", "image_size", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2. Received: {name}={value!r}")
        if not 0.0 <= self.margin_warmup_fraction < 1.0:
            raise ValueError(
                "margin_warmup_fraction must be in [0, 1). "
                f"Received: margin_warmup_fraction={self.margin_warmup_fraction!r}"
            )
        if not 0.0 <= self.nuisance <= 1.0:
            raise ValueError(f"nuisance must be in [0, 1]. Received: nuisance={self.nuisance!r}")
        if not 0.0 <= self.quantile < 0.5:
            raise ValueError(f"quantile must be in [0, 0.5). Received: quantile={self.quantile!r}")


REDUCED_TOY = ToyConfig(images_per_identity=60, steps=30)


def _wrap(angle):
    """Wraps angles (radians) to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def angular_gaps(embeddings, labels, quantile=0.01):
    """Measures the angular gap between neighbouring classes of 2-D features.

    Each class occupies an arc around its circular-mean direction, from the
    ``quantile`` to the ``1 - quantile`` quantile of its samples' signed angular
    offsets. Classes are ordered by mean direction around the circle; the gap between
    neighbours is the angle from the end of one arc to the start of the next
    (negative when the arcs overlap).

    Args:
        embeddings: ``[N, 2]`` features (not necessarily normalized).
        labels: ``[N]`` integer labels.
        quantile: fraction of samples ignored at each edge of an arc (0 = all samples).

    Returns:
        dict with ``order`` (classes around the circle), ``centers_deg``,
        ``arcs_deg`` (start, end per class in order), ``gaps_deg`` (one per neighbouring
        pair, in order, the last closing the circle), ``min_gap_deg``, ``mean_gap_deg``.

    Example:
        >>> angles = np.radians([0, 10, 90, 100])
        >>> points = np.stack([np.cos(angles), np.sin(angles)], 1)
        >>> angular_gaps(points, [0, 0, 1, 1], quantile=0.0)["gaps_deg"]
        [80.0, 260.0]
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if embeddings.ndim != 2 or embeddings.shape[1] != 2:
        raise ValueError(
            "angular_gaps needs 2-D features of shape [N, 2]. "
            f"Received: embeddings.shape={embeddings.shape}"
        )
    phi = np.arctan2(embeddings[:, 1], embeddings[:, 0])
    classes = np.unique(labels)
    centers, lows, highs = _class_arcs(phi, labels, classes, quantile)
    order = np.argsort(centers)
    gaps = _neighbour_gaps(order, centers, lows, highs)
    starts = [centers[i] + lows[i] for i in range(len(classes))]
    ends = [centers[i] + highs[i] for i in range(len(classes))]
    gaps_deg = [round(float(np.degrees(g)), 2) for g in gaps]
    result = {
        "order": [int(classes[i]) for i in order],
        "centers_deg": [round(float(np.degrees(centers[i])), 2) for i in order],
        "arcs_deg": [
            [round(float(np.degrees(starts[i])), 2), round(float(np.degrees(ends[i])), 2)]
            for i in order
        ],
        "gaps_deg": gaps_deg,
        "min_gap_deg": min(gaps_deg),
        "mean_gap_deg": round(float(np.mean(gaps_deg)), 2),
    }
    return RenamedKeys(result, renamed={"centres_deg": "centers_deg"})


def _class_arcs(phi, labels, classes, quantile):
    """Per class: circular-mean direction in [0, 2 pi) and the arc's (low, high) offsets."""
    centers, lows, highs = [], [], []
    for c in classes:
        angles = phi[labels == c]
        mean = math.atan2(np.mean(np.sin(angles)), np.mean(np.cos(angles)))
        low, high = np.quantile(_wrap(angles - mean), [quantile, 1.0 - quantile])
        center = float(np.mod(mean, 2.0 * np.pi))
        centers.append(0.0 if center > 2.0 * np.pi - 1e-9 else center)  # -0 is 0, not 2 pi
        lows.append(low)
        highs.append(high)
    return centers, lows, highs


def _neighbour_gaps(order, centers, lows, highs):
    """Radians from each arc's end to the next arc's start, going round in ``order``."""
    # Centers in increasing order on [0, 2 pi); the last neighbour is the first plus 2 pi.
    gaps = []
    for position, index in enumerate(order):
        following = order[(position + 1) % len(order)]
        turn = 2.0 * np.pi if position == len(order) - 1 else 0.0
        start_next = centers[following] + turn + lows[following]
        gaps.append(start_next - (centers[index] + highs[index]))
    return gaps


TOY_LOSSES = (("Softmax", "softmax"), ("ArcFace", "arcface"))


def toy_difficulty(nuisance):
    """The renderer's difficulty knobs with every scalar nuisance multiplied by ``nuisance``.

    Ranges given as tuples (face scale, JPEG quality) keep their defaults.

    Example:
        >>> toy_difficulty(0.5)["occlusion_probability"]  # half the default
    """
    from keras_arcface.data import SyntheticDifficulty

    defaults = SyntheticDifficulty()
    return {
        field.name: getattr(defaults, field.name) * nuisance
        for field in dataclasses.fields(defaults)
        if isinstance(getattr(defaults, field.name), (int, float))
    }


def _center_directions(head):
    """Unit class-center directions ``[num_classes, 2]`` from a head's kernel."""
    from keras_arcface import layers

    kernel = np.asarray(head.trainable_weights[0], dtype=np.float64)
    # NormDense holds one center per row; a Dense kernel is (D, num_classes).
    centers = kernel if isinstance(head, layers.NormDense) else kernel.T
    return l2_normalize(centers, axis=1)


def _phases(kind, config):
    """The (loss, steps) phases of one toy run; ArcFace may start without its margin."""
    from keras_arcface import losses

    if kind == "softmax":
        return [(losses.get("softmax"), config.steps)]
    arcface = losses.get("arcface", margin=config.margin, scale=config.scale)
    warmup = int(round(config.margin_warmup_fraction * config.steps))
    if warmup == 0:
        return [(arcface, config.steps)]
    return [
        (losses.get("norm_softmax", scale=config.scale), warmup),
        (arcface, config.steps - warmup),
    ]


def _train_toy(kind, images, labels, config, progress):
    import keras
    from tqdm.auto import tqdm

    from keras_arcface import layers, models

    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    backbone = models.get_backbone("toy2d", input_shape=(config.image_size, config.image_size, 3))
    if kind == "softmax":
        head = keras.layers.Dense(config.num_identities, name="classifier")
    else:
        head = layers.NormDense(config.num_identities, name="classifier")
    trainer = TrainConfig(identities_per_batch=config.num_identities, images_per_identity=16)
    seconds, last_loss = 0.0, float("nan")
    with tqdm(total=config.steps, desc=f"toy {kind}", disable=not progress) as bar:
        for phase, (loss, steps) in enumerate(_phases(kind, config)):
            trained = train(
                backbone,
                Objective(head=head, head_losses=[loss]),
                images,
                labels,
                steps=steps,
                config=trainer,
                seed=config.seed + phase,
                progress=lambda step, value, bar=bar: bar.update(1),
            )
            seconds += trained.seconds
            last_loss = trained.last_loss
    return backbone, head, seconds, last_loss


def run_toy_experiment(config=None, progress=True, rendered=None):
    """Trains the toy2d network with Softmax and with ArcFace and measures the gaps.

    Args:
        config: a `ToyConfig` (default ``ToyConfig()``: 8 identities x 1500 images).
        progress: show tqdm bars while training.
        rendered: optional ``(images, labels)`` to use instead of rendering them.

    Returns:
        ``{"Softmax": result, "ArcFace": result}``; each result holds ``embeddings``
        (unit 2-D features), ``labels``, ``centers`` (unit class directions),
        ``gaps`` (from `angular_gaps`), ``train_accuracy``, ``train_seconds`` and
        ``final_loss``.

    Example:
        >>> results = run_toy_experiment(REDUCED_TOY)
        >>> results["ArcFace"]["gaps"]["min_gap_deg"]
    """
    from keras_arcface import data, evaluation

    config = config or ToyConfig()
    if rendered is None:
        rendered = data.render_identities(
            config.num_identities,
            config.images_per_identity,
            config.seed,
            image_size=config.image_size,
            progress=progress,
            **toy_difficulty(config.nuisance),
        )
    images = np.asarray(rendered[0], dtype=np.uint8)
    labels = np.asarray(rendered[1], dtype=np.int32)
    results = {}
    for label, kind in TOY_LOSSES:
        backbone, head, seconds, last_loss = _train_toy(kind, images, labels, config, progress)
        features = evaluation.embed_images(
            lambda batch, model=backbone: model(batch, training=False),
            images,
            batch_size=512,
            progress=False,
        )
        unit = l2_normalize(features, axis=1)
        centers = _center_directions(head)
        if kind == "softmax":  # a Dense head decides on raw features (norms and biases count)
            scores = np.asarray(head(features.astype(np.float32)))
        else:
            scores = unit @ centers.T
        results[label] = {
            "embeddings": unit,
            "labels": labels,
            "centers": centers,
            "gaps": angular_gaps(unit, labels, quantile=config.quantile),
            "train_accuracy": float(np.mean(np.argmax(scores, axis=1) == labels)),
            "train_seconds": round(seconds, 1),
            "final_loss": last_loss,
        }
    return results


def plot_toy_experiment(path, results, max_points_per_class=400, seed=0):
    """Draws the toy features on the unit circle, Softmax beside ArcFace.

    Dots are samples (normalized features), lines the class-center directions, and the
    shaded wedges the measured gaps between neighbouring classes (labelled in degrees;
    a red wedge marks an overlap).

    Args:
        path: output PNG file (written atomically).
        results: the dict from `run_toy_experiment`.
        max_points_per_class: samples drawn per class, to keep the figure legible.
        seed: seed of the sample subset drawn.
    """
    plt = require_matplotlib()
    rng = np.random.default_rng(seed)
    figure, axes = plt.subplots(1, len(results), figsize=(5.6 * len(results), 5.6))
    axes = np.atleast_1d(axes)
    colours = plt.get_cmap("tab10")
    for axis, (label, result) in zip(axes, results.items()):
        embeddings, labels, gaps = result["embeddings"], result["labels"], result["gaps"]
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            shown = rng.choice(members, min(max_points_per_class, members.size), replace=False)
            radius = 1.0 + 0.04 * rng.standard_normal(shown.size)
            axis.scatter(
                radius * embeddings[shown, 0],
                radius * embeddings[shown, 1],
                s=3,
                alpha=0.4,
                color=colours(int(c) % 10),
            )
        for c, center in enumerate(result["centers"]):
            axis.plot([0, 1.25 * center[0]], [0, 1.25 * center[1]], color=colours(c % 10), lw=1.4)
        _draw_gaps(axis, gaps)
        axis.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.6", lw=0.8))
        axis.set_xlim(-1.5, 1.5)
        axis.set_ylim(-1.5, 1.5)
        axis.set_aspect("equal")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(
            f"{label}: min gap {gaps['min_gap_deg']:.1f}°, mean gap {gaps['mean_gap_deg']:.1f}°",
            fontsize=10,
        )
    figure.suptitle("8 synthetic identities, 2-D features on the unit circle (paper Fig. 3)")
    atomic_save_figure(figure, path)


def _draw_gaps(axis, gaps):
    from matplotlib.patches import Wedge

    arcs = gaps["arcs_deg"]
    for position, gap in enumerate(gaps["gaps_deg"]):
        end = arcs[position][1]
        if gap >= 0:
            wedge = Wedge((0, 0), 1.12, end, end + gap, width=0.2, color="0.85", alpha=0.9)
        else:
            wedge = Wedge((0, 0), 1.12, end + gap, end, width=0.2, color="tab:red", alpha=0.35)
        axis.add_patch(wedge)
        middle = np.radians(end + gap / 2.0)
        axis.text(
            1.36 * np.cos(middle),
            1.36 * np.sin(middle),
            f"{gap:.0f}°",
            ha="center",
            va="center",
            fontsize=8,
        )


def summarise_toy(results):
    """The JSON-friendly part of `run_toy_experiment`'s results (no arrays)."""
    return {
        label: {
            "gaps": result["gaps"],
            "train_accuracy": round(result["train_accuracy"], 4),
            "train_seconds": result["train_seconds"],
            "final_loss": round(float(result["final_loss"]), 4),
        }
        for label, result in results.items()
    }


def write_toy_figure(out_dir, config=None, progress=True):
    """Runs the toy experiment and writes ``toy_softmax_arcface.png`` into ``out_dir``.

    Returns:
        the `summarise_toy` dict plus the figure's path under ``"figure"``.
    """
    config = config or ToyConfig()
    results = run_toy_experiment(config, progress=progress)
    path = os.path.join(out_dir, "toy_softmax_arcface.png")
    plot_toy_experiment(path, results, seed=config.seed)
    return {"figure": path, "config": dataclasses.asdict(config), **summarise_toy(results)}
