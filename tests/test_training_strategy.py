"""The strategy factory: several MirroredStrategy objects in one process."""

import numpy as np
import tensorflow as tf

from keras_arcface.training.strategy import create_strategy


def _all_reduce_sum(strategy, size):
    """Sums a ``[size]`` vector over replicas with a collective inside a ``tf.function``."""

    @tf.function
    def step():
        def replica_fn():
            ctx = tf.distribute.get_replica_context()
            value = tf.ones([size]) * tf.cast(ctx.replica_id_in_sync_group + 1, tf.float32)
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)

        return strategy.experimental_local_results(strategy.run(replica_fn))[0]

    return step().numpy()


def test_strategies_created_one_after_another_do_not_share_collective_keys():
    """A second strategy's collectives of another shape must not collide with the first's.

    TensorFlow caches a collective's shape per (group, instance) key for the whole process;
    two strategies numbering their keys alike fail with "Shape mismatch in the collective
    instance" (a loss table or a test session creates one strategy per model).
    """
    first = create_strategy("mirrored")
    assert first.num_replicas_in_sync == 2
    expected = 1.0 + 2.0  # replica ids 0 and 1, plus one
    np.testing.assert_array_equal(_all_reduce_sum(first, 376), np.full(376, expected))
    second = create_strategy("mirrored")
    np.testing.assert_array_equal(_all_reduce_sum(second, 368), np.full(368, expected))
    np.testing.assert_array_equal(_all_reduce_sum(first, 376), np.full(376, expected))
