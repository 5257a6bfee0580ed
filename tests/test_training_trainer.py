"""The training loop on one device and on two logical CPU devices (MirroredStrategy)."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import training_fixtures as fx
import yaml

from keras_arcface.training.trainer import NonFiniteLossError, Trainer


def _strategy(name):
    return fx.shared_strategy(name)


def _trainer(cfg, run_dir, strategy="default", resume=False, batch_norm=True, **kwargs):
    return Trainer(
        cfg,
        str(run_dir),
        resume=resume,
        strategy=_strategy(strategy),
        backbone_fn=lambda: fx.tiny_backbone(batch_norm=batch_norm),
        dataset_fn=kwargs.pop("dataset_fn", fx.make_dataset_fn()),
        **kwargs,
    )


def _weights(trainer):
    return [np.array(v.value) for v in trainer.backbone.weights] + [
        np.array(trainer.head.centers.value)
    ]


def test_fit_writes_the_run_folder(tmp_path):
    cfg = fx.experiment(
        schedule={"epochs": 2}, evaluation={"every_steps": 20}, loss={"scale": 16.0, "margin": 0.2}
    )
    trainer = _trainer(cfg, tmp_path, verification_sets=[fx.pair_set()])
    result = trainer.fit()
    assert result.step == trainer.derived.total_steps == 2 * (640 // 32)
    names = set(os.listdir(tmp_path))
    assert {
        "config.yaml",
        "checkpoints",
        "embedding_latest.keras",
        "embedding_best.keras",
        "metrics.csv",
        "tensorboard",
        "training_curve.png",
    } <= names
    assert os.listdir(tmp_path / "tensorboard")
    saved = yaml.safe_load(open(tmp_path / "config.yaml", encoding="utf-8"))
    assert saved["derived"]["global_batch_size"] == 32
    assert saved["derived"]["total_steps"] == 40
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv", encoding="utf-8")))
    assert [int(r["step"]) for r in rows] == list(range(5, 41, 5))
    assert float(rows[-1]["loss"]) < 0.7 * float(rows[0]["loss"])
    accs = [float(r["verify/toy/accuracy"]) for r in rows if r["verify/toy/accuracy"]]
    assert len(accs) == 2 and accs[-1] > 0.8  # well-separated prototypes
    assert result.best_accuracy == pytest.approx(max(accs))
    # The saved embedding model is the trained one and carries no class centers.
    model = keras.saving.load_model(tmp_path / "embedding_latest.keras")
    images = fx.epoch_arrays(0)[0][:8]
    np.testing.assert_allclose(model.predict(images, verbose=0), trainer.embed(images), atol=1e-5)
    assert all(v.shape != trainer.head.centers.shape for v in model.weights)


def test_existing_run_needs_resume(tmp_path):
    cfg = fx.experiment(schedule={"total_steps": 4}, checkpoint={"every_steps": 2})
    _trainer(cfg, tmp_path).fit()
    with pytest.raises(ValueError, match="resume"):
        _trainer(cfg, tmp_path)


def test_resume_continues_exactly(tmp_path):
    """Stop at step 13 (epoch 1, batch 3) and resume: same weights as an uninterrupted run."""
    cfg = fx.experiment(
        data={"batch_size": 64},  # 10 steps per epoch: the resume crosses an epoch
        schedule={"total_steps": 16, "warmup_steps": 4},
        checkpoint={"every_steps": 5},
        partial_fc={"sample_rate": 0.5},
    )
    straight = _trainer(cfg, tmp_path / "a")
    straight.fit()
    first = _trainer(cfg, tmp_path / "b")
    assert first.fit(until=13).step == 13
    resumed = _trainer(cfg, tmp_path / "b", resume=True)
    assert resumed.restored_from.endswith("ckpt-13")
    assert int(resumed.step.numpy()) == 13
    assert resumed.fit().step == 16
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "metrics.csv"))]
    assert steps == sorted(set(steps))  # no step logged twice across the resume


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    # Images turn NaN from the second epoch (step 21 on); checkpoints every 10 steps.
    cfg = fx.experiment(schedule={"total_steps": 40})
    trainer = _trainer(cfg, tmp_path, dataset_fn=fx.make_dataset_fn(nan_from_epoch=1))
    with pytest.raises(NonFiniteLossError, match="step 21"):
        trainer.fit()
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert latest.endswith("ckpt-20")
    resumed = _trainer(cfg, tmp_path, resume=True, dataset_fn=fx.make_dataset_fn())
    assert int(resumed.step.numpy()) == 20
    assert all(np.all(np.isfinite(w)) for w in _weights(resumed))


def test_mirrored_two_devices_matches_one_device(tmp_path):
    """Two replicas of 8 on one global batch of 16 == one device on the same 16 images."""
    overrides = {
        "schedule": {"total_steps": 6, "warmup_steps": 2},
        "partial_fc": {"sample_rate": 0.5, "shard_centers": False},
    }
    one = _trainer(
        fx.experiment(data={"batch_size": 16}, **overrides), tmp_path / "one", batch_norm=False
    )
    two = _trainer(
        fx.experiment(data={"batch_size": 8}, **overrides),
        tmp_path / "two",
        strategy="mirrored",
        batch_norm=False,
    )
    assert two.strategy.num_replicas_in_sync == 2
    assert two.derived.global_batch_size == 16
    for a, b in zip(_weights(one), _weights(two)):
        np.testing.assert_array_equal(a, b)  # same initialisation
    loss_one, loss_two = one.fit().loss, two.fit().loss
    assert loss_two == pytest.approx(loss_one, rel=1e-4)
    for a, b in zip(_weights(one), _weights(two)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Both replicas hold identical copies.
    centers = two.head.centers.value
    copies = two.strategy.experimental_local_results(centers)
    np.testing.assert_array_equal(np.array(copies[0]), np.array(copies[1]))


def test_mirrored_fit_with_batch_norm_learns(tmp_path):
    cfg = fx.experiment(data={"batch_size": 16}, schedule={"total_steps": 20})
    trainer = _trainer(cfg, tmp_path, strategy="mirrored")
    result = trainer.fit()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv", encoding="utf-8")))
    assert result.step == 20
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_margin_math_in_float32(tmp_path, policy):
    cfg = fx.experiment(mixed_precision=policy, schedule={"total_steps": 6, "warmup_steps": 2})
    trainer = _trainer(cfg, tmp_path)
    is_scaled = isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (policy == "mixed_float16")
    assert trainer.backbone.layers[2].compute_dtype == policy.split("_")[1]
    assert trainer.head.centers.dtype == "float32"
    cosine, _, _ = trainer.head(trainer.backbone(fx.epoch_arrays(0)[0][:4]), np.arange(4))
    assert cosine.dtype == tf.float32
    result = trainer.fit()
    assert np.isfinite(result.loss)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
