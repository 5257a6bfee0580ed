"""Fine-tuning: model.init_from, class-mean centers, head warm-up, the backbone learning-rate
multiplier, the margin warm-up and early stopping, on the tiny backbone of the trainer tests."""

import json
import os

import keras
import numpy as np
import pytest
import training_fixtures as fx
import yaml

from keras_arcface.training import finetune
from keras_arcface.training.trainer import Trainer


def _trainer(cfg, run_dir, backbone_fn=None, **kwargs):
    return Trainer(
        cfg,
        str(run_dir),
        backbone_fn=backbone_fn or (lambda: fx.tiny_backbone()),
        dataset_fn=fx.make_dataset_fn(),
        **kwargs,
    )


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("source_run")
    cfg = fx.experiment(schedule={"total_steps": 6}, checkpoint={"every_steps": 6})
    _trainer(cfg, run).fit()
    return run


def _backbone_arrays(model):
    return [np.array(v) for v in model.weights]


def test_init_from_run_folder_and_keras_file(source_run, tmp_path):
    expected = _backbone_arrays(keras.saving.load_model(source_run / "embedding_latest.keras"))
    for init_from in (str(source_run), str(source_run / "embedding_latest.keras")):
        run = tmp_path / os.path.basename(init_from)
        cfg = fx.experiment(model={"init_from": init_from}, schedule={"total_steps": 4})
        trainer = _trainer(cfg, run)
        got = _backbone_arrays(trainer.backbone)
        assert all(np.array_equal(a, b) for a, b in zip(expected, got))
        report = json.load(open(run / "init_from.json", encoding="utf-8"))
        assert report["kind"] == "keras" and report["tensors_copied"] == len(expected)
        saved = yaml.safe_load(open(run / "config.yaml", encoding="utf-8"))
        assert saved["model"]["init_from"] == init_from


def test_class_mean_centers_match_a_numpy_oracle(source_run, tmp_path):
    cfg = fx.experiment(
        model={"init_from": str(source_run), "init_centers": "class_mean"},
        schedule={"total_steps": 4},
    )
    trainer = _trainer(cfg, tmp_path)
    model = keras.saving.load_model(source_run / "embedding_latest.keras")
    images, labels = fx.epoch_arrays(0)  # one pass = the 640 images of epoch 0
    vectors = model.predict(images, verbose=0).astype(np.float64)
    oracle = np.zeros((fx.NUM_CLASSES, vectors.shape[1]))
    for vector, label in zip(vectors, labels):
        oracle[label] += vector / np.linalg.norm(vector)
    oracle /= np.linalg.norm(oracle, axis=1, keepdims=True)
    np.testing.assert_allclose(trainer.head.centers.numpy(), oracle, atol=1e-5)
    assert trainer.init_report["images_embedded"] == fx.NUM_IMAGES


def test_head_warmup_freezes_the_backbone_and_its_batch_norm_statistics(tmp_path):
    cfg = fx.experiment(schedule={"total_steps": 3, "head_warmup_steps": 3, "warmup_steps": 0})
    trainer = _trainer(cfg, tmp_path / "warm")
    before = [np.array(v.value) for v in trainer.backbone.weights]
    centers = trainer.head.centers.numpy()
    trainer.fit()
    after = [np.array(v.value) for v in trainer.backbone.weights]
    assert any("moving" in v.path for v in trainer.backbone.weights)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert not np.allclose(trainer.head.centers.numpy(), centers)
    # After the warm-up the backbone trains (moving statistics included).
    cfg = fx.experiment(schedule={"total_steps": 5, "head_warmup_steps": 3})
    trainer = _trainer(cfg, tmp_path / "after")
    before = [np.array(v.value) for v in trainer.backbone.weights]
    trainer.fit()
    changed = [
        not np.array_equal(a, np.array(v.value)) for a, v in zip(before, trainer.backbone.weights)
    ]
    assert all(changed)


def test_backbone_learning_rate_multiplier_scales_the_first_update(tmp_path):
    deltas = {}
    for multiplier in (1.0, 0.25):
        cfg = fx.experiment(
            schedule={"name": "constant", "total_steps": 1, "warmup_steps": 0},
            optimizer={"backbone_lr_multiplier": multiplier, "learning_rate": 0.05},
        )
        trainer = _trainer(cfg, tmp_path / str(multiplier))
        before = [np.array(v.value) for v in trainer.backbone.trainable_variables]
        centers = trainer.head.centers.numpy()
        trainer.fit()
        deltas[multiplier] = (
            [np.array(v.value) - b for v, b in zip(trainer.backbone.trainable_variables, before)],
            trainer.head.centers.numpy() - centers,
        )
    # SGD's first step is w -= lr * g for the backbone: a quarter of the rate, a quarter of
    # the step; the class centers keep the full rate.
    for full, quarter in zip(deltas[1.0][0], deltas[0.25][0]):
        np.testing.assert_allclose(quarter, 0.25 * full, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(deltas[0.25][1], deltas[1.0][1], rtol=1e-4, atol=1e-7)


def test_margin_warmup_blends_the_margin_in_linearly():
    from keras_arcface.losses import CosFaceLoss

    loss = CosFaceLoss(margin=0.4, scale=10.0)
    cosine = np.array([[0.5, 0.2, -0.1], [0.3, 0.9, 0.0]], np.float32)
    labels = np.array([0, 1])
    for step, ramp in ((0, 0.0), (5, 0.5), (10, 1.0), (30, 1.0)):
        logits_fn = finetune.margin_warmup(loss.logits, 10.0, lambda s=step: s, 10)
        got = np.asarray(logits_fn(labels, cosine))
        expected = 10.0 * cosine.astype(np.float64)
        for row, label in enumerate(labels):
            expected[row, label] -= 10.0 * ramp * 0.4  # CosFace: cos - ramp * m, times s
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_early_stopping_ends_the_run_after_stale_verifications(tmp_path):
    cfg = fx.experiment(
        schedule={"name": "constant", "total_steps": 40, "warmup_steps": 0},
        optimizer={"learning_rate": 1e-9},  # nothing learns: accuracy cannot improve
        evaluation={"every_steps": 2, "early_stopping_patience": 2},
    )
    trainer = _trainer(cfg, tmp_path, verification_sets=[fx.pair_set()])
    result = trainer.fit()
    assert result.stopped_early and result.step == 6  # best at 2, stale at 4 and 6
    assert os.path.isfile(tmp_path / "embedding_best.keras")


# ---------------------------------------------------------------- bad input


def test_init_from_of_another_embedding_size_or_architecture(source_run, tmp_path):
    cfg = fx.experiment(model={"init_from": str(source_run)}, schedule={"total_steps": 4})
    run = tmp_path / "dim"
    with pytest.raises(ValueError, match=r"size 16.*set model.embedding_dim=16"):
        _trainer(cfg, run, backbone_fn=lambda: fx.tiny_backbone(dim=8))
    assert not run.exists()  # nothing written
    run = tmp_path / "arch"
    with pytest.raises(ValueError, match="another architecture.*layer .bn. is not in the backbone"):
        _trainer(cfg, run, backbone_fn=lambda: fx.tiny_backbone(batch_norm=False))
    assert not run.exists()


def test_init_from_missing_or_unknown_file(tmp_path):
    for path, pattern in (
        (tmp_path / "nope.keras", "no such file"),
        (tmp_path, "folder without embedding_best.keras"),
    ):
        cfg = fx.experiment(model={"init_from": str(path)}, schedule={"total_steps": 4})
        with pytest.raises(ValueError, match=pattern):
            _trainer(cfg, tmp_path / "run")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 truncated")
    cfg = fx.experiment(model={"init_from": str(broken)}, schedule={"total_steps": 4})
    with pytest.raises(ValueError, match="Could not load the file as a .keras model"):
        _trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_fine_tuning_keys_are_validated():
    from keras_arcface.training import config

    with pytest.raises(ValueError, match="model.init_centers"):
        config.from_dict({"model": {"init_centers": "mean"}})
    with pytest.raises(ValueError, match="set model.init_from"):
        config.from_dict({"model": {"init_centers": "class_mean"}})
    with pytest.raises(ValueError, match="optimizer.backbone_lr_multiplier"):
        config.from_dict({"optimizer": {"backbone_lr_multiplier": 0}})


def test_small_dataset_recipe_resolves_and_the_train_warning_names_it():
    from keras_arcface.training import config

    recipe = config.load_config("small_dataset", ["data.num_classes=30", "data.num_images=300"])
    derived = config.resolve(recipe)
    assert derived.steps_per_epoch == 300 // 64
    assert derived.margin_warmup_steps == 5 * derived.steps_per_epoch
    assert derived.verify_every_steps == 2 * derived.steps_per_epoch
    assert finetune.small_dataset_warning(recipe, 30) is None
    large = config.load_config("casia_r50")
    message = finetune.small_dataset_warning(large, 30)
    assert "30 identities" in message and "keras-arcface train small_dataset" in message
    assert finetune.small_dataset_warning(large, 10_000) is None
    tuned = config.load_config("casia_r50", ["model.init_from=model.keras"])
    assert finetune.small_dataset_warning(tuned, 30) is None
