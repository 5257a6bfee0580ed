"""Slow, multi-process training checks: two workers on 127.0.0.1, SIGKILL and resume."""

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
import training_fixtures as fx

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.slow

WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {tests_dir!r})
    import training_fixtures as fx
    from keras_arcface.training.strategy import create_strategy
    from keras_arcface.training.trainer import Trainer

    strategy = create_strategy("multi_worker")
    cfg = fx.experiment(
        data={{"batch_size": 16}},
        schedule={{"total_steps": 8, "warmup_steps": 2}},
        partial_fc={{"sample_rate": 0.5, "shard_centers": False}},  # replicated: equal copies
        checkpoint={{"every_steps": 4}},
    )
    trainer = Trainer(cfg, sys.argv[1], strategy=strategy, backbone_fn=fx.tiny_backbone,
                      dataset_fn=fx.make_dataset_fn())
    result = trainer.fit()
    weights = [np.array(v.value) for v in trainer.backbone.weights]
    weights.append(np.array(trainer.head.centers.value))
    np.savez(sys.argv[2], *weights, step=result.step,
             replicas=strategy.num_replicas_in_sync, chief=trainer.is_chief)
    """
)


def _free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(**extra):
    env = dict(os.environ)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", **extra)
    return env


def test_two_workers_end_with_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT.format(tests_dir=TESTS_DIR))
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    str(tmp_path / f"run{index}"),
                    str(tmp_path / f"w{index}.npz"),
                ],
                env=_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("multi-worker training did not finish in 300 s")
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    first, second = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert int(first["replicas"]) == 2 and int(first["step"]) == 8 == int(second["step"])
    assert bool(first["chief"]) and not bool(second["chief"])
    arrays = [k for k in first.files if k.startswith("arr_")]
    assert len(arrays) > 3
    for key in arrays:
        np.testing.assert_array_equal(first[key], second[key])
    initial = np.load(tmp_path / "w0.npz")[arrays[-1]]
    assert np.all(np.isfinite(initial))
    # Only the chief writes the run folder's checkpoints and metrics.
    assert os.path.exists(tmp_path / "run0" / "checkpoints" / "checkpoint")
    assert not os.path.exists(tmp_path / "run1" / "checkpoints" / "checkpoint")
    assert os.path.exists(tmp_path / "run0" / "metrics.csv")
    assert not os.path.exists(tmp_path / "run1" / "metrics.csv")
    # The same global batches in one process (two replicas over two logical CPUs, each fed
    # the share its worker read) reach the same weights: the cross-worker gradient sum,
    # center update, Partial FC sampling and batch-norm averaging match a single process.
    single = _single_process_weights(tmp_path / "single")
    assert len(single) == len(arrays)
    for key, weights in zip(arrays, single):
        np.testing.assert_allclose(first[key], weights, rtol=1e-4, atol=1e-5, err_msg=key)


def _worker_order_dataset_fn(num_workers=2):
    """One input pipeline that feeds replica ``i`` what worker ``i`` reads from its shard."""
    import tensorflow as tf

    def dataset_fn(input_context, epoch, skip_batches, batch_size):
        images, labels = fx.epoch_arrays(epoch)
        # Worker i shards element-wise (elements i, i + 2, ...) and batches its shard; replica
        # batches come from the single pipeline in turn: shard 0's batch, shard 1's, ...
        rows = np.arange(len(labels)).reshape(-1, num_workers * batch_size)
        order = np.concatenate([row[w::num_workers] for row in rows for w in range(num_workers)])
        ds = tf.data.Dataset.from_tensor_slices((images[order], labels[order]))
        ds = ds.repeat().skip(skip_batches * batch_size * num_workers)
        return ds.batch(batch_size, drop_remainder=True)

    return dataset_fn


def _single_process_weights(run_dir):
    from keras_arcface.training.trainer import Trainer

    cfg = fx.experiment(
        data={"batch_size": 16},
        schedule={"total_steps": 8, "warmup_steps": 2},
        partial_fc={"sample_rate": 0.5, "shard_centers": False},  # replicated copies compared
        checkpoint={"every_steps": 4},
    )
    trainer = Trainer(
        cfg,
        str(run_dir),
        strategy=fx.shared_strategy("mirrored"),
        backbone_fn=fx.tiny_backbone,
        dataset_fn=_worker_order_dataset_fn(),
    )
    assert trainer.strategy.num_replicas_in_sync == 2
    assert trainer.fit().step == 8
    weights = [np.array(v.value) for v in trainer.backbone.weights]
    return weights + [np.array(trainer.head.centers.value)]


# ----------------------------------------------------------------------- kill and resume
@pytest.fixture(scope="module")
def tiny_tfrecords(tmp_path_factory):
    from keras_arcface.data import generate_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    summary = generate_synthetic(
        str(out),
        num_identities=8,
        images_per_identity=8,
        heldout_identities=4,
        heldout_images_per_identity=3,
        num_pairs=20,
        num_workers=1,
        progress=False,
    )
    return summary["train_dir"]


def _train_cmd(run_dir, train_dir, *extra):
    return [
        sys.executable,
        "-m",
        "keras_arcface",
        "train",
        "synthetic_demo",
        f"data.train_dir={train_dir}",
        "data.batch_size=8",
        "schedule.total_steps=18",
        "schedule.warmup_steps=2",
        "checkpoint.every_steps=3",
        "checkpoint.max_to_keep=2",
        "logging.every_steps=3",
        "logging.plot=false",
        "data.dataset_kwargs.deterministic=true",
        "data.dataset_kwargs.shuffle_buffer=32",
        "--run-dir",
        str(run_dir),
        "--no-progress",
        *extra,
    ]


def _latest_step(run_dir):
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_sigkill_mid_run_resumes_to_the_same_step(tmp_path, tiny_tfrecords):
    import tensorflow as tf

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(run_dir, tiny_tfrecords), env=_env())
    deadline = time.time() + 240
    while _latest_step(run_dir) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _latest_step(run_dir)
    assert 6 <= killed_at < 18
    # Every checkpoint the state file lists is complete and readable.
    state = tf.train.get_checkpoint_state(str(run_dir / "checkpoints"))
    for path in state.all_model_checkpoint_paths:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    resumed = subprocess.run(
        _train_cmd(run_dir, tiny_tfrecords, "--resume"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {run_dir}" in resumed.stdout
    assert _latest_step(run_dir) == 18
    # The same job without a kill reaches the same weights: the data position, slots and
    # schedule were restored.
    straight = tmp_path / "straight"
    done = subprocess.run(
        _train_cmd(straight, tiny_tfrecords), env=_env(), capture_output=True, timeout=300
    )
    assert done.returncode == 0
    a = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run_dir / "checkpoints")))
    b = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(straight / "checkpoints")))
    names = [n for n in a.get_variable_to_shape_map() if "backbone" in n or "head" in n]
    assert names
    for name in names:
        np.testing.assert_allclose(a.get_tensor(name), b.get_tensor(name), rtol=1e-4, atol=1e-5)
