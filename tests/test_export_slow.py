"""Slow export tests: the full r18 backbone through every format, in every runtime.

Oracle: the Keras model's raw embedding, L2-normalized in float64 NumPy.
"""

import json

import keras
import numpy as np
import pytest

from keras_arcface.data import render_identities
from keras_arcface.export import export_model
from keras_arcface.models import get_backbone

pytestmark = pytest.mark.slow

GATES = {"float32": 0.9999, "float16": 0.999, "dynamic": 0.98, "int8": 0.98}


def _oracle(model, images):
    raw = np.asarray(model.predict_on_batch(np.asarray(images, np.float32)), np.float64)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def r18_export(tmp_path_factory):
    faces, _ = render_identities(24, 4, seed=5, heldout=True, num_workers=1)
    keras.utils.set_random_seed(3)
    model = get_backbone("r18")
    # Batch-norm statistics of faces, as training leaves them (see tests/test_export.py).
    for i in range(6):
        model(faces[16 * i : 16 * i + 16].astype(np.float32), training=True)
    out = tmp_path_factory.mktemp("r18")
    report = export_model(
        model,
        out,
        sample_images=faces[:80],
        num_parity_images=16,
        num_calibration_images=64,
        gate=False,
        progress=False,
    )
    return model, out, report, faces


def test_r18_every_artifact_passes_the_cosine_gate(r18_export):
    _, out, report, _ = r18_export
    manifest = json.loads((out / "metadata.json").read_text())
    assert len(manifest["artifacts"]) == 6
    for artifact in report.artifacts:
        assert artifact.min_cosine >= GATES[artifact.precision], artifact


@pytest.mark.parametrize("batch", [1, 3])
def test_r18_artifacts_in_their_runtimes(r18_export, batch):
    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model, out, _, faces = r18_export
    images = faces[80 : 80 + batch].astype(np.float32)
    expected = _oracle(model, images)
    loaded = tf.saved_model.load(str(out / "saved_model"))
    got = loaded.signatures["serving_default"](images=tf.constant(images))["embeddings"]
    np.testing.assert_allclose(got.numpy(), expected, atol=5e-5)
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    np.testing.assert_allclose(session.run(None, {"images": images})[0], expected, atol=5e-5)
    for precision, gate in GATES.items():
        interpreter = Interpreter(model_path=str(out / f"model_{precision}.tflite"))
        runner = interpreter.get_signature_runner("serving_default")
        dtype = np.uint8 if precision == "int8" else np.float32
        got = runner(images=images.astype(dtype))["embeddings"].astype(np.float64)
        cosines = np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1)
        assert np.min(cosines) >= gate, precision
