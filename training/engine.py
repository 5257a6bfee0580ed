"""The one optimisation step every training loop of the package is built on.

:class:`~keras_arcface.training.trainer.Trainer` (experiments, the demo) and the paper's
loss comparison (``keras_arcface.paper.trainer``) both train through :func:`make_train_step`,
so a fix or a speed-up of the step lands everywhere. The step is a ``tf.function`` that runs
unchanged on one device, under ``MirroredStrategy`` and under
``MultiWorkerMirroredStrategy``:

1. on every replica, ``loss_fn(images, labels)`` gives that replica's share of the global
   loss (``sum(per-example loss) / global_batch`` plus regularisers divided by the replica
   count), multiplied by the dynamic loss scale under ``mixed_float16``;
2. gradients of the optimiser's variables and of every ``extra`` variable (a variable with
   its own update rule, such as the sparse class-center optimiser);
3. **one decision for all replicas**: a non-finite gradient on any replica skips the whole
   step everywhere, in every mode (float32 or loss-scaled, one device or many). A skipped
   step changes no weight, no optimiser slot or iteration count and no batch-norm moving
   statistic; with loss scaling the scale is halved as usual;
4. optional clipping to a global norm, then the optimiser update (the Keras optimiser sums
   gradients over replicas) and each ``extra`` update;
5. batch-norm moving statistics (every non-trainable variable in ``statistics``), updated
   by each replica from its own batch, are averaged over replicas so every replica and
   worker holds the same model.

Example:
    >>> variables = model.trainable_variables  # doctest: +SKIP
    >>> step = make_train_step(strategy, loss_fn, optimizer, variables)  # doctest: +SKIP
    >>> loss, applied = step(iterator)  # doctest: +SKIP
"""

import keras
import numpy as np
import tensorflow as tf


def make_train_step(
    strategy,
    loss_fn,
    optimizer,
    variables,
    *,
    extra=(),
    statistics=(),
    clipnorm=0.0,
    counter=None,
):
    """Builds the distributed training step.

    Args:
        strategy: the ``tf.distribute.Strategy`` whose scope created the variables.
        loss_fn: ``loss_fn(images, labels)``, called in replica context under the gradient
            tape; returns the replica's float32 share of the global loss (see above), or a
            pair ``(loss, reported)`` where ``reported`` is what the step returns instead
            (e.g. the data loss without a weight-decay term).
        optimizer: the Keras optimiser of ``variables`` (``LossScaleOptimizer`` enables
            dynamic loss scaling).
        variables: the variables ``optimizer`` updates.
        extra: ``(variable, apply_fn)`` pairs for variables with their own update (or a
            zero-argument callable returning the calling replica's variable);
            ``apply_fn(gradient, finite)`` is called in replica context with the unscaled
            (and clipped) gradient and a boolean scalar, equal on every replica, that is
            False when the step is skipped (the update must then do nothing).
        statistics: non-trainable variables (batch-norm moving statistics) averaged over
            replicas after each step and restored when a step is skipped. Default none.
        clipnorm: clip each replica's gradients to this global norm; 0 disables. Default 0.
        counter: an int64 ``tf.Variable`` incremented after every step (skipped or not),
            e.g. the global step a learning-rate schedule reads. Default None.

    Returns:
        ``train_step(iterator)``, a ``tf.function`` that takes one batch ``(images, labels)``
        from a (distributed) iterator and returns ``(loss, applied)``: the global loss summed
        over replicas and whether the update was applied.
    """
    variables = list(variables)
    extra = list(extra)
    statistics = [_tf_variable(v) for v in statistics]
    # Only floating-point statistics are averaged (a seed generator's state is not).
    averaged = [v for v in statistics if v.dtype.is_floating]
    replica_step = _make_replica_step(loss_fn, optimizer, variables, extra, clipnorm)
    return _distributed_step(strategy, replica_step, statistics, averaged, counter)


def _distributed_step(strategy, replica_step, statistics, averaged, counter):
    """The ``tf.function`` around ``replica_step``: one batch on every replica, the loss
    summed, ``averaged`` statistics averaged (step 5), all ``statistics`` restored when the
    step was skipped, ``counter`` incremented."""
    sync_stats = bool(averaged) and strategy.num_replicas_in_sync > 1
    local_stats, assign_mean = _make_statistics_sync(averaged)

    @tf.function
    def train_step(iterator):
        images, labels = next(iterator)
        before = [tf.identity(v) for v in statistics]
        per_replica_loss, per_replica_ok = strategy.run(replica_step, args=(images, labels))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
        applied = strategy.experimental_local_results(per_replica_ok)[0]
        if sync_stats:
            assign_mean(
                strategy.reduce(tf.distribute.ReduceOp.MEAN, strategy.run(local_stats), axis=None)
            )
        for v, old in zip(statistics, before):
            v.assign(tf.where(applied, tf.convert_to_tensor(v), old))
        if counter is not None:
            counter.assign_add(1)
        return loss, applied

    return train_step


def _make_replica_step(loss_fn, optimizer, variables, extra, clipnorm):
    """``replica_step(images, labels) -> (reported loss, ok)``: steps 1 to 4 on one replica."""
    loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_step(images, labels):
        ctx = tf.distribute.get_replica_context()
        scale = (
            tf.cast(tf.convert_to_tensor(optimizer.dynamic_scale), tf.float32)
            if loss_scaled
            else tf.constant(1.0)
        )
        targets = [_tf_variable(v) for v in variables] + [_extra_variable(v) for v, _ in extra]
        with tf.GradientTape() as tape:
            loss = loss_fn(images, labels)
            loss, reported = loss if isinstance(loss, tuple) else (loss, loss)
            scaled = tf.cast(loss, tf.float32) * scale
        grads = tape.gradient(scaled, targets)
        local_ok = tf.reduce_all([_all_finite(g) for g in grads if g is not None])
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(local_ok, tf.float32))
        ok = bad < 0.5
        if clipnorm:
            grads, _ = tf.clip_by_global_norm(grads, clipnorm * scale)
        main_grads, extra_grads = grads[: len(variables)], grads[len(variables) :]
        if loss_scaled:
            # The loss-scale optimiser skips the step and halves the scale by itself; every
            # replica must see the same (non-)finiteness.
            optimizer.apply([g if g is None else _poison(g, ok) for g in main_grads], variables)
        else:
            _apply_if(ok, optimizer, main_grads, variables)
        for (_, apply_fn), grad in zip(extra, extra_grads):
            apply_fn(_unscale(grad, scale) if loss_scaled else grad, ok)
        return tf.cast(reported, tf.float32), ok

    return replica_step


def _make_statistics_sync(averaged):
    """``(local_stats, assign_mean)``: the replica's ``averaged`` variables as one flat
    float32 vector, and the assignment of a (mean) vector back to them."""

    def local_stats():
        return tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in averaged], 0)

    def assign_mean(flat):
        offset = 0
        for v in averaged:
            size = int(np.prod(v.shape))
            v.assign(tf.cast(tf.reshape(flat[offset : offset + size], v.shape), v.dtype))
            offset += size

    return local_stats, assign_mean


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _extra_variable(variable):
    # A zero-argument callable gives a per-replica variable (a center shard), resolved in
    # the replica context.
    if callable(variable) and not isinstance(variable, (tf.Variable, keras.Variable)):
        variable = variable()
    return _tf_variable(variable)


def _all_finite(gradient):
    values = gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient
    return tf.reduce_all(tf.math.is_finite(values))


def _unscale(gradient, scale):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values / scale, gradient.indices, gradient.dense_shape)
    return gradient / scale


def _poison(gradient, ok):
    if isinstance(gradient, tf.IndexedSlices):
        values = tf.where(ok, gradient.values, tf.fill(tf.shape(gradient.values), np.nan))
        return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
    return tf.where(ok, gradient, tf.fill(tf.shape(gradient), tf.constant(np.nan, gradient.dtype)))


def _apply_if(ok, optimizer, grads, variables):
    """``optimizer.apply(grads, variables)`` only when ``ok`` (equal on every replica).

    A ``cond`` whose branch calls ``merge_call`` (as the Keras optimiser does under
    ``MirroredStrategy`` on CPUs) is not allowed in a replica context, so the decision is
    taken in the cross-replica context, the way Keras' ``LossScaleOptimizer`` does it.
    """
    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(ok, lambda: _apply(optimizer, grads, variables), lambda: tf.constant(False))
        return

    def merge_fn(strategy, ok, grads):
        first = strategy.experimental_local_results(ok)[0]

        def run():
            strategy.extended.call_for_each_replica(_apply, args=(optimizer, grads, variables))
            return tf.constant(True)

        return tf.cond(first, run, lambda: tf.constant(False))

    tf.distribute.get_replica_context().merge_call(merge_fn, args=(ok, grads))


def _apply(optimizer, grads, variables):
    optimizer.apply(grads, variables)
    return tf.constant(True)
