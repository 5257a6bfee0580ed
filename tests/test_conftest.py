"""The test set-up itself: two logical CPU devices, or a loud failure (never silent skips)."""

import os
import subprocess
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="TensorFlow devices only")
def test_two_logical_cpu_devices_exist():
    import tensorflow as tf

    assert len(tf.config.list_logical_devices("CPU")) >= 2


def test_conftest_fails_loudly_when_tensorflow_started_first():
    # TensorFlow's runtime is initialised before pytest imports conftest.py, so the two
    # logical devices can no longer be created: the run must stop, not skip quietly.
    code = (
        "import sys\n"
        "import tensorflow as tf\n"
        "tf.config.list_logical_devices('CPU')\n"
        "import pytest\n"
        f"sys.exit(pytest.main([{os.path.join(TESTS_DIR, 'test_cli.py')!r}, '-q', "
        "'-k', 'version', '-p', 'no:cacheprovider']))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(TESTS_DIR),
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "could not create two logical CPU devices" in output, output[-2000:]
