"""Shared test set-up.

Two logical CPU devices are configured before TensorFlow initialises so that
MirroredStrategy tests run on this CPU-only machine; when that is impossible the run stops
with an error instead of skipping those tests.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


def _two_logical_cpus():
    """Splits the CPU into two logical devices, or stops the run saying why it cannot."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
        problem = None
    except RuntimeError as error:  # TensorFlow's runtime was initialised before this file ran
        problem = error
    count = len(tf.config.list_logical_devices("CPU"))
    if count < 2:
        raise RuntimeError(
            "tests/conftest.py could not create two logical CPU devices, which the "
            "MirroredStrategy tests need (they would otherwise not run). TensorFlow's runtime "
            "was already initialised when conftest.py was imported: run pytest without a "
            "plugin or sitecustomize that starts TensorFlow first. "
            f"Received: logical_cpus={count}, error={problem!r}"
        )


if os.environ["KERAS_BACKEND"] == "tensorflow":
    _two_logical_cpus()


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Every test starts from float32 policy and a clean Keras session."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
    # free_memory=False skips a full gc.collect() per test, which dominated short tests.
    keras.backend.clear_session(free_memory=False)
