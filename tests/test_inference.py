"""Tests of keras_arcface.inference.Embedder on .keras files and run folders.

The oracle is a float64 NumPy forward pass of a tiny embedding model whose maths is known
exactly: normalize (x - 127.5) / 127.5, global average pool, dense. Exported formats are tested
in tests/test_export*.py.
"""

import os
import warnings

import keras
import numpy as np
import pytest
from PIL import Image

from keras_arcface.inference import Embedder, load_image, resolve_model_path, to_batch

DIM = 8


def _tiny_model(seed=0, name="tiny"):
    rng = np.random.default_rng(seed)
    images = keras.Input((112, 112, 3), name="images")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(images)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(DIM, name="embedding")
    model = keras.Model(images, dense(x), name=name)
    kernel = rng.normal(size=(3, DIM)).astype("float32")
    bias = rng.normal(size=(DIM,)).astype("float32")
    dense.set_weights([kernel, bias])
    return model, kernel.astype(np.float64), bias.astype(np.float64)


def _oracle(images, kernel, bias):
    out = []
    for image in np.asarray(images, np.float64):
        pooled = ((image - 127.5) / 127.5).reshape(-1, 3).mean(axis=0)
        raw = pooled @ kernel + bias
        out.append(raw / np.sqrt(np.sum(raw**2)))
    return np.array(out)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model, kernel, bias = _tiny_model()
    path = tmp_path_factory.mktemp("model") / "embedding.keras"
    model.save(path)
    return path, kernel, bias


def _images(n, seed=1):
    # A random colour per image plus noise, so that images differ in their pooled mean.
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 215, size=(n, 1, 1, 3))
    noise = rng.uniform(-40, 40, size=(n, 112, 112, 3))
    return np.round(base + noise).astype(np.uint8)


@pytest.mark.parametrize("batch", [1, 5])
def test_embed_keras_file_matches_numpy_oracle(model_file, batch):
    path, kernel, bias = model_file
    embedder = Embedder.load(path, batch_size=2)
    images = _images(batch)
    embeddings = embedder.embed(images)
    assert embeddings.dtype == np.float32 and embeddings.shape == (batch, DIM)
    np.testing.assert_allclose(embeddings, _oracle(images, kernel, bias), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert embedder.format == "keras" and embedder.embedding_dim == DIM


def test_uint8_float_files_and_bytes_agree(model_file, tmp_path):
    path, kernel, bias = model_file
    embedder = Embedder.load(path)
    images = _images(2, seed=3)
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"face{i}.png")
        Image.fromarray(image).save(files[-1])
    expected = _oracle(images, kernel, bias)
    np.testing.assert_allclose(embedder.embed(images.astype(np.float32)), expected, atol=1e-4)
    np.testing.assert_allclose(embedder.embed([str(f) for f in files]), expected, atol=1e-4)
    np.testing.assert_allclose(embedder.embed(files[0].read_bytes()), expected[:1], atol=1e-4)
    np.testing.assert_allclose(embedder.embed(images[1]), expected[1:], atol=1e-4)


def test_run_folder_prefers_best_then_latest(tmp_path):
    best, kb, bb = _tiny_model(seed=10, name="best")
    latest, kl, bl = _tiny_model(seed=11, name="latest")
    latest.save(tmp_path / "embedding_latest.keras")
    images = _images(2)
    only_latest = Embedder.load(tmp_path).embed(images)
    np.testing.assert_allclose(only_latest, _oracle(images, kl, bl), atol=1e-4)
    best.save(tmp_path / "embedding_best.keras")
    assert resolve_model_path(tmp_path) == ("keras", str(tmp_path / "embedding_best.keras"))
    np.testing.assert_allclose(
        Embedder.load(tmp_path).embed(images), _oracle(images, kb, bb), atol=1e-4
    )


def test_other_sizes_are_resized_with_a_warning(model_file):
    path, kernel, bias = model_file
    embedder = Embedder.load(path)
    # A constant colour stays that colour under bilinear resizing: the oracle is the 112x112 one.
    small = np.full((64, 80, 3), (200, 30, 90), np.uint8)
    with pytest.warns(UserWarning, match="Resized images of size 64x80 to 112x112"):
        embedding = embedder.embed(small, align=False)
    big = np.full((1, 112, 112, 3), (200, 30, 90), np.float64)
    np.testing.assert_allclose(embedding, _oracle(big, kernel, bias), atol=1e-4)


def test_verify_similarity_and_decision(model_file):
    path, kernel, bias = model_file
    embedder = Embedder.load(path)
    a, b = _images(2, seed=5)
    expected = _oracle(np.stack([a, b]), kernel, bias)
    cosine = float(expected[0] @ expected[1])
    similarity, same = embedder.verify(a, b, threshold=cosine - 1e-3)
    assert isinstance(similarity, float) and similarity == pytest.approx(cosine, abs=1e-4)
    assert same is True
    assert embedder.verify(a, b, threshold=min(cosine + 1e-3, 1.0))[1] is False
    self_similarity, self_same = embedder.verify(a, a)
    assert self_similarity == pytest.approx(1.0, abs=1e-6) and self_same
    sims, decisions = embedder.verify(np.stack([a, a]), np.stack([b, a]), threshold=0.999)
    np.testing.assert_allclose(sims, [cosine, 1.0], atol=1e-4)
    assert decisions.tolist() == [False, True]


def test_bad_inputs_give_clear_errors(model_file, tmp_path):
    path, _, _ = model_file
    embedder = Embedder.load(path)
    with pytest.raises(ValueError, match="grayscale"):
        embedder.embed(np.zeros((112, 112), np.uint8))
    with pytest.raises(ValueError, match="grayscale"):
        embedder.embed(np.zeros((2, 112, 112, 1), np.uint8))
    folder = tmp_path / "a folder.png"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="folder.*a folder.png"):
        embedder.embed(str(folder))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ValueError, match="Could not decode.*corrupt.jpg"):
        embedder.embed([str(corrupt)])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        embedder.embed(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="3 channels"):
        embedder.embed(np.zeros((112, 112, 4), np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.255.*Received: value_range=\(-1.0, 1.0\)"):
        embedder.embed(np.linspace(-1, 1, 112 * 112 * 3).reshape(112, 112, 3))
    with pytest.raises(TypeError, match="dtype=bool"):
        embedder.embed(np.zeros((112, 112, 3), bool))
    with pytest.raises(ValueError, match="threshold"):
        embedder.verify(np.zeros((112, 112, 3)), np.zeros((112, 112, 3)), threshold=2.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedder.embed(np.full((112, 112, 3), 0.5, np.float32))
    assert any("0..1" in str(w.message) for w in caught)


def test_unknown_formats_list_the_supported_ones(tmp_path):
    weights = tmp_path / "model.h5"
    weights.write_bytes(b"not a model")
    for bad in (weights, tmp_path):
        with pytest.raises(ValueError, match=r"Supported: \.keras.*\.tflite.*\.onnx"):
            Embedder.load(bad)
    with pytest.raises(FileNotFoundError):
        Embedder.load(tmp_path / "nowhere.keras")


def test_a_model_that_is_not_an_embedding_model_is_refused():
    images = keras.Input((112, 112, 3), name="images")
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    model = keras.Model(images, [pooled, pooled])
    with pytest.raises(ValueError, match="Expected an embedding model"):
        Embedder.from_model(model)


def test_load_image_converts_palette_and_alpha(tmp_path):
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 250, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    pixels = load_image(os.fspath(tmp_path / "alpha.png"))
    assert pixels.shape == (10, 12, 3) and pixels[0, 0].tolist() == [250, 0, 0]
    assert to_batch([pixels[:, :10]] * 2, image_size=10).shape == (2, 10, 10, 3)


def test_grey_and_sixteen_bit_files_read_as_the_converters_store_them(tmp_path):
    # A grey file gives the grey value in all three channels (what `convert images` stores);
    # 16-bit values are scaled: by hand round(v * 255 / 65535) for 200, 32768, 65280 = 1, 128, 254.
    grey = np.array([[0, 90, 255]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert load_image(tmp_path / "grey.png").tolist() == [[[0] * 3, [90] * 3, [255] * 3]]
    Image.fromarray(np.array([[200, 32768, 65280]], np.uint16)).save(tmp_path / "grey16.png")
    assert load_image(tmp_path / "grey16.png").tolist() == [[[1] * 3, [128] * 3, [254] * 3]]


@pytest.mark.parametrize("suffix", [".keras", ".tflite", ".onnx"])
def test_random_bytes_named_as_a_model_say_the_file_exists_but_is_damaged(tmp_path, suffix):
    from keras_arcface.inference.runtimes import ModelFileError

    path = tmp_path / f"model{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    with pytest.raises(ModelFileError, match=r"model\.\w+ exists but .*(not a|could not be)"):
        Embedder.load(path)


def test_a_run_folder_without_a_model_says_what_was_looked_for(tmp_path):
    from keras_arcface.inference.runtimes import ModelFileError

    (tmp_path / "metrics.csv").write_text("step,loss\n")
    with pytest.raises(ModelFileError, match=r"looked for saved_model.pb, embedding_best.keras"):
        Embedder.load(tmp_path)
