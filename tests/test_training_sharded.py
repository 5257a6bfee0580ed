"""Sharded Partial FC on two logical CPU devices against single-device float64 oracles."""

import math

import numpy as np
import pytest
import tensorflow as tf
import training_fixtures as fx
from loss_oracles import (
    arcface_target,
    combined_target,
    cosface_target,
    finite_difference,
    identity_target,
    margin_loss,
)

from keras_arcface import losses
from keras_arcface.layers.sharded_partial_fc import (
    ShardedPartialFC,
    shard_bounds,
    shard_sample_count,
    why_cannot_shard,
)
from keras_arcface.training.trainer import Trainer

SCALE = 16.0
MARGINS = {
    "arcface": (dict(margin=0.5), lambda c: arcface_target(c, 0.5)),
    "cosface": (dict(margin=0.35), lambda c: cosface_target(c, 0.35)),
    "combined": (dict(m1=1.0, m2=0.3, m3=0.2), lambda c: combined_target(c, 1.0, 0.3, 0.2)),
    "norm_softmax": ({}, identity_target),
}


def mirrored():
    return fx.shared_strategy("mirrored")


# ------------------------------------------------------------------------------ oracle
def oracle_loss(emb, centers, labels, target):
    """Mean full-softmax margin loss, float64 loops (tests/loss_oracles.py)."""
    e = emb / np.sqrt((emb**2).sum(1, keepdims=True))
    w = centers / np.sqrt((centers**2).sum(1, keepdims=True))
    cosine = np.array([[float(a @ b) for b in w] for a in e])
    return margin_loss(labels, cosine, target, SCALE)


def _per_replica(strategy, array):
    size = len(array) // strategy.num_replicas_in_sync

    def value(ctx):
        r = ctx.replica_id_in_sync_group
        return tf.constant(array[r * size : (r + 1) * size])

    return strategy.experimental_distribute_values_from_function(value)


def sharded_loss_and_grads(head, emb, labels, step=0):
    """Loss ``sum(local) / B_global`` on each replica; gathered losses and gradients."""
    strategy = mirrored()
    global_batch = float(len(labels))

    @tf.function
    def run(e, y):
        def replica(e, y):
            shard = head.local_shard()
            with tf.GradientTape() as tape:
                tape.watch(e)
                per = head.per_example_loss(e, y, step=step)
                objective = tf.reduce_sum(per) / global_batch
            grad_e, grad_shard = tape.gradient(objective, [e, shard])
            return per, grad_e, tf.convert_to_tensor(grad_shard)

        return strategy.run(replica, args=(e, y))

    outputs = run(_per_replica(strategy, emb.astype("float32")), _per_replica(strategy, labels))
    per, grad_e, grad_w = (
        np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(o)])
        for o in outputs
    )
    return per, grad_e, grad_w


def _head(centers, sample_rate=1.0, name="arcface"):
    kwargs, _ = MARGINS[name]
    loss = losses.get(name, scale=SCALE, **kwargs)
    head = ShardedPartialFC(
        len(centers), centers.shape[1], mirrored(), sample_rate=sample_rate, logits_fn=loss.logits
    )
    for r in head.local_replicas:
        start, stop = head.bounds[r]
        head.shard(r).assign(centers[start:stop].astype("float32"))
    return head


@pytest.fixture
def batch():
    rng = np.random.default_rng(11)
    emb = rng.normal(size=(6, 5))
    centers = rng.normal(size=(11, 5))
    labels = np.array([0, 5, 5, 6, 10, 2], np.int32)  # targets on both shards (0-5 | 6-10)
    return emb, centers, labels


# ------------------------------------------------------------------------------- tests
@pytest.mark.parametrize(
    "name",
    ["arcface"]
    + [pytest.param(n, marks=pytest.mark.slow) for n in sorted(MARGINS) if n != "arcface"],
)
def test_rate_one_equals_the_full_softmax_oracle(batch, name):
    """Loss and gradients (embeddings and every center row) within 1e-5 of float64."""
    emb, centers, labels = batch
    head = _head(centers, name=name)
    assert [tuple(head.shard(r).shape) for r in head.local_replicas] == [(6, 5), (5, 5)]
    per, grad_e, grad_w = sharded_loss_and_grads(head, emb, labels)
    target = MARGINS[name][1]
    assert float(np.mean(per)) == pytest.approx(oracle_loss(emb, centers, labels, target), abs=1e-5)
    want_e = finite_difference(lambda x: oracle_loss(x, centers, labels, target), emb)
    want_w = finite_difference(lambda x: oracle_loss(emb, x, labels, target), centers)
    np.testing.assert_allclose(grad_e, want_e, atol=1e-5, rtol=0)
    np.testing.assert_allclose(grad_w, want_w, atol=1e-5, rtol=0)
    assert np.abs(want_w).max() > 1e-2  # the check is not vacuous


def test_sampled_shards_keep_every_positive_and_the_documented_counts(batch):
    emb, centers, labels = batch
    rng = np.random.default_rng(3)
    num_classes = 1001
    head = ShardedPartialFC(num_classes, 4, mirrored(), sample_rate=0.1)
    assert head.bounds == shard_bounds(num_classes, 2) == ((0, 501), (501, 1001))
    for step in range(3):
        global_labels = rng.integers(0, num_classes, 64).astype(np.int32)
        union = set()
        for r in head.local_replicas:
            start, stop = head.bounds[r]
            rows = head.sample(tf.constant(global_labels), step, r).numpy()
            positives = {int(y) - start for y in global_labels if start <= y < stop}
            # docs/training.md: max(ceil(sample_rate * N_r), P_r) rows per shard
            assert len(rows) == max(math.ceil(0.1 * (stop - start)), len(positives))
            assert np.all(np.diff(rows) > 0) and rows.min() >= 0 and rows.max() < stop - start
            assert positives <= set(rows.tolist())
            union |= {int(v) + start for v in rows}
        assert set(global_labels.tolist()) <= union
    assert shard_sample_count(500, 0.1) == 50 and shard_sample_count(3, 0.01) == 1


def test_sampled_loss_is_the_softmax_over_the_union_of_shard_samples(batch):
    emb, centers, labels = batch
    centers = np.random.default_rng(5).normal(size=(40, 5))
    labels = np.array([0, 7, 19, 20, 33, 39], np.int32)
    head = _head(centers, sample_rate=0.3, name="cosface")
    per, _, _ = sharded_loss_and_grads(head, emb, labels, step=4)
    rows = [
        head.sample(tf.constant(labels), 4, r).numpy() + head.bounds[r][0]
        for r in head.local_replicas
    ]
    union = np.concatenate(rows)
    assert len(union) == len(set(union.tolist())) < 40
    remapped = np.searchsorted(union, labels)
    want = oracle_loss(emb, centers[union], remapped, MARGINS["cosface"][1])
    assert float(np.mean(per)) == pytest.approx(want, abs=1e-5)


def test_cannot_shard_says_why():
    eight = type("MirroredStrategy", (), {"num_replicas_in_sync": 8})()
    assert "3 classes for 8 replicas" in why_cannot_shard(eight, 3)
    assert why_cannot_shard(eight, 8) is None
    with pytest.raises(ValueError, match="MirroredStrategy or MultiWorkerMirroredStrategy"):
        ShardedPartialFC(10, 4, tf.distribute.get_strategy())
    with pytest.raises(RuntimeError, match="outside strategy.scope"):
        with mirrored().scope():
            ShardedPartialFC(10, 4, mirrored())


# --------------------------------------------------------------------- through the Trainer
def _trainer(tmp_path, strategy, batch_size, resume=False, allow_change=False, **sections):
    values = {
        "data": {"batch_size": batch_size},
        "loss": {"name": "cosface", "margin": 0.35, "scale": SCALE},
        "schedule": {"total_steps": 5, "warmup_steps": 0, "name": "constant"},
        "optimizer": {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
        "checkpoint": {"every_steps": 5},
        "logging": {"every_steps": 1, "progress_bar": False, "plot": False, "tensorboard": False},
    }
    for section, changes in sections.items():
        values.setdefault(section, {}).update(changes)
    return Trainer(
        fx.experiment(**values),
        str(tmp_path),
        resume=resume,
        allow_config_change=allow_change,
        strategy=fx.shared_strategy(strategy),
        backbone_fn=lambda: fx.tiny_backbone(batch_norm=False),
        dataset_fn=fx.make_dataset_fn(),
    )


def _centers(trainer):
    return np.concatenate([np.asarray(v.numpy()) for v in trainer.center_variables()])


def independent_sgd(backbone, centers, steps, batch, lr=0.05, momentum=0.9, wd=5e-4):
    """Single-device full softmax + SGD momentum with coupled L2, written here from the
    definitions (CosFace s*(cos - m) on the target), not from the package."""
    weights = backbone.trainable_variables
    w = tf.Variable(centers)
    slots = [tf.Variable(tf.zeros_like(v)) for v in [*weights, w]]
    images, labels = fx.epoch_arrays(0)
    for k in range(steps):
        x, y = images[k * batch : (k + 1) * batch], labels[k * batch : (k + 1) * batch]
        with tf.GradientTape() as tape:
            e = tf.math.l2_normalize(backbone(x, training=True), axis=1)
            c = tf.matmul(e, tf.math.l2_normalize(w, axis=1), transpose_b=True)
            onehot = tf.one_hot(y, c.shape[1])
            logits = SCALE * (tf.clip_by_value(c, -1.0, 1.0) - 0.35 * onehot)
            ce = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, logits))
            l2 = tf.add_n([tf.reduce_sum(v**2) for v in [*weights, w]])
            total = ce + 0.5 * wd * l2
        for v, m, g in zip([*weights, w], slots, tape.gradient(total, [*weights, w])):
            m.assign(momentum * m - lr * tf.convert_to_tensor(g))
            v.assign_add(m)
    return [v.numpy() for v in weights], w.numpy()


@pytest.mark.slow
def test_five_sgd_steps_sharded_on_two_devices_equal_one_device(tmp_path):
    two = _trainer(tmp_path / "two", "mirrored", 8)
    assert two.sharded and two.strategy.num_replicas_in_sync == 2
    assert [tuple(v.shape) for v in two.center_variables()] == [(5, 16), (5, 16)]
    start_backbone = [v.numpy() for v in two.backbone.trainable_variables]
    start_centers = _centers(two)
    two.fit()
    reference = fx.tiny_backbone(batch_norm=False)
    for v, value in zip(reference.trainable_variables, start_backbone):
        v.assign(value)
    want_backbone, want_centers = independent_sgd(reference, start_centers, 5, 16)
    for got, want in zip(two.backbone.trainable_variables, want_backbone):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(_centers(two), want_centers, atol=1e-5, rtol=1e-5)
    assert np.abs(want_centers - start_centers).max() > 1e-3  # they moved
    # And the replicated single-device Trainer reaches the same weights.
    one = _trainer(tmp_path / "one", "default", 16)
    np.testing.assert_array_equal(_centers(one), start_centers)  # same initial centers
    one.fit()
    np.testing.assert_allclose(_centers(one), _centers(two), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------ elastic resume
@pytest.mark.slow
@pytest.mark.parametrize(("before", "after"), [("mirrored", "default"), ("default", "mirrored")])
def test_resume_on_another_replica_count_gives_the_uninterrupted_next_step(tmp_path, before, after):
    """Saved on R replicas after 3 steps, resumed on R': step 4's loss equals that of a run
    that did all 4 steps on R' (the checkpoint holds the logical [N, D] and its momentum)."""
    per_replica = {"mirrored": 8, "default": 16}
    first = _trainer(tmp_path / "run", before, per_replica[before], schedule={"total_steps": 4})
    assert first.fit(until=3).step == 3
    # Same global batch of 16; the per-replica batch size is the one config change.
    resumed = _trainer(
        tmp_path / "run",
        after,
        per_replica[after],
        resume=True,
        allow_change=True,
        schedule={"total_steps": 4},
    )
    assert resumed.restored_from.endswith("ckpt-3")
    assert resumed.sharded == (after == "mirrored")
    np.testing.assert_array_equal(_centers(resumed), _centers(first))
    straight = _trainer(
        tmp_path / "straight", after, per_replica[after], schedule={"total_steps": 4}
    )
    want = straight.fit().loss
    got = resumed.fit().loss
    assert got == pytest.approx(want, abs=1e-5)
    np.testing.assert_allclose(_centers(resumed), _centers(straight), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.slow
def test_resume_with_other_classes_or_embedding_size_is_refused(tmp_path):
    run = tmp_path / "run"
    _trainer(run, "mirrored", 8, schedule={"total_steps": 2}).fit()
    before = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    with pytest.raises(ValueError, match="10 classes, but this run has 12.*num_classes=12"):
        Trainer(
            fx.experiment(data={"batch_size": 8, "num_classes": 12}),
            str(run),
            resume=True,
            allow_config_change=True,  # past the config check: the checkpoint decides
            strategy=fx.shared_strategy("mirrored"),
            backbone_fn=lambda: fx.tiny_backbone(batch_norm=False),
            dataset_fn=fx.make_dataset_fn(),
        )
    with pytest.raises(ValueError, match="embedding size 16, .* size 8.*embedding_dim=8"):
        Trainer(
            fx.experiment(data={"batch_size": 8}),
            str(run),
            resume=True,
            allow_config_change=True,  # past the config check: the checkpoint decides
            strategy=fx.shared_strategy("mirrored"),
            backbone_fn=lambda: fx.tiny_backbone(batch_norm=False, dim=8),
            dataset_fn=fx.make_dataset_fn(),
        )
    after = {p.name: p.stat().st_mtime_ns for p in (run / "checkpoints").iterdir()}
    assert after == before  # nothing overwritten
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".yaml") == ["config.yaml"]


@pytest.mark.parametrize("strategy", ["mirrored", pytest.param("default", marks=pytest.mark.slow)])
def test_label_outside_the_classes_on_one_replica_is_refused(tmp_path, strategy):
    def bad_dataset_fn(input_context, epoch, skip_batches, batch_size):
        images, labels = fx.epoch_arrays(epoch)
        labels = labels.copy()
        labels[13] = 15  # global batch 16: on the second replica when there are two
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)

    trainer = Trainer(
        fx.experiment(
            data={"batch_size": 8 if strategy == "mirrored" else 16},
            schedule={"total_steps": 3, "warmup_steps": 0},
        ),
        str(tmp_path),
        strategy=fx.shared_strategy(strategy),
        backbone_fn=lambda: fx.tiny_backbone(batch_norm=False),
        dataset_fn=bad_dataset_fn,
    )
    start = _centers(trainer)
    with pytest.raises(ValueError, match=r"\[0, 10\) \(num_classes=10\).*15"):
        trainer.fit()
    np.testing.assert_array_equal(_centers(trainer), start)  # no update
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())
