"""ShardedPartialFC: the Partial FC head split across the replicas of a strategy (TensorFlow).

Model parallel head, data parallel backbone, as in An et al., "Partial FC: Training 10 Million
Identities on a Single Machine" (ICCVW 2021) and InsightFace's ``PartialFC_V2``. With ``R``
replicas (``MirroredStrategy`` devices, or every device of every ``MultiWorkerMirroredStrategy``
worker), replica ``r`` owns the contiguous class rows ``[start_r, stop_r)`` of the logical
``[N, D]`` center matrix (the first ``N mod R`` replicas one row more) and nothing else: its
rows and, in the optimiser, their momentum. One step, on every replica:

1. the L2-normalized float32 embeddings and the labels of the global batch are all-gathered;
2. the replica picks rows of its shard: every positive of the global batch that falls in the
   shard plus uniform negatives, ``max(ceil(sample_rate * N_r), P_r)`` rows in all (``N_r`` rows
   in the shard, ``P_r`` distinct positives in it; ``sample_rate=1`` takes the whole shard);
3. cosines of the global batch against those rows ``[B_global, S_r]``; the margin callable
   ``logits_fn(labels, cosine)`` runs on them with one extra zero column that stands for "the
   target lives on another shard" (dropped afterwards), so the margin is applied exactly where
   the target lives;
4. softmax cross-entropy across shards: the row maxima are all-gathered, the sums of
   exponentials and the target logits all-reduced, so every replica holds the loss of every
   example: numerically the softmax over the union of the shards' rows;
5. the replica returns the losses of its own examples. Autodiff through the collectives sends
   each shard the gradient of every example for its rows, and the all-gather's gradient (an
   all-reduce, then the replica's slice) sends each replica the embedding gradient of its own
   examples.

Example:
    >>> strategy = tf.distribute.MirroredStrategy()
    >>> head = ShardedPartialFC(1_000_000, 512, strategy, sample_rate=0.1, logits_fn=loss.logits)
    >>> # inside strategy.run:
    >>> per_example = head.per_example_loss(embeddings, labels, step=step)  # [B_local]
"""

import math

import tensorflow as tf

from keras_arcface.layers.partial_fc import (
    CenterInitializer,
    check_head_arguments,
    check_label_range,
    require_logits_fn,
    sample_rows,
    sampled_cosine,
)

_SHARDABLE = ("MirroredStrategy", "MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")


def shard_bounds(num_classes, num_shards):
    """Contiguous ``(start, stop)`` rows of each shard; the first ``N mod R`` get one more.

    Example:
        >>> shard_bounds(10, 3)
        ((0, 4), (4, 7), (7, 10))
    """
    base, extra = divmod(int(num_classes), int(num_shards))
    bounds, start = [], 0
    for r in range(int(num_shards)):
        stop = start + base + (1 if r < extra else 0)
        bounds.append((start, stop))
        start = stop
    return tuple(bounds)


def shard_sample_count(shard_rows, sample_rate):
    """Rows a shard samples before positives are added: ``ceil(sample_rate * N_r)``, >= 1."""
    return max(1, min(shard_rows, int(math.ceil(float(sample_rate) * shard_rows))))


def why_cannot_shard(strategy, num_classes):
    """A sentence saying why ``strategy`` cannot shard ``num_classes`` centers, or None."""
    kind = type(strategy).__name__
    replicas = strategy.num_replicas_in_sync
    if kind not in _SHARDABLE:
        return (
            f"sharded class centers need MirroredStrategy or MultiWorkerMirroredStrategy "
            f"(collective all-gather/all-reduce between replicas); the strategy is {kind}"
        )
    if int(num_classes) < replicas:
        return (
            f"every replica must own at least one class, but there are {num_classes} classes "
            f"for {replicas} replicas"
        )
    return None


class ShardedPartialFC(tf.Module):
    """Class centers split by rows across replicas, softmax across shards (Partial FC).

    Build it outside ``strategy.scope()`` (its shards are ordinary variables, one per local
    device, not mirrored). Call :meth:`per_example_loss` inside ``strategy.run``; every
    replica must call it in the same step.

    Args:
        num_classes: identities ``N``; at least the replica count.
        embedding_dim: embedding size ``D``.
        strategy: a ``MirroredStrategy`` or ``MultiWorkerMirroredStrategy``.
        sample_rate: fraction of each shard's rows used per step, in (0, 1]. Default 1.0.
        seed: seed of the initial centers (the same rows a single ``PartialFC`` draws) and of
            the sampling. Default 0.
        logits_fn: the margin callable ``logits_fn(labels, cosine)``. Default None.
        name: module name. Default ``"partial_fc"``.

    Example:
        >>> head = ShardedPartialFC(100_000, 512, strategy, logits_fn=loss.logits)
    """

    def __init__(
        self,
        num_classes,
        embedding_dim,
        strategy,
        sample_rate=1.0,
        seed=0,
        logits_fn=None,
        name="partial_fc",
    ):
        super().__init__(name=name)
        check_head_arguments(num_classes, embedding_dim, sample_rate)
        reason = why_cannot_shard(strategy, num_classes)
        if reason:
            raise ValueError(
                f"The class centers cannot be sharded: {reason}. Set "
                "partial_fc.shard_centers=false to keep a full copy on every replica. "
                f"Received: num_classes={num_classes}, strategy={type(strategy).__name__}"
            )
        if tf.distribute.has_strategy() and tf.distribute.get_strategy() is strategy:
            raise RuntimeError(
                "Build ShardedPartialFC outside strategy.scope(): its shards are per-device "
                "variables, not mirrored ones."
            )
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)
        self.sample_rate = float(sample_rate)
        self.seed = int(seed)
        self.logits_fn = logits_fn
        self.num_replicas = int(strategy.num_replicas_in_sync)
        self.bounds = shard_bounds(self.num_classes, self.num_replicas)
        devices = list(strategy.extended.worker_devices)
        first = _first_local_replica(strategy, len(devices))
        init = CenterInitializer(seed=self.seed)
        self.devices = {first + k: device for k, device in enumerate(devices)}
        self._shards = {}
        for replica, device in self.devices.items():
            start, stop = self.bounds[replica]
            with tf.device(device):
                self._shards[replica] = tf.Variable(
                    init.rows(start, stop, self.embedding_dim),
                    trainable=True,
                    name=f"class_centers_{start}_{stop}",
                )

    @property
    def local_replicas(self):
        """Global replica ids whose shard lives in this process."""
        return tuple(sorted(self._shards))

    def shard(self, replica):
        """The ``[N_r, D]`` center variable of global replica ``replica`` (local ones only)."""
        return self._shards[replica]

    def local_shard(self):
        """The center variable of the calling replica (inside ``strategy.run``)."""
        return self._shards[_replica_id()]

    def samples(self):
        """True when the shards sample (``sample_rate < 1``)."""
        return self.sample_rate < 1.0

    def sample(self, global_labels, step, replica):
        """Sorted shard-local row ids ``[S_r]`` of ``replica``'s shard for one step.

        Every label of the global batch inside the shard is kept; the draw is stateless,
        seeded by ``(seed, step)`` folded with the shard's first row.
        """
        start, stop = self.bounds[replica]
        labels = tf.cast(tf.reshape(global_labels, [-1]), tf.int32)
        inside = tf.logical_and(labels >= start, labels < stop)
        positives = tf.boolean_mask(labels, inside) - start
        seed = tf.stack([tf.cast(self.seed, tf.int64), tf.cast(step, tf.int64)])
        seed = tf.random.experimental.stateless_fold_in(seed, start)
        count = shard_sample_count(stop - start, self.sample_rate)
        return sample_rows(positives, stop - start, count, seed)

    def per_example_loss(self, embeddings, labels, step=0, with_target_cosine=False):
        """Float32 cross-entropy ``[B_local]`` of this replica's examples (replica context).

        Args:
            embeddings: ``[B_local, D]`` raw embeddings of this replica.
            labels: int ``[B_local]`` labels in ``[0, N)``.
            step: global step (seeds the sample).
            with_target_cosine: also return the target cosines ``[B_local]``. Default False.
        """
        ctx = tf.distribute.get_replica_context()
        replica = _replica_id()
        start, stop = self.bounds[replica]
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        embeddings = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1, epsilon=1e-12)
        all_embeddings = ctx.all_gather(embeddings, axis=0)
        all_labels = check_label_range(ctx.all_gather(labels, axis=0), self.num_classes)
        sizes = ctx.all_gather(tf.shape(labels)[:1], axis=0)
        offset = tf.reduce_sum(sizes[:replica])
        inside = tf.logical_and(all_labels >= start, all_labels < stop)
        shard = self._shards[replica]
        if self.samples():
            index = self.sample(all_labels, step, replica)
            cosine = sampled_cosine(all_embeddings, tf.gather(shard, index))
            column = tf.searchsorted(index, all_labels - start, side="left", out_type=tf.int32)
        else:
            cosine = sampled_cosine(all_embeddings, shard)
            column = all_labels - start
        loss, target_cosine = _cross_shard_softmax(
            ctx, require_logits_fn(self.logits_fn), cosine, inside, column
        )
        mine = tf.range(offset, offset + tf.shape(labels)[0])
        if with_target_cosine:
            return tf.gather(loss, mine), tf.gather(target_cosine, mine)
        return tf.gather(loss, mine)


def _cross_shard_softmax(ctx, logits_fn, cosine, inside, column):
    """Per-example cross-entropy ``[B_global]`` of a softmax spread over every shard."""
    width = tf.shape(cosine)[1]
    # One extra zero column stands for "the target is on another shard": the margin callable
    # sees ordinary (labels, cosine) and edits only the columns of targets held here.
    padded = tf.pad(cosine, [[0, 0], [0, 1]])
    local_target = tf.where(inside, column, width)
    padded_logits = tf.cast(logits_fn(local_target, padded), tf.float32)
    logits = padded_logits[:, :-1]
    here = tf.cast(inside, tf.float32)
    target_logit = tf.gather(padded_logits, local_target, batch_dims=1) * here
    target_cos = tf.gather(padded, local_target, batch_dims=1) * here
    local_max = tf.stop_gradient(tf.reduce_max(logits, axis=1))
    top = tf.stop_gradient(tf.reduce_max(ctx.all_gather(local_max[None], axis=0), axis=0))
    sum_exp = tf.reduce_sum(tf.exp(logits - top[:, None]), axis=1)
    summed = ctx.all_reduce(
        tf.distribute.ReduceOp.SUM, tf.stack([sum_exp, target_logit, target_cos])
    )
    loss = tf.math.log(summed[0]) + top - summed[1]
    return loss, summed[2]


def _replica_id():
    replica = tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group)
    return int(replica)


def _first_local_replica(strategy, num_local):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0
    spec = resolver.cluster_spec().as_dict()
    order = [("chief", i) for i in range(len(spec.get("chief", [])))]
    order += [("worker", i) for i in range(len(spec.get("worker", [])))]
    return order.index((resolver.task_type, resolver.task_id or 0)) * num_local
