"""Shared test set-up.

Two logical CPU devices are configured before TensorFlow initialises so that
MirroredStrategy tests run on this CPU-only machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf  # noqa: E402

    _cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:
        pass  # Already initialised by an earlier import; tests needing two devices skip.


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Every test starts from float32 policy and a clean Keras session."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
    # free_memory=False skips a full gc.collect() per test, which dominated short tests.
    keras.backend.clear_session(free_memory=False)
