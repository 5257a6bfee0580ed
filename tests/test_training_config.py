"""Experiment configs: defaults, shipped files, overrides, errors, derived values, CLI."""

import math

import pytest
import yaml

from keras_arcface.training import config as C


def test_defaults_are_the_paper_recipe():
    cfg = C.from_dict({})
    assert cfg.optimizer.name == "sgd"
    assert cfg.optimizer.momentum == 0.9
    assert cfg.optimizer.weight_decay == 5e-4
    assert cfg.optimizer.weight_decay_mode == "coupled"
    assert cfg.loss.name == "arcface" and cfg.loss.scale == 64.0
    assert cfg.model.embedding_dim == 512
    assert cfg.partial_fc.sample_rate == 1.0


def test_every_shipped_experiment_loads():
    for name in C.experiment_names():
        raw = C.read_experiment(name)
        cfg = C.load_config(name)
        assert cfg.name == name
        # Experiment files hold only what they change, never a dump of the defaults.
        assert len(yaml.safe_dump(raw).splitlines()) < 40, name


def test_shipped_set_is_complete():
    assert {
        "synthetic_demo",
        "casia_r50",
        "ms1mv3_r50",
        "ms1mv3_r100",
        "glint360k_r100",
        "mbf_mobile",
    } <= set(C.experiment_names())


def test_yaml_merges_over_defaults(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: mine\noptimizer:\n  learning_rate: 0.02\n")
    cfg = C.load_config(str(path))
    assert cfg.name == "mine"
    assert cfg.optimizer.learning_rate == 0.02
    assert cfg.optimizer.momentum == 0.9  # untouched default


def test_overrides_are_typed():
    cfg = C.load_config(
        "casia_r50",
        [
            "data.batch_size=64",
            "optimizer.learning_rate=5e-2",
            "optimizer.nesterov=true",
            "schedule.decay_epochs=[10, 20.5]",
            "evaluation.bins=[a.bin,b.bin]",
            "data.dataset_kwargs.shuffle_buffer=512",
            "loss.margin=0.4",
            "mixed_precision=mixed_bfloat16",
        ],
    )
    assert cfg.data.batch_size == 64 and isinstance(cfg.data.batch_size, int)
    assert cfg.optimizer.learning_rate == 0.05
    assert cfg.optimizer.nesterov is True
    assert cfg.schedule.decay_epochs == [10.0, 20.5]
    assert cfg.evaluation.bins == ["a.bin", "b.bin"]
    assert cfg.data.dataset_kwargs == {"shuffle_buffer": 512}
    assert cfg.loss.margin == 0.4
    assert cfg.mixed_precision == "mixed_bfloat16"
    assert C.load_config(None, ["loss.margin=none"]).loss.margin is None


def test_unknown_override_key_names_it():
    for override, fragment in [
        ("optimizer.learnig_rate=0.1", "optimizer.learnig_rate"),
        ("optimiser.learning_rate=0.1", "optimiser"),
        ("data.batch_size.x=1", "data.batch_size"),
    ]:
        with pytest.raises(ValueError, match=fragment.replace(".", r"\.")):
            C.load_config(None, [override])


def test_unknown_yaml_key_names_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("schedule:\n  epochs: 3\n  warmup_epoch: 1\n")
    with pytest.raises(ValueError, match=r"schedule\.warmup_epoch.*Received"):
        C.load_config(str(path))


def test_bad_values_are_rejected():
    for override, error in [
        ("data.batch_size=1.5", TypeError),
        ("data.batch_size=abc", TypeError),
        ("optimizer.nesterov=maybe", TypeError),
        ("optimizer.name=rmsprop", ValueError),
        ("partial_fc.sample_rate=0", ValueError),
        ("partial_fc.sample_rate=1.5", ValueError),
        ("schedule.name=step", ValueError),  # step decay needs its decay points
        ("noequals", ValueError),
    ]:
        with pytest.raises(error, match="Received"):
            C.load_config(None, [override])


def test_unknown_experiment_name():
    with pytest.raises(ValueError, match="no shipped experiment"):
        C.load_config("no_such_experiment")


def test_derived_values_by_hand():
    cfg = C.from_dict(
        {
            "data": {"batch_size": 128, "num_classes": 10572, "num_images": 490623},
            "optimizer": {"learning_rate": 0.1, "reference_batch_size": 512},
            "schedule": {
                "name": "step",
                "epochs": 33.39,
                "warmup_epochs": 0.5,
                "decay_epochs": [20.87, 29.22],
            },
        }
    )
    d = C.resolve(cfg, num_replicas=4)
    assert d.global_batch_size == 512
    assert d.learning_rate == pytest.approx(0.1)
    assert d.steps_per_epoch == 490623 // 512 == 958
    assert d.total_steps == math.ceil(33.39 * 958)
    assert d.warmup_steps == math.ceil(0.5 * 958)
    # The paper's 20K and 28K iterations at batch 512.
    assert d.decay_steps == (math.ceil(20.87 * 958), math.ceil(29.22 * 958))
    assert abs(d.decay_steps[0] - 20000) < 10 and abs(d.decay_steps[1] - 28000) < 10
    # Two replicas: half the global batch, half the (linearly scaled) rate, twice the steps.
    d2 = C.resolve(cfg, num_replicas=2)
    assert d2.global_batch_size == 256
    assert d2.learning_rate == pytest.approx(0.05)
    assert d2.steps_per_epoch == 490623 // 256


def test_derived_from_manifest_counts_and_explicit_steps():
    cfg = C.from_dict({"schedule": {"total_steps": 300, "warmup_steps": 30}})
    d = C.resolve(cfg, num_replicas=1, num_classes=50, num_images=1000)
    assert (d.num_classes, d.total_steps, d.warmup_steps) == (50, 300, 30)
    with pytest.raises(ValueError, match="num_classes"):
        C.resolve(cfg, num_replicas=1)
    with pytest.raises(ValueError, match="warm-up"):
        C.resolve(
            C.from_dict({"schedule": {"total_steps": 10, "warmup_steps": 10}}), 1, num_classes=5
        )


def test_resolved_config_round_trip(tmp_path):
    cfg = C.load_config("glint360k_r100", ["data.num_images=1000", "data.num_classes=20"])
    derived = C.resolve(cfg, num_replicas=2)
    path = C.save_resolved(cfg, derived, str(tmp_path / "config.yaml"))
    raw = yaml.safe_load(open(path, encoding="utf-8"))
    assert raw["derived"]["global_batch_size"] == 256
    assert C.from_dict(raw) == cfg  # the derived section is ignored on reload


def test_train_command_print_config_and_errors(capsys):
    from keras_arcface.cli import main

    assert main(["train", "mbf_mobile", "schedule.epochs=3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["backbone"] == "mbf" and printed["schedule"]["epochs"] == 3.0
    assert main(["train", "mbf_mobile", "schedul.epochs=3", "--print-config"]) == 2
    assert "schedul" in capsys.readouterr().err
    assert main(["train", "--list"]) == 0
    assert "casia_r50" in capsys.readouterr().out


# Renamed keys (C.RENAMED_KEYS): partial_fc.shard_centres is now partial_fc.shard_centers.
OLD, NEW = "partial_fc.shard_centres", "partial_fc.shard_centers"


def _renamed_key_warnings(record):
    return [
        w
        for w in record
        if issubclass(w.category, DeprecationWarning) and "shard_centres" in str(w.message)
    ]


def _load(function, *args):
    """``function(*args)`` and the DeprecationWarnings it gave about the renamed key."""
    import warnings

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = function(*args)
    return result, _renamed_key_warnings(record)


def test_renamed_key_works_in_yaml_dict_and_overrides_and_warns_once(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("partial_fc:\n  sample_rate: 0.5\n  shard_centres: false\n")
    cases = [
        (C.load_config, str(path)),
        (C.from_dict, {"partial_fc": {"shard_centres": False}}),
        (C.load_config, None, [f"{OLD}=false"]),
    ]
    for function, *args in cases:
        cfg, warned = _load(function, *args)
        assert cfg.partial_fc.shard_centers is False, args
        assert len(warned) == 1, (args, warned)
        message = str(warned[0].message)
        assert OLD in message and NEW in message and "0.3" in message


def test_new_key_does_not_warn(tmp_path):
    path = tmp_path / "new.yaml"
    path.write_text("partial_fc:\n  shard_centers: true\n")
    for function, *args in [
        (C.load_config, str(path)),
        (C.from_dict, {"partial_fc": {"shard_centers": True}}),
        (C.load_config, None, [f"{NEW}=true"]),
    ]:
        cfg, warned = _load(function, *args)
        assert cfg.partial_fc.shard_centers is True and warned == [], args


def test_both_spellings_with_different_values_are_an_error(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("partial_fc:\n  shard_centres: true\n  shard_centers: false\n")
    expected = rf"{NEW}.*deprecated name '{OLD}'.*Received: {OLD}=True, {NEW}=False"
    with pytest.warns(DeprecationWarning):
        with pytest.raises(C.ConfigError, match=expected):
            C.load_config(str(path))
    with pytest.warns(DeprecationWarning):
        with pytest.raises(C.ConfigError, match=expected):
            C.from_dict({"partial_fc": {"shard_centres": True, "shard_centers": False}})
    for overrides in ([f"{OLD}=true", f"{NEW}=false"], [f"{NEW}=false", f"{OLD}=true"]):
        with pytest.warns(DeprecationWarning):
            with pytest.raises(C.ConfigError, match=expected):
                C.load_config(None, overrides)
    # The same value twice is not a conflict.
    cfg, _ = _load(C.from_dict, {"partial_fc": {"shard_centres": True, "shard_centers": True}})
    assert cfg.partial_fc.shard_centers is True


def test_an_override_beats_the_file_under_either_name(tmp_path):
    old_file, new_file = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old_file.write_text("partial_fc:\n  shard_centres: true\n")
    new_file.write_text("partial_fc:\n  shard_centers: true\n")
    assert (
        _load(C.load_config, str(old_file), [f"{NEW}=false"])[0].partial_fc.shard_centers is False
    )
    assert (
        _load(C.load_config, str(new_file), [f"{OLD}=false"])[0].partial_fc.shard_centers is False
    )


def test_from_dict_leaves_the_callers_mapping_alone():
    values = {"partial_fc": {"shard_centres": False}}
    _load(C.from_dict, values)
    assert values == {"partial_fc": {"shard_centres": False}}


def test_a_run_config_saved_with_the_old_key_compares_silently():
    saved = C.to_dict(C.from_dict({"partial_fc": {"shard_centers": False}}))
    saved["partial_fc"]["shard_centres"] = saved["partial_fc"].pop("shard_centers")
    changes, warned = _load(
        C.changed_keys, saved, C.from_dict({"partial_fc": {"shard_centers": False}})
    )
    assert changes == [] and warned == []
    changes, _ = _load(C.changed_keys, saved, C.from_dict({}))
    assert changes == [f"{NEW}: False -> None"]


def test_a_run_saved_by_an_older_version_resumes(tmp_path):
    """``train --resume --run-dir R`` on a run whose config.yaml has the old key."""
    import training_fixtures as fx

    from keras_arcface.training.trainer import Trainer

    def trainer(cfg, resume=False):
        backbone, data = fx.tiny_backbone, fx.make_dataset_fn()
        return Trainer(cfg, str(tmp_path), resume=resume, backbone_fn=backbone, dataset_fn=data)

    cfg = fx.experiment(
        schedule={"total_steps": 4, "warmup_steps": 1}, partial_fc={"shard_centers": False}
    )
    cfg.checkpoint.every_steps = 2
    trainer(cfg).fit(until=2)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    saved["partial_fc"]["shard_centres"] = saved["partial_fc"].pop("shard_centers")  # as 0.1 wrote
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    resumed_cfg, warned = _load(C.load_config, str(tmp_path / "config.yaml"))
    assert len(warned) == 1
    resumed = trainer(resumed_cfg, resume=True)  # no "config differs" refusal
    assert int(resumed.step.numpy()) == 2
    assert resumed.fit().step == 4
    rewritten = yaml.safe_load((tmp_path / "config.yaml").read_text())["partial_fc"]
    assert rewritten == {"sample_rate": 1.0, "shard_centers": False}
