"""One factory for the distribution strategy.

Every strategy runs the same custom training loop (``strategy.run`` inside a
``tf.function``): Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras issue 20585), the custom loop works under all of them.

Example:
    >>> from keras_arcface.training.strategy import create_strategy
    >>> strategy = create_strategy("default")
    >>> strategy.num_replicas_in_sync
    1
"""

import itertools
import json
import os

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")

# A MirroredStrategy numbers its collective groups from ``1 + _collective_key_base`` (0 unless
# set), and TensorFlow caches each collective's shape by (group, instance) key for the whole
# process. A second strategy in one process (a loss table training one model after another, a
# test session) would reuse the first one's keys and fail with "Shape mismatch in the
# collective instance". Each strategy this factory creates gets its own key range.
_KEY_RANGE = 10_000
_mirrored_created = itertools.count()


def _tf_config_workers():
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(
            f"TF_CONFIG is not valid JSON ({error}). Received: TF_CONFIG={raw!r}"
        ) from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _local_devices(tf, devices):
    if devices:
        return list(devices)
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def create_strategy(name="auto", devices=()):
    """Returns the ``tf.distribute`` strategy for ``name``.

    - ``"default"``: one device (the default strategy).
    - ``"mirrored"``: ``MirroredStrategy`` over ``devices``, or every local GPU, or -- when
      there is no GPU -- every logical CPU device (configure them with
      ``tf.config.set_logical_device_configuration`` before TensorFlow starts; tests do).
    - ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` from the ``TF_CONFIG`` environment
      variable (cluster and task), collective all-reduce over all workers' devices.
    - ``"auto"``: multi-worker when ``TF_CONFIG`` names more than one worker, else mirrored
      when there are several GPUs, else default.

    Args:
        name: one of ``auto``, ``default``, ``mirrored``, ``multi_worker``. Default ``"auto"``.
        devices: explicit device names for ``mirrored``. Default: discovered.

    Returns:
        A ``tf.distribute.Strategy``.

    Example:
        >>> strategy = create_strategy("mirrored")  # all GPUs, or all logical CPUs
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(STRATEGIES)}. Received: name={name!r}"
        )
    if name == "auto":
        if _tf_config_workers() > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored_strategy(tf, _local_devices(tf, devices))
    if _tf_config_workers() < 1:
        raise ValueError(
            "The multi_worker strategy needs TF_CONFIG with a cluster of workers and this "
            f"process's task. Received: TF_CONFIG={os.environ.get('TF_CONFIG', '')!r}"
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _mirrored_strategy(tf, devices):
    cls = tf.distribute.MirroredStrategy
    cls._collective_key_base = next(_mirrored_created) * _KEY_RANGE
    try:
        return cls(devices=devices)
    finally:
        cls._collective_key_base = 0


def worker_info(strategy):
    """Returns ``(task_index, is_chief, num_workers)`` for ``strategy``.

    Single-machine strategies are one worker that is the chief. Under
    ``MultiWorkerMirroredStrategy`` the chief is task 0 of ``worker`` (or the ``chief`` task).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0, True, 1
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    spec = resolver.cluster_spec().as_dict()
    num_workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in spec
    )
    return int(task_id), bool(is_chief), max(num_workers, 1)
