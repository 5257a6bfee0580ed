"""PartialFC: the class-center head with Partial FC sampling (TensorFlow).

An et al., "Partial FC: Training 10 Million Identities on a Single Machine" (ICCVW 2021).
With millions of identities the full ``[B, N]`` cosine matrix, its softmax and the dense
update of the ``[N, D]`` center matrix dominate a training step. Each step here:

1. collects the labels of the *global* batch (all replicas) and keeps every positive class;
2. adds negatives drawn uniformly at random (without replacement) until
   ``num_sample = ceil(sample_rate * num_classes)`` classes are chosen (never fewer than the
   positives). The draw is stateless, seeded by ``(seed, step)``, so every replica and
   worker picks the same subset without communicating;
3. gathers those rows of the center matrix (``tf.gather``: the gradient reaches the matrix
   as ``tf.IndexedSlices`` and only those rows are updated, see
   ``keras_arcface.training.optimizers.CenterOptimizer``), L2-normalizes the embeddings and
   computes the cosines against the L2-normalized rows (the row norms scale the matmul
   output, with a hand-written gradient, so no normalized copy of the rows is built);
4. remaps labels to their column in the subset and applies the margin through the one
   injected callable ``logits_fn(labels, cosine)`` (a margin loss's ``logits``), then the
   softmax cross-entropy, in float32.

``sample_rate=1.0`` skips sampling and uses the whole matrix: exactly the full softmax.
The centers are stored one class per row, ``[N, D]``, the layout of ``NormDense`` too
(``keras_arcface.layers.norm_dense.CENTER_LAYOUT``). ``ShardedPartialFC`` splits the same
head across the replicas of a ``tf.distribute`` strategy.

Example:
    >>> loss = keras_arcface.losses.get("arcface")
    >>> head = PartialFC(1000, 128, sample_rate=0.1, logits_fn=loss.logits)
    >>> per_example = head.per_example_loss(embeddings, labels, step=0)  # [B]
"""

import math

import keras
import tensorflow as tf

from keras_arcface._deprecation import warn_renamed
from keras_arcface.losses.margins import safe_angle

_EPSILON = 1e-12
_INIT_CHUNK_ROWS = 8192


@keras.saving.register_keras_serializable(package="keras_arcface")
class CenterInitializer(keras.initializers.Initializer):
    """Normal(0, stddev) class centers that any block of rows can draw on its own.

    Rows are drawn in fixed chunks of 8192, chunk ``k`` from the stateless seed
    ``(seed, k)``, so a shard holding rows ``[start, stop)`` draws exactly the rows the
    whole ``[N, D]`` matrix would hold there: sharded and single-device runs start equal.

    Args:
        stddev: standard deviation. Default 0.01.
        seed: integer seed. Default 0.

    Example:
        >>> rows = CenterInitializer(seed=3).rows(1000, 2000, 512)  # [1000, 512]
    """

    def __init__(self, stddev=0.01, seed=0):
        self.stddev = float(stddev)
        self.seed = int(seed)

    def rows(self, start, stop, dim):
        """Rows ``[start, stop)`` of the logical matrix, float32 ``[stop - start, dim]``."""
        first, last = start // _INIT_CHUNK_ROWS, (max(stop, start + 1) - 1) // _INIT_CHUNK_ROWS
        chunks = [
            tf.random.stateless_normal(
                [_INIT_CHUNK_ROWS, dim], seed=[self.seed, k], stddev=self.stddev
            )
            for k in range(first, last + 1)
        ]
        block = tf.concat(chunks, 0) if len(chunks) > 1 else chunks[0]
        offset = start - first * _INIT_CHUNK_ROWS
        return block[offset : offset + (stop - start)]

    def __call__(self, shape, dtype=None):
        rows = self.rows(0, int(shape[0]), int(shape[1]))
        return tf.cast(rows, dtype or "float32")

    def get_config(self):
        return {"stddev": self.stddev, "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_arcface")
class CentreInitializer(CenterInitializer):
    """Deprecated name of :class:`CenterInitializer` (files that name it still load)."""

    def __init__(self, stddev=0.01, seed=0):
        warn_renamed("CentreInitializer", "CenterInitializer")
        super().__init__(stddev=stddev, seed=seed)


def check_head_arguments(num_classes, embedding_dim, sample_rate):
    """Validates the arguments shared by ``PartialFC`` and ``ShardedPartialFC``."""
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes!r}")
    if int(embedding_dim) < 1:
        raise ValueError(f"embedding_dim must be >= 1. Received: embedding_dim={embedding_dim!r}")
    if not 0.0 < float(sample_rate) <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1]. Received: sample_rate={sample_rate!r}")


def sample_rows(positives, num_rows, num_sample, seed):
    """Sorted row ids ``[S]``: every positive plus the top uniform scores of a seeded draw.

    Args:
        positives: int32 ids in ``[0, num_rows)`` that must be kept (duplicates allowed).
        num_rows: rows to choose from (Python int).
        num_sample: rows wanted (Python int); ``S = max(num_sample, distinct positives)``.
        seed: int64 ``[2]`` (or ``[k]``) stateless seed; equal seeds give equal draws.

    Returns:
        Sorted unique int32 row ids.
    """
    positive = tf.unique(tf.cast(tf.reshape(positives, [-1]), tf.int32)).y
    scores = tf.random.stateless_uniform([num_rows], seed=seed)
    # Positives get a score above any uniform draw, so top-k always keeps them.
    scores = tf.tensor_scatter_nd_update(
        scores, positive[:, None], tf.fill(tf.shape(positive), 2.0)
    )
    count = tf.maximum(num_sample, tf.size(positive))

    def full_top_k():
        _, index = tf.math.top_k(scores, k=count, sorted=False)
        return tf.sort(index)

    # top_k over all N scores dominates the sampling time. The `count` largest scores lie
    # above a threshold that keeps, on average, 8 standard deviations more candidates than
    # needed; top_k over those candidates (in index order, so ties resolve to the lower
    # index exactly as above) picks the same rows. Too few candidates (never in practice)
    # falls back to the full top_k.
    keep = num_sample + 8.0 * math.sqrt(num_sample) + 64.0
    if keep >= num_rows:
        return full_top_k()
    candidates = tf.cast(tf.where(scores >= 1.0 - keep / num_rows)[:, 0], tf.int32)

    def candidate_top_k():
        _, position = tf.math.top_k(tf.gather(scores, candidates), k=count, sorted=False)
        return tf.gather(candidates, tf.sort(position))

    return tf.cond(tf.size(candidates) >= count, candidate_top_k, full_top_k)


@keras.saving.register_keras_serializable(package="keras_arcface")
class PartialFC(keras.layers.Layer):
    """Class-center matrix ``[N, D]`` with sampled softmax (Partial FC) for margin losses.

    The layer always computes in float32 (margins and softmax need it under mixed
    precision); embeddings are cast to float32 on entry. TensorFlow backend only (it runs
    inside ``tf.distribute`` training steps).

    Args:
        num_classes: identities ``N`` (rows of the center matrix).
        embedding_dim: embedding size ``D``.
        sample_rate: fraction of centers used per step, in (0, 1]. Default 1.0 (full softmax).
        seed: seed of the initial centers and of the negative sampling. Default 0.
        logits_fn: the margin, ``logits_fn(labels, cosine) -> float32 logits`` (e.g.
            ``ArcFaceLoss(...).logits``); needed by :meth:`per_example_loss`. Not saved in
            the config: pass it again after loading. Default None.
        **kwargs: ``keras.layers.Layer`` arguments.

    Example:
        >>> head = PartialFC(10_000, 512, sample_rate=0.1, logits_fn=loss.logits)
        >>> cosine, local_labels, index = head(embeddings, labels, step=3)

    Reference: An et al., ICCVW 2021; InsightFace ``PartialFC_V2``.
    """

    def __init__(
        self, num_classes, embedding_dim, sample_rate=1.0, seed=0, logits_fn=None, **kwargs
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        check_head_arguments(num_classes, embedding_dim, sample_rate)
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)
        self.sample_rate = float(sample_rate)
        self.seed = int(seed)
        self.logits_fn = logits_fn
        self.num_sample = min(self.num_classes, int(math.ceil(self.sample_rate * num_classes)))

    def build(self, input_shape=None):
        self.centers = self.add_weight(
            name="class_centers",
            shape=(self.num_classes, self.embedding_dim),
            initializer=CenterInitializer(seed=self.seed),
            dtype="float32",
        )

    @property
    def samples(self):
        """True when the head samples (``sample_rate < 1``)."""
        return self.num_sample < self.num_classes

    def sample(self, global_labels, step):
        """Sorted unique int32 row ids ``[S]`` of a step, holding every label of the batch.

        Args:
            global_labels: int labels of the global batch ``[B_global]``.
            step: the global step (int scalar), part of the sampling seed.
        """
        seed = tf.stack([tf.cast(self.seed, tf.int64), tf.cast(step, tf.int64)])
        return sample_rows(global_labels, self.num_classes, self.num_sample, seed)

    def call(self, embeddings, labels, global_labels=None, step=0):
        """Cosines of the embeddings against the (sampled) centers.

        Args:
            embeddings: ``[B, D]`` raw embeddings.
            labels: int ``[B]`` labels of these embeddings.
            global_labels: labels of the whole global batch (default: ``labels``); the
                positives of every replica are kept in the sample.
            step: global step, seeds the sample.

        Returns:
            ``(cosine float32 [B, S], local_labels int32 [B], index int32 [S] or None)``;
            with ``sample_rate=1`` ``S = N``, ``local_labels = labels`` and ``index`` is None.
        """
        labels = check_label_range(tf.cast(tf.reshape(labels, [-1]), tf.int32), self.num_classes)
        if global_labels is not None:
            global_labels = check_label_range(global_labels, self.num_classes)
        embeddings = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1, epsilon=1e-12)
        centers = _value(self.centers)
        if not self.samples:
            weight = tf.math.l2_normalize(centers, axis=1, epsilon=1e-12)
            cosine = tf.matmul(embeddings, weight, transpose_b=True)
            return tf.clip_by_value(cosine, -1.0, 1.0), labels, None
        index = self.sample(labels if global_labels is None else global_labels, step)
        cosine = sampled_cosine(embeddings, tf.gather(centers, index))
        local_labels = tf.searchsorted(index, labels, side="left", out_type=tf.int32)
        return cosine, local_labels, index

    def per_example_loss(
        self, embeddings, labels, global_labels=None, step=0, with_target_cosine=False
    ):
        """Per-example float32 softmax cross-entropy ``[B]`` of ``logits_fn`` on the cosines.

        Args:
            embeddings: ``[B, D]`` raw embeddings.
            labels: int ``[B]``.
            global_labels: see :meth:`call`.
            step: see :meth:`call`.
            with_target_cosine: also return each example's target cosine ``[B]`` (for the
                Intra-Loss term). Default False.
        """
        cosine, local_labels, _ = self(embeddings, labels, global_labels=global_labels, step=step)
        logits = tf.cast(require_logits_fn(self.logits_fn)(local_labels, cosine), tf.float32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=local_labels, logits=logits)
        if with_target_cosine:
            return loss, tf.gather(cosine, local_labels, batch_dims=1)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            embedding_dim=self.embedding_dim,
            sample_rate=self.sample_rate,
            seed=self.seed,
        )
        return config


def require_logits_fn(logits_fn):
    """The injected margin callable, or a TypeError saying what to pass."""
    if not callable(logits_fn):
        raise TypeError(
            "The head needs the margin as a callable logits_fn(labels, cosine) -> logits, "
            "e.g. keras_arcface.losses.get('arcface').logits. "
            f"Received: logits_fn={logits_fn!r}"
        )
    return logits_fn


def intra_angle_of(target_cosine):
    """The paper's Intra-Loss term ``theta_y / pi`` from target cosines (eq. 5), float32."""
    return safe_angle(tf.clip_by_value(target_cosine, -1.0, 1.0)) / math.pi


def check_label_range(labels, num_classes):
    """``labels`` after asserting they lie in ``[0, num_classes)`` (every op downstream waits)."""
    low, high = tf.reduce_min(labels), tf.reduce_max(labels)
    check = tf.debugging.Assert(
        tf.logical_and(low >= 0, high < num_classes),
        [
            f"Labels must be in [0, {num_classes}) (num_classes={num_classes}). "
            "Received: labels min, max =",
            low,
            high,
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(labels)


def _value(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


@tf.custom_gradient
def sampled_cosine(embeddings, rows):
    """``clip(embeddings @ l2_normalize(rows).T, -1, 1)`` with a hand-written gradient.

    Same value and gradient as ``tf.math.l2_normalize`` (epsilon 1e-12) + ``tf.matmul`` +
    ``tf.clip_by_value``, but the ``[S, D]`` rows are never normalized: the matmul runs on the
    raw rows and its ``[B, S]`` output is scaled by the inverse row norms. Autodiff of the
    unfused ops materialises about ten ``[S, D]`` temporaries per step (S = 100k sampled rows
    of 512 floats is 200 MB each); this needs the gathered rows, one square for the norms and
    the two terms of the row gradient.

    Args:
        embeddings: L2-normalized embeddings ``[B, D]`` (float32).
        rows: raw (not normalized) center rows ``[S, D]`` (float32).

    Returns:
        The clipped cosines ``[B, S]``.
    """
    sum_sq = tf.reduce_sum(tf.square(rows), axis=1)
    inv_norm = tf.math.rsqrt(tf.maximum(sum_sq, _EPSILON))  # [S]
    raw = tf.matmul(embeddings, rows, transpose_b=True) * inv_norm
    cosine = tf.clip_by_value(raw, -1.0, 1.0)

    def grad(upstream):
        # d cos_bj / d w_j = r_j e_b - r_j^2 cos_bj w_j  with r_j = 1 / |w_j|; clip_by_value
        # passes the gradient where -1 <= raw <= 1, tf.maximum where sum_sq >= epsilon.
        inside = tf.logical_and(raw >= -1.0, raw <= 1.0)
        scaled = tf.where(inside, upstream, tf.zeros_like(upstream)) * inv_norm  # [B, S]
        grad_embeddings = tf.matmul(scaled, rows)
        coef = tf.reduce_sum(scaled * raw, axis=0) * inv_norm
        coef = tf.where(sum_sq >= _EPSILON, coef, tf.zeros_like(coef))
        grad_rows = tf.matmul(scaled, embeddings, transpose_a=True) - coef[:, None] * rows
        return grad_embeddings, grad_rows

    return cosine, grad
