"""Face identification (1:N search): gallery/probe split, rank-k accuracy, TPIR at FPIR.

Scores are cosine similarities of L2-normalized embeddings (higher = more similar). A probe
is *mated* when its identity is enrolled in the gallery and *non-mated* (open-set) otherwise.

- Rank-k accuracy (closed set, mated probes only): the probe's identity is among the k
  best-scoring gallery identities. With several gallery images per identity, an identity
  scores the maximum over its images; the rank of the mate is 1 + the number of other
  identities scoring strictly higher (ties go to the mate).
- TPIR at FPIR (open set, NIST FRVT style): a threshold T is set on the non-mated probes so that
  at most a fraction FPIR of them has a top-1 score above T; TPIR is the fraction of mated
  probes whose mate is ranked first AND scores above T.

Search is vectorised: float32 matrix products over chunks of probes sized to keep the score
block near 64 MiB, so a 100k x 512 gallery runs on a laptop CPU.
"""

import dataclasses
import time

import numpy as np

from keras_arcface.evaluation.verification import format_far

DEFAULT_RANKS = (1, 5)
DEFAULT_FPIR_TARGETS = (1e-1, 1e-2, 1e-3)
_SCORE_BLOCK_ELEMENTS = 1 << 24  # 64 MiB of float32 scores per chunk


def split_gallery_probe(labels, *, gallery_per_identity=1, open_set_fraction=0.0, seed=0):
    """Splits images into a gallery and probes by identity.

    For every identity the first ``gallery_per_identity`` images (in index order) are enrolled
    and the rest become mated probes. A fraction ``open_set_fraction`` of the identities
    (chosen with ``seed``) is left out of the gallery entirely: all their images become
    non-mated (open-set) probes. An identity with no more than ``gallery_per_identity`` images
    is enrolled whole (it acts as a distractor).

    Args:
        labels: ``[N]`` identity labels (ints or strings).
        gallery_per_identity: gallery images per enrolled identity (default 1).
        open_set_fraction: fraction of identities kept out of the gallery, 0..1 (default 0).
        seed: seed of the open-set choice (default 0).

    Returns:
        ``(gallery_indices, probe_indices)``, sorted int64 arrays.

    Example:
        >>> split_gallery_probe([0, 0, 1, 1, 1])
        (array([0, 2]), array([1, 3, 4]))
    """
    labels = _check_labels(labels, "labels")
    gallery_per_identity = int(gallery_per_identity)
    if gallery_per_identity < 1:
        raise ValueError(
            "gallery_per_identity must be at least 1. "
            f"Received: gallery_per_identity={gallery_per_identity}"
        )
    if not 0.0 <= float(open_set_fraction) < 1.0:
        raise ValueError(
            f"open_set_fraction must lie in [0, 1). Received: open_set_fraction={open_set_fraction}"
        )
    identities, inverse = np.unique(labels, return_inverse=True)
    num_open = int(round(float(open_set_fraction) * len(identities)))
    is_open = np.zeros(len(identities), dtype=bool)
    is_open[np.random.default_rng(seed).permutation(len(identities))[:num_open]] = True

    order = np.argsort(inverse, kind="stable")  # images grouped by identity, in index order
    counts = np.bincount(inverse, minlength=len(identities))
    position = np.empty(len(labels), dtype=np.int64)
    position[order] = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
    enrolled = ~is_open[inverse] & (position < gallery_per_identity)
    return np.flatnonzero(enrolled), np.flatnonzero(~enrolled)


def search(queries, gallery, *, k=5, chunk_size=None, normalized=False, progress=False):
    """Finds the ``k`` most similar gallery embeddings of every query (cosine similarity).

    Args:
        queries: ``[Q, D]`` query embeddings (raw or normalized; normalized here).
        gallery: ``[G, D]`` gallery embeddings (raw or normalized).
        k: neighbours per query (default 5; capped at G).
        chunk_size: queries per matrix product (default: a ~64 MiB score block).
        normalized: both inputs are float32 and already L2-normalized; skips a pass over
            the gallery when it is searched repeatedly (default False).
        progress: show a tqdm progress bar (default False).

    Returns:
        ``(indices, scores)``: int64 ``[Q, k]`` gallery indices and float32 ``[Q, k]``
        similarities, best first (ties by lower gallery index).

    Example:
        >>> gallery = np.eye(3)
        >>> indices, scores = search(np.array([[0.0, 2.0, 1.0]]), gallery, k=2)
        >>> indices.tolist(), [round(float(s), 3) for s in scores[0]]
        ([[1, 2]], [0.894, 0.447])
    """
    queries, gallery = _normalized_pair(queries, gallery, skip=normalized)
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be a positive integer. Received: k={k}")
    k = min(k, len(gallery))
    indices = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    for begin, block in _score_blocks(queries, gallery, chunk_size, progress, "search"):
        if k < block.shape[1]:
            top = np.argpartition(block, -k, axis=1)[:, -k:]
        else:
            top = np.broadcast_to(np.arange(block.shape[1]), block.shape).copy()
        top_scores = np.take_along_axis(block, top, axis=1)
        # argpartition breaks ties at the k-th place arbitrarily; redo those rare rows stably.
        kth = top_scores.min(axis=1, keepdims=True)
        for row in np.flatnonzero(np.count_nonzero(block >= kth, axis=1) > k):
            top[row] = np.argsort(-block[row], kind="stable")[:k]
            top_scores[row] = block[row, top[row]]
        order = np.lexsort((top, -top_scores), axis=1)
        indices[begin : begin + len(block)] = np.take_along_axis(top, order, axis=1)
        scores[begin : begin + len(block)] = np.take_along_axis(top_scores, order, axis=1)
    return indices, scores


def identification_metrics(
    probe_embeddings,
    probe_labels,
    gallery_embeddings,
    gallery_labels,
    *,
    ranks=DEFAULT_RANKS,
    fpir_targets=DEFAULT_FPIR_TARGETS,
    chunk_size=None,
    progress=False,
):
    """Closed-set rank-k accuracy and open-set TPIR at FPIR of a probe set against a gallery.

    Args:
        probe_embeddings: ``[P, D]`` probe embeddings (raw or normalized).
        probe_labels: ``[P]`` probe identities; a label absent from the gallery makes the
            probe non-mated (open set).
        gallery_embeddings: ``[G, D]`` gallery embeddings.
        gallery_labels: ``[G]`` gallery identities (several images per identity allowed).
        ranks: ranks k reported as ``rank_k`` accuracy (default (1, 5)).
        fpir_targets: FPIR values for TPIR (default 1e-1, 1e-2, 1e-3); a target below
            1 / (number of non-mated probes) is reported as ``tpir=None`` with a note.
        chunk_size: probes per matrix product (default: a ~64 MiB score block).
        progress: show a tqdm progress bar (default False).

    Returns:
        dict with ``rank_<k>`` for every k (None without mated probes), ``cmc`` (accuracy at
        ranks 1..max(ranks)), ``tpir_at_fpir`` (list of dicts with ``fpir_target``, ``tpir``,
        ``fpir``, ``threshold``, ``note``), counts (``num_probes``, ``num_mated``,
        ``num_nonmated``, ``num_gallery``, ``num_gallery_identities``), ``seconds``, and
        per-probe arrays ``probe_ranks`` (0 for non-mated) and ``top1_scores``.

    Example:
        >>> gallery = np.eye(3); probes = np.array([[1.0, 0.2, 0], [0, 0.1, 1.0], [1, 1, 1.0]])
        >>> result = identification_metrics(probes, [0, 2, 7], gallery, [0, 1, 2])
        >>> result["rank_1"], result["num_nonmated"]
        (1.0, 1)
    """
    start = time.perf_counter()
    probes, probe_labels, gallery, gallery_labels = _check_sides(
        probe_embeddings, probe_labels, gallery_embeddings, gallery_labels
    )
    ranks = _check_ranks(ranks)
    fpir_targets = _check_fpir_targets(fpir_targets)
    layout = _GalleryLayout.build(gallery_labels, probe_labels)
    scores = _rank_probes(probes, gallery[layout.order], layout, chunk_size, progress)
    mated = layout.mated
    num_mated = int(mated.sum())
    cmc = _cmc(scores.ranks[mated], max(ranks))
    result = {"cmc": cmc}
    result.update({f"rank_{rank}": cmc[rank - 1] for rank in ranks})
    result["tpir_at_fpir"] = [
        _tpir_at_fpir(target, scores.top1[~mated], scores.mate[mated], scores.top1_is_mate[mated])
        for target in fpir_targets
    ]
    result.update(
        num_probes=int(len(probes)),
        num_mated=num_mated,
        num_nonmated=int(len(probes) - num_mated),
        num_gallery=int(len(gallery)),
        num_gallery_identities=int(len(layout.identities)),
        probe_ranks=scores.ranks,
        top1_scores=scores.top1,
        seconds=time.perf_counter() - start,
    )
    return result


def _check_sides(probe_embeddings, probe_labels, gallery_embeddings, gallery_labels):
    probe_labels = _check_labels(probe_labels, "probe_labels")
    gallery_labels = _check_labels(gallery_labels, "gallery_labels")
    probes, gallery = _normalized_pair(probe_embeddings, gallery_embeddings)
    _check_lengths(probes, probe_labels, "probe")
    _check_lengths(gallery, gallery_labels, "gallery")
    return probes, probe_labels, gallery, gallery_labels


def _check_fpir_targets(fpir_targets):
    fpir_targets = tuple(float(t) for t in fpir_targets)
    if any(not 0 < t < 1 for t in fpir_targets):
        raise ValueError(f"fpir_targets must lie in (0, 1). Received: fpir_targets={fpir_targets}")
    return fpir_targets


def _cmc(mated_ranks, max_rank):
    """Cumulative match characteristic at ranks 1..max_rank (None without mated probes)."""
    if len(mated_ranks) == 0:
        return [None] * max_rank
    first_hits = np.bincount(mated_ranks, minlength=max_rank + 1)[1 : max_rank + 1]
    return (np.cumsum(first_hits) / len(mated_ranks)).tolist()


@dataclasses.dataclass(frozen=True)
class _GalleryLayout:
    """Gallery columns grouped by identity, and where each probe's mate identity sits."""

    identities: np.ndarray  # sorted unique gallery identities
    order: np.ndarray  # gallery rows, grouped by identity (stable)
    starts: np.ndarray  # first column of each identity in that order
    mated: np.ndarray  # bool [P]: the probe's identity is in the gallery
    mate_column: np.ndarray  # [P] the identity index of the mate (0 for non-mated)

    @classmethod
    def build(cls, gallery_labels, probe_labels):
        identities, gallery_ids = np.unique(gallery_labels, return_inverse=True)
        order = np.argsort(gallery_ids, kind="stable")
        starts = np.searchsorted(gallery_ids[order], np.arange(len(identities)))
        position = np.minimum(np.searchsorted(identities, probe_labels), len(identities) - 1)
        mated = identities[position] == probe_labels
        return cls(identities, order, starts, mated, np.where(mated, position, 0))


@dataclasses.dataclass(frozen=True)
class _ProbeScores:
    ranks: np.ndarray  # int64 [P]: rank of the mate identity (1 = first), 0 for non-mated
    top1: np.ndarray  # float32 [P]: best identity score
    top1_is_mate: np.ndarray  # bool [P]
    mate: np.ndarray  # float32 [P]: the mate identity's score, -inf for non-mated


def _rank_probes(probes, grouped_gallery, layout, chunk_size, progress):
    """Scores every probe against every identity (its best image), block by block."""
    one_per_identity = len(layout.identities) == len(grouped_gallery)
    scores = _ProbeScores(
        ranks=np.zeros(len(probes), dtype=np.int64),
        top1=np.empty(len(probes), dtype=np.float32),
        top1_is_mate=np.zeros(len(probes), dtype=bool),
        mate=np.full(len(probes), -np.inf, dtype=np.float32),
    )
    blocks = _score_blocks(probes, grouped_gallery, chunk_size, progress, "identification")
    for begin, block in blocks:
        if not one_per_identity:
            block = np.maximum.reduceat(block, layout.starts, axis=1)
        rows = slice(begin, begin + len(block))
        mated = layout.mated[rows]
        mate = block[np.arange(len(block)), layout.mate_column[rows]]
        higher = np.count_nonzero(block > mate[:, None], axis=1)
        scores.ranks[rows] = np.where(mated, higher + 1, 0)
        scores.mate[rows] = np.where(mated, mate, -np.inf)
        scores.top1[rows] = block.max(axis=1)
        scores.top1_is_mate[rows] = mated & (higher == 0)
    return scores


def evaluate_identification(
    embed_fn,
    images,
    labels,
    *,
    gallery_per_identity=1,
    open_set_fraction=0.1,
    seed=0,
    batch_size=64,
    flip=True,
    progress=True,
    ranks=DEFAULT_RANKS,
    fpir_targets=DEFAULT_FPIR_TARGETS,
    description="embedding",
):
    """Embeds labelled images, splits them by identity and runs :func:`identification_metrics`.

    Args:
        embed_fn: callable mapping float32 ``[B, H, W, 3]`` 0..255 to ``[B, D]``.
        images: ``[N, H, W, 3]`` uint8 or float32 RGB 0..255.
        labels: ``[N]`` identity labels.
        gallery_per_identity: see :func:`split_gallery_probe` (default 1).
        open_set_fraction: identities kept out of the gallery (default 0.1).
        seed: seed of the open-set choice (default 0).
        batch_size: images per ``embed_fn`` call (default 64).
        flip: add the mirror image's embedding, as in verification (default True).
        progress: show progress bars (default True).
        ranks: ranks reported (default (1, 5)).
        fpir_targets: FPIR values for TPIR.
        description: label of the progress bars.

    Returns:
        :func:`identification_metrics`'s dict plus ``gallery_per_identity``,
        ``open_set_fraction`` and ``flip``.

    Example:
        >>> result = evaluate_identification(embedder.embed, images, labels)  # doctest: +SKIP
    """
    from keras_arcface.evaluation.verification import embed_fused

    labels = _check_labels(labels, "labels")
    gallery_idx, probe_idx = _split_images(
        images, labels, gallery_per_identity, open_set_fraction, seed
    )
    embeddings, _ = embed_fused(
        embed_fn,
        images,
        batch_size=batch_size,
        progress=progress,
        description=description,
        flip=flip,
    )
    result = identification_metrics(
        embeddings[probe_idx],
        labels[probe_idx],
        embeddings[gallery_idx],
        labels[gallery_idx],
        ranks=ranks,
        fpir_targets=fpir_targets,
        progress=progress,
    )
    result.update(
        gallery_per_identity=int(gallery_per_identity),
        open_set_fraction=float(open_set_fraction),
        flip=bool(flip),
    )
    return result


# ----------------------------------------------------------------------------- internals


def _split_images(images, labels, gallery_per_identity, open_set_fraction, seed):
    if len(images) != len(labels):
        raise ValueError(
            "images and labels must have the same length. "
            f"Received: len(images)={len(images)}, len(labels)={len(labels)}"
        )
    gallery_idx, probe_idx = split_gallery_probe(
        labels,
        gallery_per_identity=gallery_per_identity,
        open_set_fraction=open_set_fraction,
        seed=seed,
    )
    if len(probe_idx) == 0:
        raise ValueError(
            "No probes: every identity has at most gallery_per_identity images. "
            f"Received: gallery_per_identity={gallery_per_identity}, num_images={len(labels)}"
        )
    return gallery_idx, probe_idx


def _tpir_at_fpir(target, nonmated_top1, mate_scores, mate_first):
    entry = {"fpir_target": target, "tpir": None, "fpir": None, "threshold": None, "note": None}
    if len(nonmated_top1) == 0 or len(mate_scores) == 0:
        entry["note"] = (
            f"TPIR at FPIR needs mated and non-mated probes; there are {len(mate_scores)} "
            f"mated and {len(nonmated_top1)} non-mated"
        )
        return entry
    allowed = int(np.floor(target * len(nonmated_top1) + 1e-9))
    if allowed < 1:
        entry["note"] = (
            f"FPIR {format_far(target)} is below what the probes can resolve: with "
            f"{len(nonmated_top1)} non-mated probes the smallest non-zero FPIR is "
            f"{1 / len(nonmated_top1):.2e}"
        )
        return entry
    descending = np.sort(nonmated_top1)[::-1]
    # Accept scores strictly above the (allowed+1)-th highest non-mated score.
    threshold = descending[allowed] if allowed < len(descending) else -np.inf
    entry.update(
        tpir=float(np.count_nonzero(mate_first & (mate_scores > threshold)) / len(mate_scores)),
        fpir=float(np.count_nonzero(nonmated_top1 > threshold) / len(nonmated_top1)),
        threshold=float(threshold),
    )
    return entry


def _score_blocks(queries, gallery, chunk_size, progress, desc):
    from tqdm.auto import tqdm

    if chunk_size is None:
        chunk_size = max(1, _SCORE_BLOCK_ELEMENTS // max(len(gallery), 1))
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ValueError(
            f"chunk_size must be a positive integer. Received: chunk_size={chunk_size}"
        )
    gallery_t = gallery.T  # a transposed view: BLAS reads it without a copy
    with tqdm(
        total=len(queries), desc=desc, unit="probe", disable=not progress, leave=False
    ) as bar:
        for begin in range(0, len(queries), chunk_size):
            block = queries[begin : begin + chunk_size] @ gallery_t
            yield begin, block
            bar.update(len(block))


def _normalized_pair(queries, gallery, skip=False):
    queries = np.asarray(queries)
    gallery = np.asarray(gallery)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            "Embeddings must be 2-D arrays with the same width [N, D]. "
            f"Received: queries.shape={queries.shape}, gallery.shape={gallery.shape}"
        )
    if len(gallery) == 0 or len(queries) == 0:
        raise ValueError(
            "The gallery and the probes must not be empty. "
            f"Received: num_queries={len(queries)}, num_gallery={len(gallery)}"
        )
    if skip:
        return queries.astype(np.float32, copy=False), gallery.astype(np.float32, copy=False)
    out = []
    for array in (queries, gallery):
        array = array.astype(np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", array, array))[:, None]
        if not np.all(np.isfinite(norms)):
            raise ValueError("Embeddings must be finite. Received: a NaN or inf value")
        array /= np.where(norms == 0, 1.0, norms)
        out.append(array)
    return out[0], out[1]


def _check_labels(labels, name):
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array. Received: {name}.shape={labels.shape}")
    return labels


def _check_lengths(embeddings, labels, name):
    if len(embeddings) != len(labels):
        raise ValueError(
            f"{name} embeddings and labels must have the same length. "
            f"Received: {name}_embeddings={len(embeddings)}, {name}_labels={len(labels)}"
        )


def _check_ranks(ranks):
    ranks = tuple(int(r) for r in ranks)
    if not ranks or min(ranks) < 1:
        raise ValueError(f"ranks must be positive integers. Received: ranks={ranks}")
    return ranks
