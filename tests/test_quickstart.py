"""The README's quick start runs as written, trains, and its models reload in a fresh process."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")

RELOAD = """
import json, sys
import numpy as np
import keras
import keras_arcface.layers  # registers the layers and losses; nothing else is needed
x, y = np.load("x.npy"), np.load("y.npy")
out = {}
seq = keras.saving.load_model("arcface_sequential.keras")
out["sequential"] = float(np.abs(np.asarray(seq.predict(x, verbose=0)) - np.load("seq.npy")).max())
out["sequential_loss"] = type(seq.loss).__name__
fun = keras.saving.load_model("arcface_functional.keras")
pred = np.asarray(fun.predict([x, y], verbose=0))
out["functional"] = float(np.abs(pred - np.load("fun.npy")).max())
out["functional_loss"] = float(fun.evaluate([x, y], y, verbose=0))
print("RESULT" + json.dumps(out))
"""


def quick_start_blocks():
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    section = re.search(r"^## Quick start\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert section, "README.md has no '## Quick start' section"
    return re.findall(r"```python\n(.*?)```", section.group(1), flags=re.S)


def test_quick_start_blocks_are_short():
    blocks = quick_start_blocks()
    assert len(blocks) == 2
    for block in blocks:
        assert len(block.strip().splitlines()) <= 12


def test_quick_start_runs_trains_and_reloads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__quickstart__"}
    histories = []
    for index, block in enumerate(quick_start_blocks()):
        exec(compile(block, f"README.md quick start block {index + 1}", "exec"), namespace)  # noqa: S102
        histories.append(namespace["history"].history["loss"])
    for losses in histories:
        assert all(np.isfinite(losses))
        assert losses[-1] < losses[0], losses

    x, y = namespace["x"][:64], namespace["y"][:64]
    sequential = keras.saving.load_model("arcface_sequential.keras", compile=False)
    functional = namespace["model"]
    np.save("x.npy", x)
    np.save("y.npy", y)
    np.save("seq.npy", np.asarray(sequential.predict(x, verbose=0)))
    np.save("fun.npy", np.asarray(functional.predict([x, y], verbose=0)))
    expected_loss = float(functional.evaluate([x, y], y, verbose=0))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", RELOAD],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    assert out["sequential"] < 1e-6 and out["functional"] < 1e-5
    assert out["sequential_loss"] == "ArcFaceLoss"
    assert out["functional_loss"] == pytest.approx(expected_loss, rel=1e-5)
    embedder = namespace["embedder"]
    assert embedder.output.shape[-1] == 32 and len(embedder.weights) == 2
