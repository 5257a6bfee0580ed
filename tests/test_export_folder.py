"""Exporting into an existing folder never deletes a user's file nor mixes two exports.

Issue 16, item 2: an export into a folder holding a user's file deleted it, replaced
same-named artifacts and left an earlier export's artifacts beside the new ones.
"""

import json
import os

import keras
import numpy as np
import pytest

from keras_arcface.cli import main as cli_main
from keras_arcface.export import export_model
from keras_arcface.export.exporter import ExportFolderError


def _tiny_model(seed):
    keras.utils.set_random_seed(seed)
    images = keras.Input((112, 112, 3), name="images")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(images)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(8, name="embedding")(x), name=f"tiny{seed}")


IMAGES = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3)).astype(np.uint8)


def _export(model, out, **options):
    options = {"formats": ("saved_model",), "quantize": (), **options}
    return export_model(
        model,
        out,
        sample_images=IMAGES,
        num_parity_images=2,
        num_calibration_images=2,
        progress=False,
        verbose=False,
        **options,
    )


def _tree(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


def _artifacts(out):
    return sorted(json.loads((out / "metadata.json").read_text())["artifacts"])


@pytest.fixture(scope="module")
def models():
    return _tiny_model(1), _tiny_model(2)


def test_a_previous_export_is_replaced_whole_never_mixed(models, tmp_path):
    out = tmp_path / "export"
    _export(models[0], out, formats=("tflite",))
    assert _artifacts(out) == ["tflite_float32"]
    _export(models[1], out)  # another model, another format set
    assert _artifacts(out) == ["saved_model"]
    assert not [name for name in _tree(out) if name.endswith(".tflite")]  # no leftover
    manifest = json.loads((out / "metadata.json").read_text())
    assert manifest["source_model"] == "in-memory model 'tiny2'"
    assert [p for p in os.listdir(tmp_path) if p != "export"] == []  # no staging left behind


def test_a_users_folder_is_refused_and_left_untouched(models, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "saved_model").mkdir(parents=True)
    (out / "saved_model" / "notes.txt").write_text("my notes")
    (out / "model.onnx").write_bytes(b"my own onnx")
    before = {name: (out / name).read_bytes() for name in _tree(out)}
    with pytest.raises(ExportFolderError, match="not a keras-arcface export.*--overwrite"):
        _export(models[0], out)
    assert {name: (out / name).read_bytes() for name in _tree(out)} == before
    model_path = tmp_path / "tiny.keras"
    models[0].save(model_path)
    status = cli_main(["export", str(model_path), "--out", str(out), "--formats", "saved_model"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert str(out) in err[0] and "--overwrite" in err[0]
    assert {name: (out / name).read_bytes() for name in _tree(out)} == before


def test_a_file_added_to_a_previous_export_blocks_it(models, tmp_path):
    out = tmp_path / "export"
    _export(models[0], out)
    (out / "saved_model" / "notes.txt").write_text("my notes")
    (out / "README.txt").write_text("mine too")
    with pytest.raises(ExportFolderError, match=r"README.txt.*changed since \(saved_model\)"):
        _export(models[1], out)
    assert (out / "saved_model" / "notes.txt").read_text() == "my notes"
    assert json.loads((out / "metadata.json").read_text())["source_model"].endswith("'tiny1'")


def test_overwrite_moves_the_old_content_aside_and_deletes_nothing(models, tmp_path):
    out = tmp_path / "mine"
    (out / "saved_model").mkdir(parents=True)
    (out / "saved_model" / "notes.txt").write_text("my notes")
    _export(models[1], out, overwrite=True)
    assert _artifacts(out) == ["saved_model"] and "saved_model/notes.txt" not in _tree(out)
    (aside,) = [p for p in os.listdir(tmp_path) if p.startswith("mine.replaced-")]
    assert (tmp_path / aside / "saved_model" / "notes.txt").read_text() == "my notes"


def test_a_model_with_nan_weights_is_refused_naming_the_weights(tmp_path, capsys):
    # Issue 16: a NaN-weight model failed inside int8 calibration with no report and no format.
    from keras_arcface.errors import InputError

    model = _tiny_model(3)
    kernel, bias = model.get_layer("embedding").get_weights()
    kernel[0, 0] = np.nan
    model.get_layer("embedding").set_weights([kernel, bias])
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "keep.txt").write_text("previous")
    with pytest.raises(InputError, match=r"NaN or Inf weights \(embedding/kernel\)"):
        _export(model, tmp_path / "new", formats=("tflite",), quantize=("int8",))
    assert not (tmp_path / "new").exists()
    model_path = tmp_path / "nan.keras"
    model.save(model_path)
    status = cli_main(["export", str(model_path), "--out", str(tmp_path / "new2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "NaN or Inf weights" in err[0]
