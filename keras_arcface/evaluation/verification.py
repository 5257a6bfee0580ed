"""Face verification on image pairs: the reference 10-fold protocol, TAR@FAR, ROC, EER.

The protocol is the one the ArcFace paper's numbers (LFW, CFP-FP, AgeDB-30) are
reported with (InsightFace's ``verification.py``):

1. embeddings L2-normalized, squared Euclidean distance per pair (0..4);
2. thresholds ``arange(0, 4, 0.01)``, a pair is predicted "same" when ``distance < threshold``;
3. the pairs are cut into 10 contiguous folds (no shuffling); for every fold the threshold
   with the best accuracy on the other 9 folds (the FIRST maximum on ties) is applied to the
   held-out fold; the reported accuracy is the mean (and population std) over the folds;
4. TAR at a FAR target: on the 9 training folds the FAR of every threshold of the finer grid
   ``arange(0, 4, 0.001)`` is measured and the threshold for the target FAR is found by
   piecewise-linear interpolation of threshold against FAR; the TAR (and the FAR actually
   reached) is then measured on the held-out fold at that threshold.

Everything here is plain NumPy and vectorised through sorted counts, so the whole protocol
on the 6,000 LFW pairs takes milliseconds and can run inside a training loop.
"""

import math
import time

import numpy as np

from keras_arcface._math import l2_normalize

# The reference's grids, kept as module constants so that every caller and every test uses
# exactly the same floating-point threshold values.
ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
FAR_THRESHOLDS = np.arange(0, 4, 0.001)
DEFAULT_FAR_TARGETS = (1e-1, 1e-2, 1e-3, 1e-4)


def pair_distances(embeddings1, embeddings2):
    """Squared L2 distance between L2-normalized embeddings, pair by pair (0..4).

    Args:
        embeddings1: ``[N, D]`` first image of every pair (raw or normalized).
        embeddings2: ``[N, D]`` second image of every pair.

    Returns:
        float64 ``[N]``; ``2 - 2 * cosine`` of every pair.

    Example:
        >>> pair_distances([[1.0, 0.0]], [[0.0, 2.0]]).tolist()
        [2.0]
    """
    embeddings1, embeddings2 = _check_pairs(embeddings1, embeddings2)
    diff = l2_normalize(embeddings1) - l2_normalize(embeddings2)
    return np.sum(np.square(diff), axis=1)


def fold_bounds(num_pairs, nfolds):
    """The reference's contiguous folds: ``[(start, stop), ...]``, the first folds one longer.

    Same split as scikit-learn's ``KFold(n_splits=nfolds, shuffle=False)``.

    Args:
        num_pairs: number of pairs.
        nfolds: number of folds, 2..num_pairs.

    Example:
        >>> fold_bounds(7, 3)
        [(0, 3), (3, 5), (5, 7)]
    """
    num_pairs, nfolds = int(num_pairs), int(nfolds)
    if nfolds < 2 or nfolds > num_pairs:
        raise ValueError(
            f"nfolds must be at least 2 and at most the number of pairs ({num_pairs}). "
            f"Received: nfolds={nfolds}"
        )
    sizes = np.full(nfolds, num_pairs // nfolds)
    sizes[: num_pairs % nfolds] += 1
    stops = np.cumsum(sizes)
    return [(int(stop - size), int(stop)) for size, stop in zip(sizes, stops)]


def verification_metrics(
    embeddings1,
    embeddings2,
    issame,
    *,
    nfolds=10,
    thresholds=None,
    far_targets=DEFAULT_FAR_TARGETS,
    far_thresholds=None,
):
    """Runs the reference verification protocol on pair embeddings.

    Accuracy, its std and the best threshold follow the reference exactly (see the module
    docstring). TAR@FAR follows the reference's interpolation; a FAR target smaller than one
    false accept among a training fold's impostor pairs cannot be resolved and is returned as
    ``tar=None`` with a ``note`` saying so. ROC AUC and EER are computed exactly over all pairs
    (every distinct distance is a threshold), not on the grid.

    Args:
        embeddings1: ``[N, D]`` embeddings of the first image of each pair (raw or normalized;
            they are L2-normalized here).
        embeddings2: ``[N, D]`` embeddings of the second image.
        issame: ``[N]`` booleans, True for a genuine (same identity) pair.
        nfolds: number of contiguous folds (default 10, the reference's).
        thresholds: distance thresholds for accuracy (default ``arange(0, 4, 0.01)``).
        far_targets: FAR values at which TAR is reported (default 1e-1 ... 1e-4).
        far_thresholds: the finer grid for TAR@FAR (default ``arange(0, 4, 0.001)``).

    Returns:
        dict with ``accuracy``, ``accuracy_std``, ``fold_accuracies``, ``best_threshold``
        (mean over folds), ``fold_thresholds``, ``tar_at_far`` (a list of dicts with
        ``far_target``, ``tar``, ``tar_std``, ``far``, ``threshold``, ``note``), ``auc``,
        ``eer``, ``eer_threshold``, ``num_pairs``, ``num_genuine``, ``num_impostor``,
        ``nfolds``, ``seconds``, and arrays for plots: ``roc`` (``fpr``, ``tpr``,
        ``thresholds``), ``distances`` and ``issame``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a = rng.normal(size=(600, 64)); b = a + 0.1 * rng.normal(size=a.shape)
        >>> b[1::2] = rng.normal(size=(300, 64))
        >>> issame = np.arange(600) % 2 == 0
        >>> verification_metrics(a, b, issame)["accuracy"]
        1.0

    Reference: Deng et al., ArcFace (arXiv 1801.07698), section 3.2 (LFW, CFP-FP, AgeDB-30).
    """
    start = time.perf_counter()
    distances = pair_distances(embeddings1, embeddings2)
    issame = _check_issame(issame, len(distances))
    thresholds = _check_grid(
        ACCURACY_THRESHOLDS if thresholds is None else thresholds, "thresholds"
    )
    far_grid = _check_grid(
        FAR_THRESHOLDS if far_thresholds is None else far_thresholds, "far_thresholds"
    )
    far_targets = _check_far_targets(far_targets)
    folds = fold_bounds(len(distances), nfolds)

    accuracy = _fold_accuracies(distances, issame, folds, thresholds)
    result = {
        "accuracy": float(np.mean(accuracy["accuracies"])),
        "accuracy_std": float(np.std(accuracy["accuracies"])),
        "fold_accuracies": accuracy["accuracies"].tolist(),
        "best_threshold": float(np.mean(accuracy["thresholds"])),
        "fold_thresholds": accuracy["thresholds"].tolist(),
        "tar_at_far": _tar_at_fars(distances, issame, folds, far_grid, far_targets),
    }
    result.update(_exact_roc_summary(distances, issame))
    result.update(
        num_pairs=int(len(distances)),
        num_genuine=int(issame.sum()),
        num_impostor=int((~issame).sum()),
        nfolds=int(nfolds),
        distances=distances,
        issame=issame,
        seconds=time.perf_counter() - start,
    )
    return result


def evaluate_verification(
    embed_fn,
    images,
    issame,
    *,
    batch_size=64,
    flip=True,
    progress=True,
    nfolds=10,
    far_targets=DEFAULT_FAR_TARGETS,
    normalize_before_fusion=False,
    description="embedding",
):
    """Embeds a pair set and runs :func:`verification_metrics` on it.

    With ``flip`` (the reference's default), each image's embedding is the sum of the
    embeddings of the image and of its horizontal mirror, L2-normalized afterwards.
    ``mean_norm`` is the mean L2 norm of every embedding ``embed_fn`` returned (originals and
    mirrors), before any normalization: the reference's "XNorm".

    Args:
        embed_fn: callable mapping float32 ``[B, H, W, 3]`` RGB 0..255 to ``[B, D]`` embeddings.
        images: ``[2N, H, W, 3]`` uint8 or float32, RGB 0..255; pair k is images 2k, 2k+1
            (what ``keras_arcface.data.load_bin(path).images`` holds).
        issame: ``[N]`` booleans.
        batch_size: images per ``embed_fn`` call (default 64).
        flip: fuse the mirror image's embedding (default True).
        progress: show a tqdm progress bar (default True).
        nfolds: folds of the protocol (default 10).
        far_targets: FAR values for TAR@FAR.
        normalize_before_fusion: L2-normalize each embedding before adding the mirror's
            (default False: the reference sums the raw embeddings). Exported formats return
            normalized embeddings only, so ``keras-arcface eval`` sets this for every format
            to give the same numbers across formats.
        description: label of the progress bar.

    Returns:
        :func:`verification_metrics`'s dict plus ``mean_norm``, ``flip``,
        ``normalize_before_fusion``, ``embedding_dim``, ``embed_seconds`` and
        ``images_per_second``.

    Example:
        >>> images = np.zeros((20, 8, 8, 3), np.uint8)
        >>> issame = np.arange(10) % 2 == 0
        >>> fn = lambda x: x.reshape(len(x), -1)[:, :4] + 1.0
        >>> evaluate_verification(fn, images, issame, nfolds=2, progress=False)["mean_norm"]
        2.0
    """
    images = _check_images(images)
    issame = _check_issame(issame, None)
    if len(images) != 2 * len(issame):
        raise ValueError(
            "images must hold two images per pair (2 * len(issame)). "
            f"Received: len(images)={len(images)}, len(issame)={len(issame)}"
        )
    start = time.perf_counter()
    fused, norms = embed_fused(
        embed_fn,
        images,
        batch_size=batch_size,
        progress=progress,
        description=description,
        flip=flip,
        normalize_before_fusion=normalize_before_fusion,
    )
    embed_seconds = time.perf_counter() - start
    result = verification_metrics(
        fused[0::2], fused[1::2], issame, nfolds=nfolds, far_targets=far_targets
    )
    num_embedded = len(images) * (2 if flip else 1)
    result.update(
        mean_norm=float(np.mean(np.concatenate(norms))),
        flip=bool(flip),
        normalize_before_fusion=bool(normalize_before_fusion),
        embedding_dim=int(fused.shape[1]),
        embed_seconds=embed_seconds,
        images_per_second=num_embedded / max(embed_seconds, 1e-9),
    )
    return result


def embed_fused(
    embed_fn,
    images,
    *,
    batch_size=64,
    progress=True,
    description="embedding",
    flip=True,
    normalize_before_fusion=False,
):
    """Embeddings of ``images``, each fused with its mirror's (the reference's flip fusion).

    Args:
        embed_fn, images, batch_size, progress: as in :func:`embed_images`.
        description: label of the progress bars.
        flip: add the mirror image's embedding (default True); False returns the raw ones.
        normalize_before_fusion: L2-normalize both embeddings before adding them.

    Returns:
        ``(fused float64 [N, D], norms)``: ``norms`` holds the L2 norms of every embedding
        ``embed_fn`` returned (one array for the originals, one for the mirrors).

    Example:
        >>> fn = lambda x: x.reshape(len(x), -1)[:, :2] + 1.0
        >>> embed_fused(fn, np.zeros((2, 4, 4, 3)), progress=False)[0].tolist()
        [[2.0, 2.0], [2.0, 2.0]]
    """
    raw = embed_images(embed_fn, images, batch_size=batch_size, progress=progress, desc=description)
    norms = [np.linalg.norm(raw, axis=1)]
    if not flip:
        return raw, norms
    mirrored = embed_images(
        embed_fn,
        images,
        batch_size=batch_size,
        progress=progress,
        desc=f"{description} (flipped)",
        flip=True,
    )
    norms.append(np.linalg.norm(mirrored, axis=1))
    if normalize_before_fusion:
        return l2_normalize(raw) + l2_normalize(mirrored), norms
    return raw + mirrored, norms


def embed_images(embed_fn, images, *, batch_size=64, progress=True, desc="embedding", flip=False):
    """Runs ``embed_fn`` over ``images`` in batches; returns float64 ``[N, D]``.

    Args:
        embed_fn: callable mapping float32 ``[B, H, W, 3]`` 0..255 to ``[B, D]``.
        images: ``[N, H, W, 3]`` uint8 or float32 0..255.
        batch_size: images per call (default 64).
        progress: show a tqdm progress bar (default True).
        desc: label of the progress bar.
        flip: embed the horizontal mirror images instead (default False).

    Example:
        >>> embed_images(lambda x: x[:, 0, 0, :], np.ones((3, 2, 2, 3)), progress=False).shape
        (3, 3)
    """
    from tqdm.auto import tqdm

    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(
            f"batch_size must be a positive integer. Received: batch_size={batch_size}"
        )
    outputs = []
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for begin in range(0, len(images), batch_size):
            batch = np.asarray(images[begin : begin + batch_size], dtype=np.float32)
            if flip:
                batch = np.ascontiguousarray(batch[:, :, ::-1, :])
            embeddings = np.asarray(embed_fn(batch))
            if embeddings.ndim != 2 or len(embeddings) != len(batch):
                raise ValueError(
                    f"embed_fn must return one embedding row per image ([{len(batch)}, D]). "
                    f"Received: shape={embeddings.shape}"
                )
            outputs.append(embeddings.astype(np.float64))
            bar.update(len(batch))
    embeddings = np.concatenate(outputs)
    if not np.all(np.isfinite(embeddings)):
        raise ValueError(
            "embed_fn returned non-finite embeddings (NaN or inf); the model is broken or "
            f"diverged. Received: non_finite_rows={int((~np.isfinite(embeddings).all(1)).sum())}"
        )
    return embeddings


def format_far(far):
    """A short label for a FAR value: ``1e-3`` rather than ``0.001``.

    Example:
        >>> format_far(0.001), format_far(0.05)
        ('1e-3', '5e-2')
    """
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


# ----------------------------------------------------------------------------- internals


def _counts_below(distances, mask, folds, grid):
    """``[F, T]`` counts of masked pairs with ``distance < grid[t]`` inside each fold."""
    counts = np.empty((len(folds), len(grid)), dtype=np.int64)
    for f, (begin, end) in enumerate(folds):
        selected = np.sort(distances[begin:end][mask[begin:end]])
        counts[f] = np.searchsorted(selected, grid, side="left")
    return counts


def _fold_sizes(issame, folds):
    genuine = np.array([issame[b:e].sum() for b, e in folds], dtype=np.int64)
    sizes = np.array([e - b for b, e in folds], dtype=np.int64)
    return genuine, sizes - genuine


def _fold_accuracies(distances, issame, folds, grid):
    true_accepts = _counts_below(distances, issame, folds, grid)
    false_accepts = _counts_below(distances, ~issame, folds, grid)
    _, impostors = _fold_sizes(issame, folds)
    # Correct decisions = true accepts + true rejects; training folds = all folds but one.
    correct = true_accepts + (impostors[:, None] - false_accepts)
    train_correct = correct.sum(axis=0, keepdims=True) - correct
    best = np.argmax(train_correct, axis=1)  # first maximum, as the reference's np.argmax
    rows = np.arange(len(folds))
    sizes = np.array([e - b for b, e in folds], dtype=np.int64)
    return {"accuracies": correct[rows, best] / sizes, "thresholds": grid[best]}


def _interpolate_threshold(fars, grid, target):
    """The reference's ``interp1d(fars, grid, kind='slinear')(target)`` (SciPy <= 1.8).

    ``fars`` is non-decreasing with runs of equal values. On an exact hit the threshold of
    the LAST grid point with that FAR is returned; between two FAR values the interpolation
    runs from the last point of the lower run to the first point of the upper run.
    """
    if fars[-1] < target:
        return 0.0  # the reference's fallback when the target is never reached
    low = int(np.searchsorted(fars, target, side="right")) - 1
    if low == len(fars) - 1:  # the target is the largest FAR: no upper point to blend
        return float(grid[low])
    high = low + 1
    weight = (target - fars[low]) / (fars[high] - fars[low])
    return float(grid[low] + weight * (grid[high] - grid[low]))


def _tar_at_fars(distances, issame, folds, grid, targets):
    """One entry per FAR target; the training-fold FAR curves are counted once for all."""
    genuine, impostors = _fold_sizes(issame, folds)
    train_fars = None
    entries = []
    for target in targets:
        if train_fars is None and _resolvable(target, genuine, impostors) is None:
            false_accepts = _counts_below(distances, ~issame, folds, grid)
            train_impostors = impostors.sum() - impostors
            train_fars = (false_accepts.sum(axis=0) - false_accepts) / train_impostors[:, None]
        entries.append(
            _tar_at_far(distances, issame, folds, grid, target, genuine, impostors, train_fars)
        )
    return entries


def _resolvable(target, genuine, impostors):
    """None when TAR at ``target`` can be measured, else the note saying why not."""
    if np.any(genuine == 0) or np.any(impostors == 0):
        return (
            "TAR@FAR needs genuine and impostor pairs in every fold; "
            f"fold genuine counts {genuine.tolist()}, impostor counts {impostors.tolist()}"
        )
    smallest = int((impostors.sum() - impostors).min())
    if target * smallest < 1:
        return (
            f"FAR {format_far(target)} is below what the pairs can resolve: a training fold "
            f"has {smallest} impostor pairs, so its smallest non-zero FAR is {1 / smallest:.2e}"
        )
    return None


def _tar_at_far(distances, issame, folds, grid, target, genuine, impostors, train_fars):
    entry = {"far_target": target, "tar": None, "tar_std": None, "far": None, "threshold": None}
    entry["note"] = _resolvable(target, genuine, impostors)
    if entry["note"] is not None:
        return entry
    if np.any(train_fars[:, -1] < target):
        entry["note"] = (
            f"FAR {format_far(target)} is never reached on the threshold grid (largest "
            f"training FAR {train_fars[:, -1].min():.2e}); as the reference, threshold 0 is "
            "used for those folds"
        )
    tars, fars, chosen = [], [], []
    for f, (begin, end) in enumerate(folds):
        threshold = _interpolate_threshold(train_fars[f], grid, target)
        accepted = distances[begin:end] < threshold
        tars.append(np.sum(accepted & issame[begin:end]) / genuine[f])
        fars.append(np.sum(accepted & ~issame[begin:end]) / impostors[f])
        chosen.append(threshold)
    entry.update(
        tar=float(np.mean(tars)),
        tar_std=float(np.std(tars)),
        far=float(np.mean(fars)),
        threshold=float(np.mean(chosen)),
    )
    return entry


def roc_curve(distances, issame):
    """The exact ROC over all pairs: every distinct distance is a threshold (accept ``<=``).

    Args:
        distances: ``[N]`` pair distances (smaller = more similar).
        issame: ``[N]`` booleans.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``[K + 1]``, starting at ``(0, 0)`` (threshold
        ``-inf``, nothing accepted) and ending at ``(1, 1)``.

    Example:
        >>> fpr, tpr, _ = roc_curve(np.array([0.1, 0.5, 0.9]), np.array([True, False, True]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0])
    """
    distances = np.asarray(distances, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    order = np.argsort(distances, kind="stable")
    sorted_distances = distances[order]
    genuine = np.cumsum(issame[order])
    impostor = np.cumsum(~issame[order])
    # Keep only the last index of every run of equal distances.
    last = np.r_[sorted_distances[1:] != sorted_distances[:-1], True]
    tpr = np.r_[0, genuine[last]] / max(genuine[-1], 1)
    fpr = np.r_[0, impostor[last]] / max(impostor[-1], 1)
    return fpr, tpr, np.r_[-np.inf, sorted_distances[last]]


def _exact_roc_summary(distances, issame):
    fpr, tpr, thresholds = roc_curve(distances, issame)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    gap = (1 - tpr) - fpr  # FRR - FAR: 1 at the start, -1 at the end, non-increasing
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0:
        eer, eer_threshold = float(fpr[i]), float(thresholds[i])
    else:
        weight = gap[i - 1] / (gap[i - 1] - gap[i])
        eer = float(fpr[i - 1] + weight * (fpr[i] - fpr[i - 1]))
        low = thresholds[i - 1] if np.isfinite(thresholds[i - 1]) else thresholds[i]
        eer_threshold = float(low + weight * (thresholds[i] - low))
    return {
        "auc": auc,
        "eer": eer,
        "eer_threshold": eer_threshold,
        "roc": {"fpr": fpr, "tpr": tpr, "thresholds": thresholds},
    }


def _check_pairs(embeddings1, embeddings2):
    embeddings1 = np.asarray(embeddings1)
    embeddings2 = np.asarray(embeddings2)
    if embeddings1.ndim != 2 or embeddings1.shape != embeddings2.shape:
        raise ValueError(
            "embeddings1 and embeddings2 must be 2-D arrays of the same shape [N, D]. "
            f"Received: embeddings1.shape={embeddings1.shape}, "
            f"embeddings2.shape={embeddings2.shape}"
        )
    non_finite = int((~np.isfinite(embeddings1)).sum() + (~np.isfinite(embeddings2)).sum())
    if non_finite:
        raise ValueError(
            f"embeddings must be finite (no NaN or inf). Received: non_finite={non_finite}"
        )
    return embeddings1, embeddings2


def _check_issame(issame, num_pairs):
    issame = np.asarray(issame)
    if issame.ndim != 1 or (num_pairs is not None and len(issame) != num_pairs):
        raise ValueError(
            f"issame must be a 1-D array with one entry per pair ({num_pairs}). "
            f"Received: issame.shape={issame.shape}"
        )
    if issame.dtype != bool:
        if not np.all(np.isin(issame, (0, 1))):
            raise ValueError(f"issame must hold booleans (or 0/1). Received: issame={issame[:8]}")
        issame = issame.astype(bool)
    if num_pairs is not None and (issame.all() or not issame.any()):
        raise ValueError(
            "issame must contain both genuine (True) and impostor (False) pairs. "
            f"Received: num_genuine={int(issame.sum())}, num_impostor={int((~issame).sum())}"
        )
    return issame


def _check_grid(grid, name):
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 1 or np.any(np.diff(grid) <= 0):
        raise ValueError(f"{name} must be a 1-D strictly increasing array. Received: {name}={grid}")
    return grid


def _check_far_targets(far_targets):
    targets = tuple(float(t) for t in far_targets)
    if any(not (0 < t < 1) or math.isnan(t) for t in targets):
        raise ValueError(f"far_targets must lie in (0, 1). Received: far_targets={far_targets}")
    return targets


def _check_images(images):
    if not hasattr(images, "shape") or len(images.shape) != 4 or images.shape[-1] != 3:
        raise ValueError(
            "images must be an array [N, H, W, 3] (RGB, 0..255). "
            f"Received: shape={getattr(images, 'shape', type(images).__name__)}"
        )
    return images


def evaluate_model(
    model,
    bin_path_or_set,
    *,
    batch_size=64,
    flip=True,
    progress=True,
    nfolds=10,
    far_targets=DEFAULT_FAR_TARGETS,
):
    """Evaluates an embedding model on a verification set (a ``.bin`` file or arrays).

    Args:
        model: a Keras embedding model (``images`` float32 ``[None, 112, 112, 3]`` 0..255 ->
            raw ``[None, D]``, see docs/architecture.md) or any object with an
            ``embed(images)`` method, such as ``keras_arcface.inference.Embedder``.
        bin_path_or_set: path of a ``.bin`` pair set (read with
            ``keras_arcface.data.load_bin``), an object with ``images`` and ``issame``
            attributes, or a tuple ``(images, issame)``.
        batch_size: images per forward pass (default 64).
        flip: fuse the horizontally flipped image's embedding (default True).
        progress: show a progress bar (default True).
        nfolds: folds of the protocol (default 10).
        far_targets: FAR values for TAR@FAR.

    Returns:
        :func:`evaluate_verification`'s dict.

    Example:
        >>> result = evaluate_model(model, "lfw.bin")  # doctest: +SKIP
        >>> print(f"{result['accuracy']:.4f} +- {result['accuracy_std']:.4f}")  # doctest: +SKIP
    """
    images, issame = _resolve_pair_set(bin_path_or_set)
    return evaluate_verification(
        _embed_fn_of(model),
        images,
        issame,
        batch_size=batch_size,
        flip=flip,
        progress=progress,
        nfolds=nfolds,
        far_targets=far_targets,
    )


def _embed_fn_of(model):
    if callable(getattr(model, "embed", None)):
        return model.embed
    if callable(getattr(model, "predict_on_batch", None)):
        return lambda batch: np.asarray(model.predict_on_batch(batch))
    if callable(model):
        return model
    raise TypeError(
        "model must be a keras.Model, an object with an embed(images) method (Embedder) or a "
        f"callable. Received: model={type(model).__name__}"
    )


def _resolve_pair_set(bin_path_or_set):
    import os

    if isinstance(bin_path_or_set, (str, os.PathLike)):
        from keras_arcface.data import load_bin

        bin_path_or_set = load_bin(bin_path_or_set)
    if hasattr(bin_path_or_set, "images") and hasattr(bin_path_or_set, "issame"):
        return bin_path_or_set.images, bin_path_or_set.issame
    if isinstance(bin_path_or_set, (tuple, list)) and len(bin_path_or_set) == 2:
        return bin_path_or_set
    raise TypeError(
        "bin_path_or_set must be a .bin path, an object with images and issame, or a tuple "
        f"(images, issame). Received: bin_path_or_set={type(bin_path_or_set).__name__}"
    )
