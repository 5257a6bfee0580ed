"""Partial FC: a classification head that uses a sample of the class centres each step.

An et al., "Partial FC: Training 10 Million Identities on a Single Machine" (ICCVW 2021).
With millions of identities the full ``[B, N]`` cosine matrix, its softmax and the dense
update of the ``[N, D]`` centre matrix dominate a training step. Each step here:

1. collects the labels of the *global* batch (all replicas) and keeps every positive class;
2. adds negatives drawn uniformly at random (without replacement) until
   ``num_sample = ceil(sample_rate * num_classes)`` classes are chosen (never fewer than the
   positives). The draw is stateless, seeded by ``(seed, step)``, so every replica and
   worker picks the same subset without communicating;
3. gathers those rows of the centre matrix (``tf.gather``: the gradient reaches the matrix
   as ``tf.IndexedSlices`` and only those rows are updated, see
   ``optimizers.CenterOptimizer``), L2-normalises the embeddings and computes the cosines
   against the L2-normalised rows (the row norms scale the matmul output, with a
   hand-written gradient, so no normalised copy of the rows is built);
4. remaps labels to their column in the subset and hands ``(labels, cosine)`` to the margin
   loss (``loss.logits`` + cross-entropy, in float32).

``sample_rate=1.0`` skips sampling and uses the whole matrix: exactly the full softmax.

Example:
    >>> head = PartialFC(num_classes=1000, embedding_dim=128, sample_rate=0.1)
    >>> loss = keras_arcface.losses.get("arcface")
    >>> per_example = head.per_example_loss(embeddings, labels, loss, step=0)  # [B]
"""

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_arcface")
class PartialFC(keras.layers.Layer):
    """Class-centre matrix with sampled softmax (Partial FC) for margin losses.

    The layer always computes in float32 (margins and softmax need it under mixed
    precision); embeddings are cast to float32 on entry.

    Args:
        num_classes: identities ``N`` (rows of the centre matrix).
        embedding_dim: embedding size ``D``.
        sample_rate: fraction of centres used per step, in (0, 1]. Default 1.0 (full softmax).
        seed: seed of the negative sampling. Default 0.
        **kwargs: ``keras.layers.Layer`` arguments.

    Example:
        >>> head = PartialFC(10_000, 512, sample_rate=0.1)
        >>> cosine, local_labels, index = head(embeddings, labels, step=3)
    """

    def __init__(self, num_classes, embedding_dim, sample_rate=1.0, seed=0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes!r}")
        if int(embedding_dim) < 1:
            raise ValueError(
                f"embedding_dim must be >= 1. Received: embedding_dim={embedding_dim!r}"
            )
        if not 0.0 < float(sample_rate) <= 1.0:
            raise ValueError(
                f"sample_rate must be in (0, 1]. Received: sample_rate={sample_rate!r}"
            )
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)
        self.sample_rate = float(sample_rate)
        self.seed = int(seed)
        self.num_sample = min(self.num_classes, int(math.ceil(self.sample_rate * num_classes)))

    def build(self, input_shape=None):
        self.centers = self.add_weight(
            name="class_centers",
            shape=(self.num_classes, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.01, seed=self.seed),
            dtype="float32",
        )

    @property
    def samples(self):
        """True when the head samples (``sample_rate < 1``)."""
        return self.num_sample < self.num_classes

    def sample(self, global_labels, step):
        """Chooses the centre rows of a step.

        Args:
            global_labels: int labels of the global batch ``[B_global]``.
            step: the global step (int scalar), part of the sampling seed.

        Returns:
            ``index``: sorted unique int32 row ids ``[S]`` holding every label of the batch.
        """
        global_labels = tf.cast(tf.reshape(global_labels, [-1]), tf.int32)
        positive = tf.unique(global_labels).y
        seed = tf.stack([tf.cast(self.seed, tf.int64), tf.cast(step, tf.int64)])
        scores = tf.random.stateless_uniform([self.num_classes], seed=seed)
        # Positives get a score above any uniform draw, so top-k always keeps them.
        scores = tf.tensor_scatter_nd_update(
            scores, positive[:, None], tf.fill(tf.shape(positive), 2.0)
        )
        count = tf.maximum(self.num_sample, tf.size(positive))

        def full_top_k():
            _, index = tf.math.top_k(scores, k=count, sorted=False)
            return tf.sort(index)

        # top_k over all N scores dominates the sampling time. The `count` largest scores lie
        # above a threshold that keeps, on average, 8 standard deviations more candidates
        # than needed; top_k over those candidates (in index order, so ties resolve to the
        # lower index exactly as above) picks the same rows. Too few candidates (never in
        # practice) falls back to the full top_k.
        keep = self.num_sample + 8.0 * math.sqrt(self.num_sample) + 64.0
        if keep >= self.num_classes:
            return full_top_k()
        threshold = 1.0 - keep / self.num_classes
        candidates = tf.cast(tf.where(scores >= threshold)[:, 0], tf.int32)

        def candidate_top_k():
            _, position = tf.math.top_k(tf.gather(scores, candidates), k=count, sorted=False)
            return tf.gather(candidates, tf.sort(position))

        return tf.cond(tf.size(candidates) >= count, candidate_top_k, full_top_k)

    def call(self, embeddings, labels, global_labels=None, step=0):
        """Cosines of the embeddings against the (sampled) centres.

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
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        embeddings = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1, epsilon=1e-12)
        centers = self.centers.value if isinstance(self.centers, keras.Variable) else self.centers
        if not self.samples:
            weight = tf.math.l2_normalize(centers, axis=1, epsilon=1e-12)
            cosine = tf.matmul(embeddings, weight, transpose_b=True)
            return tf.clip_by_value(cosine, -1.0, 1.0), labels, None
        index = self.sample(labels if global_labels is None else global_labels, step)
        cosine = _sampled_cosine(embeddings, tf.gather(centers, index))
        local_labels = tf.searchsorted(index, labels, side="left", out_type=tf.int32)
        return cosine, local_labels, index

    def per_example_loss(self, embeddings, labels, loss, global_labels=None, step=0):
        """Per-example margin loss ``[B]`` of a (sampled) softmax.

        Args:
            embeddings: ``[B, D]`` raw embeddings.
            labels: int ``[B]``.
            loss: a margin loss with ``logits(labels, cosine)`` (``keras_arcface.losses``);
                its ``call`` (margin logits + cross-entropy) is used when it has one.
            global_labels: see :meth:`call`.
            step: see :meth:`call`.
        """
        cosine, local_labels, _ = self(embeddings, labels, global_labels=global_labels, step=step)
        return per_example_margin_loss(loss, local_labels, cosine)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            embedding_dim=self.embedding_dim,
            sample_rate=self.sample_rate,
            seed=self.seed,
        )
        return config


_EPSILON = 1e-12


@tf.custom_gradient
def _sampled_cosine(embeddings, rows):
    """``clip(embeddings @ l2_normalize(rows).T, -1, 1)`` with a hand-written gradient.

    Same value and gradient as ``tf.math.l2_normalize`` (epsilon 1e-12) + ``tf.matmul`` +
    ``tf.clip_by_value``, but the ``[S, D]`` rows are never normalised: the matmul runs on the
    raw rows and its ``[B, S]`` output is scaled by the inverse row norms. Autodiff of the
    unfused ops materialises about ten ``[S, D]`` temporaries per step (S = 100k sampled rows
    of 512 floats is 200 MB each); this needs the gathered rows, one square for the norms and
    the two terms of the row gradient.

    Args:
        embeddings: L2-normalised embeddings ``[B, D]`` (float32).
        rows: raw (not normalised) centre rows ``[S, D]`` (float32).

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


def per_example_margin_loss(loss, labels, cosine):
    """Per-example softmax cross-entropy of ``loss.logits(labels, cosine)``, float32 ``[B]``."""
    if not hasattr(loss, "logits"):
        raise TypeError(
            "The training loss must expose logits(labels, cosine) (the margin losses of "
            f"keras_arcface.losses do). Received: loss={loss!r}"
        )
    if isinstance(loss, keras.losses.Loss):
        # The loss's own per-example value: margin logits + cross-entropy (+ its extra terms).
        return tf.cast(tf.reshape(loss.call(labels, cosine), [-1]), tf.float32)
    logits = tf.cast(loss.logits(labels, cosine), tf.float32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
