"""The one training step (``training/engine.py``): a non-finite gradient skips the step.

The claim under test: in every mode (float32, float16 with loss scaling; one device or two
replicas) a step where any gradient on any replica is NaN/Inf changes nothing: no weight, no
optimiser slot or iteration count, no batch-norm moving statistic; the next finite step
trains as usual. The NaN gradient comes with a *finite* loss (a custom gradient), the case
loss scaling alone used to catch.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import training_fixtures as fx

from keras_arcface.training import engine
from keras_arcface.training.trainer import Trainer

POISON = 5000.0  # one pixel of this value makes the batch's gradients NaN (the loss stays finite)


def _strategy(name):
    return fx.shared_strategy(name)


def nan_gradient_if_poisoned(features, images):
    """Identity forward; the backward pass is NaN when the batch holds a poisoned pixel."""
    poisoned = tf.reduce_max(tf.cast(images, tf.float32)) > POISON / 2

    @tf.custom_gradient
    def identity(x):
        def grad(upstream):
            return tf.where(poisoned, tf.fill(tf.shape(upstream), np.nan), upstream)

        return tf.identity(x), grad

    return identity(features)


class GradientBomb(keras.layers.Layer):
    def call(self, inputs):
        features, images = inputs
        return nan_gradient_if_poisoned(features, images)


def bomb_backbone():
    """``fx.tiny_backbone`` (with batch norm) whose gradients are NaN on a poisoned batch."""
    inner = fx.tiny_backbone(batch_norm=True)
    images = keras.Input((fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3), name="images")
    features = GradientBomb(dtype="float32")([inner(images), images])
    return keras.Model(images, features, name="bomb")


def _batches(poison_step, global_batch, poison_index):
    images, labels = fx.epoch_arrays(0)
    images = images[: 4 * global_batch].copy()
    labels = labels[: 4 * global_batch]
    images[poison_step * global_batch + poison_index, 0, 0, 0] = POISON
    return images, labels


def _state(values):
    out = []
    for v in values:
        for copy in tf.distribute.get_strategy().experimental_local_results(v):
            out.append(np.array(copy))
    return out


@pytest.mark.parametrize(
    "policy,strategy_name",
    [("float32", "default"), ("mixed_float16", "default"), ("float32", "mirrored")],
)
def test_a_non_finite_gradient_anywhere_skips_the_whole_step(policy, strategy_name):
    strategy = _strategy(strategy_name)
    replicas = strategy.num_replicas_in_sync
    global_batch = 16
    # With two replicas only the second replica's half of step 1 is poisoned.
    images, labels = _batches(1, global_batch, poison_index=global_batch - 1)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():
            model = bomb_backbone()
            optimizer = keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-3)
            if policy == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)
            counter = tf.Variable(0, dtype=tf.int64)
    finally:
        keras.mixed_precision.set_global_policy(previous)

    def loss_fn(batch_images, batch_labels):
        embeddings = tf.cast(model(batch_images, training=True), tf.float32)
        targets = tf.one_hot(batch_labels % fx.NUM_CLASSES, embeddings.shape[-1])
        per_example = tf.reduce_sum(tf.square(embeddings - targets), axis=-1)
        return tf.reduce_sum(per_example) / global_batch

    step = engine.make_train_step(
        strategy,
        loss_fn,
        optimizer,
        model.trainable_variables,
        statistics=model.non_trainable_variables,
        counter=counter,
    )
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(global_batch)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    watched = model.weights + optimizer.variables
    assert any("moving" in v.path for v in model.non_trainable_variables)

    with strategy.scope():
        loss, applied = step(iterator)  # step 0: finite
        assert bool(applied) and np.isfinite(float(loss))
        before = _state(watched)
        loss, applied = step(iterator)  # step 1: NaN gradients (on one replica only)
    assert np.isfinite(float(loss)), "the poisoned batch must keep a finite loss"
    assert not bool(applied)
    after = _state(watched)
    names = [f"{v.path}[{i}]" for v in watched for i in range(replicas)]
    if policy == "mixed_float16":
        # The loss-scale optimiser's own state (scale halved, growth counter reset) changes
        # on a skipped step; everything else must not.
        scale_index = [i for i, n in enumerate(names) if "dynamic_scale" in n]
        for i in scale_index:
            assert after[i] == pytest.approx(before[i] / 2)
    for name, a, b in zip(names, before, after):
        if "dynamic_scale" in name or "step_counter" in name:
            continue
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert int(counter.numpy()) == 2  # the global step still advances
    with strategy.scope():
        loss, applied = step(iterator)  # step 2: finite again, training resumes
    assert bool(applied)
    changed = _state(model.trainable_variables)
    assert any(not np.array_equal(a, b) for a, b in zip(after, changed))
    assert all(np.all(np.isfinite(a)) for a in _state(watched))


def test_trainer_in_float32_skips_a_step_with_nan_gradients(tmp_path):
    """The Trainer (class centers with their own optimiser too) in float32, no loss scaling."""

    def dataset_fn(input_context, epoch, skip_batches, batch_size):
        images, labels = fx.epoch_arrays(epoch)
        images = images.copy()
        if epoch == 0:
            images[2 * batch_size + 3, 0, 0, 0] = POISON  # the third step's batch
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
        return ds.repeat().skip(skip_batches * batch_size).batch(batch_size, drop_remainder=True)

    cfg = fx.experiment(
        schedule={"total_steps": 6, "warmup_steps": 1}, checkpoint={"every_steps": 100}
    )
    trainer = Trainer(
        cfg,
        str(tmp_path),
        strategy=_strategy("default"),
        backbone_fn=bomb_backbone,
        dataset_fn=dataset_fn,
    )
    state = [*trainer.backbone.weights, trainer.head.centers]
    state += list(trainer.optimizer.variables) + list(trainer.center_optimizer.variables)
    trainer.fit(until=2)
    before = [np.array(v) for v in state]
    result = trainer.fit(until=3)  # the poisoned step
    assert result.step == 3 and np.isfinite(result.loss)
    for v, a in zip(state, before):
        np.testing.assert_array_equal(a, np.array(v), err_msg=getattr(v, "path", v.name))
    trainer.fit(until=4)
    assert any(not np.array_equal(a, np.array(v)) for v, a in zip(state, before))
