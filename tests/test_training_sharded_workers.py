"""Sharded Partial FC with two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy)."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
import training_fixtures as fx

from keras_arcface.training.trainer import Trainer

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    sys.path.insert(0, {tests_dir!r})
    import training_fixtures as fx
    from keras_arcface.training.strategy import create_strategy
    from keras_arcface.training.trainer import Trainer

    mode, run_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
    strategy = create_strategy("multi_worker")

    def trainer(cfg, folder, batch_norm, resume=False):
        return Trainer(cfg, folder, strategy=strategy, resume=resume,
                       backbone_fn=lambda: fx.tiny_backbone(batch_norm=batch_norm),
                       dataset_fn=fx.make_interleaved_dataset_fn())

    def weights(t):
        shards = [np.array(v.numpy()) for v in t.center_variables()]
        return [np.array(v.numpy()) for v in t.backbone.weights], shards

    arrays = {{}}
    if mode == "exact":
        cfg = fx.experiment(**{config!r})
        # Batch norm on; stop at 3 and resume from the folder both workers share.
        first = trainer(cfg, os.path.join(run_dir, "bn"), True)
        first.fit(until=3)
        again = trainer(cfg, os.path.join(run_dir, "bn"), True, resume=True)
        arrays["bn_restored"] = np.array(again.restored_from.endswith("ckpt-3"))
        again.fit()
        backbone, shards = weights(again)
        arrays.update({{f"bn_w{{i}}": w for i, w in enumerate(backbone)}})
        arrays.update({{f"bn_c{{i}}": c for i, c in enumerate(shards)}})
        plain = trainer(cfg, os.path.join(run_dir, "plain"), False)
        plain.fit()
        backbone, shards = weights(plain)
        arrays.update({{f"plain_w{{i}}": w for i, w in enumerate(backbone)}})
        arrays.update({{f"plain_c{{i}}": c for i, c in enumerate(shards)}})
    else:
        cfg = fx.experiment(**{long_config!r})
        t = trainer(cfg, run_dir, True, resume=(mode == "resume"))
        arrays["restored"] = np.array(str(t.restored_from))
        t.fit()
        backbone, shards = weights(t)
        arrays.update({{f"bn_w{{i}}": w for i, w in enumerate(backbone)}})
        arrays.update({{f"bn_c{{i}}": c for i, c in enumerate(shards)}})
    arrays["sharded"] = np.array(t.sharded if mode != "exact" else plain.sharded)
    np.savez(out, **arrays)
    """
)

CONFIG = {
    "data": {"batch_size": 8},
    "loss": {"name": "arcface", "margin": 0.3, "scale": 16.0},
    "schedule": {"total_steps": 5, "warmup_steps": 0, "name": "constant"},
    "optimizer": {"learning_rate": 0.05},
    "checkpoint": {"every_steps": 5},
    "logging": {"every_steps": 1, "progress_bar": False, "plot": False, "tensorboard": False},
}
LONG_CONFIG = {
    **CONFIG,
    "schedule": {"total_steps": 60, "warmup_steps": 0, "name": "constant"},
    "checkpoint": {"every_steps": 2, "max_to_keep": 2},
}


def _ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(tmp_path, mode, run_dirs, tag):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests_dir=TESTS_DIR, config=CONFIG, long_config=LONG_CONFIG))
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        out = tmp_path / f"{tag}{index}.npz"
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), mode, str(run_dirs[index]), str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def _finish(procs, timeout=400):
    for proc in procs:
        try:
            output = proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"multi-worker training did not finish in {timeout} s")
        assert proc.returncode == 0, output[-3000:]


def _in_process(tmp_path, strategy, batch, batch_norm, config):
    values = {k: dict(v) for k, v in config.items()}
    values["data"]["batch_size"] = batch
    trainer = Trainer(
        fx.experiment(**values),
        str(tmp_path),
        strategy=fx.shared_strategy(strategy),
        backbone_fn=lambda: fx.tiny_backbone(batch_norm=batch_norm),
        dataset_fn=fx.make_interleaved_dataset_fn(),
    )
    trainer.fit()
    return trainer


def _compare(saved, prefix, trainer, atol=1e-5):
    backbone = [np.array(v.numpy()) for v in trainer.backbone.weights]
    for i, want in enumerate(backbone):
        np.testing.assert_allclose(saved[f"{prefix}_w{i}"], want, atol=atol, rtol=1e-5)
    return np.concatenate([np.array(v.numpy()) for v in trainer.center_variables()])


def test_two_workers_equal_two_devices_and_one_device(tmp_path):
    """Sharded rate-1.0 head: 2 workers == 2 logical devices (batch norm on, moving statistics
    included, with a stop and a resume from the shared folder on the way) == 1 device (batch
    norm off: per-replica batch statistics differ from the global batch's by definition)."""
    shared = tmp_path / "shared"
    _finish(_start_workers(tmp_path, "exact", [shared, shared], "exact"))
    w0, w1 = np.load(tmp_path / "exact0.npz"), np.load(tmp_path / "exact1.npz")
    assert bool(w0["sharded"]) and bool(w0["bn_restored"]) and bool(w1["bn_restored"])
    assert w0["bn_c0"].shape == (5, 16) == w1["bn_c0"].shape  # each worker: half the rows
    devices = _in_process(tmp_path / "devices", "mirrored", 8, True, CONFIG)
    assert devices.sharded
    want = _compare(w0, "bn", devices)
    _compare(w1, "bn", devices)  # the worker copies of the backbone agree too
    np.testing.assert_allclose(np.concatenate([w0["bn_c0"], w1["bn_c0"]]), want, atol=1e-5)
    single = _in_process(tmp_path / "single", "default", 16, False, CONFIG)
    want = _compare(w0, "plain", single)
    np.testing.assert_allclose(np.concatenate([w0["plain_c0"], w1["plain_c0"]]), want, atol=1e-5)


def _latest_step(folder):
    latest = tf.train.latest_checkpoint(str(folder / "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_sigkill_and_resume_without_shared_storage(tmp_path):
    """Two workers, each with its own run folder (only the chief's holds checkpoints), are
    killed mid-run and resumed: the chief sends its checkpoint to the other worker, and the
    result equals an uninterrupted run on two logical devices."""
    folders = [tmp_path / "chief", tmp_path / "other"]
    procs = _start_workers(tmp_path, "fit", folders, "killed")
    deadline = time.time() + 300
    while _latest_step(folders[0]) < 10 and time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    assert all(p.poll() is None for p in procs), "the run ended before it could be killed"
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    killed_at = _latest_step(folders[0])
    assert 10 <= killed_at < 60
    assert not (folders[1] / "checkpoints").exists() or _latest_step(folders[1]) == 0
    _finish(_start_workers(tmp_path, "resume", folders, "resumed"))
    w0, w1 = np.load(tmp_path / "resumed0.npz"), np.load(tmp_path / "resumed1.npz")
    assert str(w0["restored"]).endswith(f"ckpt-{killed_at}")
    assert str(w1["restored"]).endswith(f"ckpt-{killed_at}")
    assert _latest_step(folders[0]) == 60
    straight = _in_process(tmp_path / "straight", "mirrored", 8, True, LONG_CONFIG)
    want = _compare(w0, "bn", straight)
    np.testing.assert_allclose(np.concatenate([w0["bn_c0"], w1["bn_c0"]]), want, atol=1e-5)
