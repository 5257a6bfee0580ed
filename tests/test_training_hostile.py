"""Training inputs that used to crash the machine, fail deep in TF or pass silently (issue 16).

Each test checks that the message names the key or file and that nothing saved is lost.
"""

import hashlib
import json
import os

import numpy as np
import pytest
import training_fixtures as fx
import yaml

from keras_arcface.training import config as config_lib
from keras_arcface.training.trainer import Trainer


def _trainer(cfg, run_dir, **kwargs):
    return Trainer(
        cfg,
        str(run_dir),
        backbone_fn=fx.tiny_backbone,
        dataset_fn=kwargs.pop("dataset_fn", fx.make_dataset_fn()),
        **kwargs,
    )


def _digests(folder):
    return {
        os.path.relpath(os.path.join(root, name), folder): hashlib.sha256(
            open(os.path.join(root, name), "rb").read()
        ).hexdigest()
        for root, _, names in os.walk(folder)
        for name in names
    }


def test_a_batch_larger_than_the_dataset_is_refused_saying_what_fits():
    # Issue 16, item 6: data.batch_size=100000 on 200 images was OOM-killed at ~24 GB.
    cfg = fx.experiment(data={"batch_size": 100000, "num_images": 200})
    with pytest.raises(config_lib.ConfigError, match=r"data.batch_size=100000.*200 images.*<= 100"):
        config_lib.resolve(cfg, num_replicas=2)


def test_num_classes_below_the_manifest_is_refused_up_front():
    # Issue 16, item 7: this failed deep in TF ("indices[0] = 13 is not in [0, 5)").
    cfg = fx.experiment(data={"num_classes": 5})
    with pytest.raises(config_lib.ConfigError, match=r"data.num_classes=5.*14 classes.*0..13"):
        config_lib.resolve(cfg, num_classes=14, num_images=640)


def test_resume_with_another_batch_size_needs_an_explicit_flag(tmp_path):
    # Issue 16, item 7: the changed batch size silently overwrote config.yaml.
    cfg = fx.experiment(schedule={"total_steps": 4, "warmup_steps": 1})
    cfg.checkpoint.every_steps = 2
    _trainer(cfg, tmp_path).fit()
    before = _digests(tmp_path)
    changed = fx.experiment(data={"batch_size": 16}, schedule={"total_steps": 4, "warmup_steps": 1})
    changed.checkpoint.every_steps = 2
    with pytest.raises(config_lib.ConfigError, match=r"data.batch_size: 32 -> 16.*--allow-config"):
        _trainer(changed, tmp_path, resume=True)
    assert _digests(tmp_path) == before  # config.yaml, checkpoints and models untouched
    shown = fx.experiment(schedule={"total_steps": 4, "warmup_steps": 1})
    shown.checkpoint.every_steps = 2
    shown.logging.progress_bar = True  # presentation only: not a change
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config_lib.changed_keys(saved, shown) == []
    trainer = _trainer(changed, tmp_path, resume=True, allow_config_change=True)
    assert trainer.derived.global_batch_size == 16
    kept = yaml.safe_load((tmp_path / "config.step-4.yaml").read_text())
    assert kept["data"]["batch_size"] == 32
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["data"]["batch_size"] == 16


def test_resume_removes_what_a_killed_save_left(tmp_path):
    cfg = fx.experiment(schedule={"total_steps": 4, "warmup_steps": 1})
    cfg.checkpoint.every_steps = 2
    _trainer(cfg, tmp_path).fit()
    kept = _digests(tmp_path)
    leftovers = [
        tmp_path / "checkpoints" / "ckpt-6_temp" / "part-00000-of-00001.data-00000-of-00001",
        tmp_path / "checkpoints" / "checkpoint.tmp3f2a9c",
        tmp_path / ".tmp-1234.keras",
        tmp_path / ".embedding_latest.keras.x1y2z3.tmp.keras",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half-written")
    trainer = _trainer(cfg, tmp_path, resume=True)
    assert trainer.restored_from.endswith("ckpt-4")
    assert not any(path.exists() for path in leftovers)
    assert not (tmp_path / "checkpoints" / "ckpt-6_temp").exists()
    assert {k: v for k, v in _digests(tmp_path).items() if k != "config.yaml"} == {
        k: v for k, v in kept.items() if k != "config.yaml"
    }


def test_config_yaml_syntax_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data:\n  batch_size: 32\n  num_classes: [1,\n")
    with pytest.raises(config_lib.ConfigError, match=r"exp.yaml:4:1: YAML syntax error"):
        config_lib.load_config(str(path))
    path.write_bytes(b"data:\n  batch_size: \xff\n")
    with pytest.raises(config_lib.ConfigError, match=r"exp.yaml is not UTF-8 text"):
        config_lib.load_config(str(path))


def _tiny_tfrecords(folder, num_images=200, num_shards=4):
    import io

    from PIL import Image

    from keras_arcface.data import ImageRecord, write_records

    rng = np.random.default_rng(0)
    protos = fx.prototypes()
    records = []
    for k in range(num_images):
        label = k % fx.NUM_CLASSES
        pixels = np.clip(protos[label] + rng.normal(0, 20, protos[label].shape), 0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
        records.append(
            ImageRecord(buffer.getvalue(), label, image_format="png", height=16, width=16)
        )
    names = [f"id{k}" for k in range(fx.NUM_CLASSES)]
    write_records(
        folder,
        records,
        class_names=names,
        num_shards=num_shards,
        image_size=(16, 16),
        progress=False,
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    shard = folder / manifest["shards"][1]["file"]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) * 2 // 3 + 7])  # cut inside a record
    return manifest["shards"][1]["file"]


def _tfrecord_experiment(train_dir, on_error):
    cfg = fx.experiment(
        data={"train_dir": str(train_dir), "num_classes": 0, "num_images": 0},
        schedule={"total_steps": 8, "warmup_steps": 1},
    )
    cfg.data.dataset_kwargs = {"image_size": (16, 16), "on_error": on_error, "augment": False}
    cfg.checkpoint.every_steps = 4
    return cfg


def test_damaged_tfrecords_name_the_shard_or_are_counted_and_reported(tmp_path):
    # Issue 16, item 5: "DataLossError: truncated record at 26679" named no shard, and a run
    # that never read a truncated shard's tail under "skip" ended with "done" and no count.
    from keras_arcface.errors import DataError

    damaged = _tiny_tfrecords(tmp_path / "data")
    trainer = Trainer(
        _tfrecord_experiment(tmp_path / "data", "raise"),
        str(tmp_path / "r1"),
        backbone_fn=fx.tiny_backbone,
    )
    with pytest.raises(
        DataError, match=rf"data: .*lost in damaged shard tails \({damaged}: \d+ of 50"
    ):
        trainer.fit()
    trainer = Trainer(
        _tfrecord_experiment(tmp_path / "data", "skip"),
        str(tmp_path / "r2"),
        backbone_fn=fx.tiny_backbone,
    )
    result = trainer.fit()
    assert result.step == 8 and not result.data_check["ok"]
    assert damaged in result.data_check["summary"]
    report = json.loads((tmp_path / "r2" / "data_check.json").read_text())
    (shard,) = [s for s in report["shards"] if s["file"] == damaged]
    lost = shard["expected"] - shard["read"]
    assert lost > 0 and report["problems"]["by_reason"]["missing records"] == lost
    assert f"{lost} record(s) lost" in report["summary"]
