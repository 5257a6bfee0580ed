"""The shared helpers: atomic writes, ``l2_normalize``, the validation home, deprecated aliases."""

import json
import math
import os
import warnings

import numpy as np
import pytest

from keras_arcface import _io
from keras_arcface._math import l2_normalize, l2_normalize_ops


class _WriterFailed(RuntimeError):
    pass


def _leftovers(folder, keep):
    return sorted(name for name in os.listdir(folder) if name not in keep)


@pytest.mark.parametrize(
    "write, expected",
    [
        (lambda path: _io.atomic_write_text(path, "new é"), "new é"),
        (lambda path: _io.atomic_write_bytes(path, b"new"), "new"),
        (lambda path: _io.atomic_write_json(path, {"new": 1}), '{\n  "new": 1\n}\n'),
    ],
)
def test_atomic_writers_replace_the_file(tmp_path, write, expected):
    path = tmp_path / "sub" / "out.txt"
    path.parent.mkdir()
    path.write_text("old")
    assert write(path) == os.fspath(path)
    assert path.read_text(encoding="utf-8") == expected
    assert _leftovers(path.parent, {"out.txt"}) == []


def test_atomic_open_keeps_the_old_file_when_the_writer_raises(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("old content\n")
    with pytest.raises(_WriterFailed):
        with _io.atomic_open(path) as handle:
            handle.write("half of the new cont")
            raise _WriterFailed("disk full")
    assert path.read_text() == "old content\n"
    assert _leftovers(tmp_path, {"labels.tsv"}) == []


def test_atomic_path_keeps_the_old_file_and_cleans_up_when_the_library_raises(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old model")
    with pytest.raises(_WriterFailed):
        with _io.atomic_path(path) as temporary:
            assert temporary.endswith(".keras")  # writers that pick a format by extension
            assert os.path.dirname(temporary) == os.fspath(tmp_path)  # same filesystem
            with open(temporary, "wb") as handle:
                handle.write(b"partial")
            raise _WriterFailed("interrupted")
    assert path.read_bytes() == b"old model"
    assert _leftovers(tmp_path, {"model.keras"}) == []


def test_atomic_write_json_serialises_before_touching_the_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{"accuracy": 0.9}\n')
    with pytest.raises(ValueError):
        _io.atomic_write_json(path, {"accuracy": math.nan}, allow_nan=False)
    with pytest.raises(TypeError):
        _io.atomic_write_json(path, {"array": object()})
    assert json.loads(path.read_text()) == {"accuracy": 0.9}
    _io.atomic_write_json(path, {"b": 1, "a": [1, 2]}, sort_keys=True)
    text = path.read_text()
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": [1, 2], "b": 1}


def test_atomic_files_get_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = _io.atomic_write_text(tmp_path / "atomic.txt", "x")
    assert os.stat(atomic).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_atomic_open_rejects_read_and_append_modes(tmp_path):
    with pytest.raises(ValueError, match="Received: mode='a'"):
        with _io.atomic_open(tmp_path / "x.txt", "a"):
            pass


def test_atomic_directory_replaces_a_folder_only_on_success(tmp_path):
    target = tmp_path / "saved_model"
    target.mkdir()
    (target / "old.pb").write_text("old")
    with pytest.raises(_WriterFailed):
        with _io.atomic_directory(target) as folder:
            with open(os.path.join(folder, "new.pb"), "w") as handle:
                handle.write("half")
            raise _WriterFailed("export failed")
    assert sorted(os.listdir(target)) == ["old.pb"]
    assert _leftovers(tmp_path, {"saved_model"}) == []

    with _io.atomic_directory(target) as folder:
        with open(os.path.join(folder, "new.pb"), "w") as handle:
            handle.write("new")
    assert sorted(os.listdir(target)) == ["new.pb"]
    assert _leftovers(tmp_path, {"saved_model"}) == []


def test_atomic_directory_refuses_to_replace_a_file(tmp_path):
    target = tmp_path / "export"
    target.write_text("a file the user keeps")
    with pytest.raises(ValueError, match="Received: path="):
        with _io.atomic_directory(target) as folder:
            open(os.path.join(folder, "x"), "w").close()
    assert target.read_text() == "a file the user keeps"
    assert _leftovers(tmp_path, {"export"}) == []


def _l2_oracle(rows, epsilon=1e-12):
    # A float64 loop, row by row: x / sqrt(max(sum(x^2), epsilon)).
    out = []
    for row in rows:
        squared = 0.0
        for value in row:
            squared += float(value) * float(value)
        denominator = math.sqrt(max(squared, epsilon))
        out.append([float(value) / denominator for value in row])
    return np.array(out, dtype=np.float64)


def _rows():
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(6, 5)) * np.array([[1e-3], [1.0], [1e3], [1.0], [1.0], [1.0]])
    rows[3] = 0.0  # a zero vector stays zero
    rows[4] = [3.0, 4.0, 0.0, 0.0, 0.0]  # hand-worked: 0.6, 0.8
    rows[5] = [1e-8, 0.0, 0.0, 0.0, 0.0]  # below the epsilon floor: scaled by 1/1e-6
    return rows


def test_l2_normalize_numpy_matches_a_float64_loop():
    rows = _rows()
    got = l2_normalize(rows)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _l2_oracle(rows), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(got[3], np.zeros(5))
    np.testing.assert_allclose(got[4, :2], [0.6, 0.8], rtol=1e-15)
    np.testing.assert_allclose(got[5, 0], 1e-2, rtol=1e-12)
    np.testing.assert_allclose(l2_normalize(rows.T, axis=0), _l2_oracle(rows).T, rtol=1e-15)


def test_l2_normalize_ops_matches_the_loop_and_tf():
    import tensorflow as tf
    from keras import ops

    rows = _rows().astype(np.float32)
    got = ops.convert_to_numpy(l2_normalize_ops(rows))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _l2_oracle(rows), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        got, tf.math.l2_normalize(rows, axis=-1, epsilon=1e-12).numpy(), rtol=1e-6, atol=1e-7
    )
    by_column = ops.convert_to_numpy(l2_normalize_ops(rows.T, axis=0))
    np.testing.assert_allclose(by_column, _l2_oracle(rows).T, rtol=1e-6, atol=1e-7)


def test_public_l2_normalize_names_share_the_one_definition():
    from keras_arcface import evaluation, inference, layers

    rows = _rows()
    np.testing.assert_allclose(evaluation.l2_normalize(rows), _l2_oracle(rows), rtol=1e-15)
    unit = inference.l2_normalize(rows)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, _l2_oracle(rows), rtol=1e-6)
    assert layers.l2_normalize is l2_normalize_ops
    with pytest.warns(DeprecationWarning, match="l2_normalize"):
        old = inference.l2_normalise(rows)
    np.testing.assert_array_equal(old, unit)


def test_validation_has_a_neutral_home_and_the_old_module_still_works():
    from keras_arcface import _validation
    from keras_arcface.losses import _validation as old

    assert old.check_number is _validation.check_number
    with pytest.raises(ValueError, match=r"Received: scale=-1.0"):
        _validation.check_number("scale", -1.0, low=0.0, low_open=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _validation.check_positive_int("units", 3) == 3
