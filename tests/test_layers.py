"""NormDense and ArcMarginProduct: shapes, float64 loop oracles, mixed precision, serialisation."""

import math

import keras
import numpy as np
import pytest
from keras import ops
from loss_oracles import arcface_target, assert_close, margin_logits, margin_loss, value_and_grad

from keras_arcface.layers import ArcMarginProduct, NormDense
from keras_arcface.losses import ArcFaceLoss, InterClassRegularizer

agnostic = pytest.mark.backend_agnostic


def oracle_cosines(embeddings, kernel, sub_centers=1):
    """Loop: cosine of each row with each kernel row (a center), max over a class's centers."""
    embeddings, kernel = np.asarray(embeddings, np.float64), np.asarray(kernel, np.float64)
    units = kernel.shape[0] // sub_centers
    out = np.empty((embeddings.shape[0], units))
    for i, e in enumerate(embeddings):
        for c in range(units):
            best = -math.inf
            for j in range(sub_centers):
                w = kernel[c * sub_centers + j]
                best = max(best, float(e @ w) / (np.linalg.norm(e) * np.linalg.norm(w)))
            out[i, c] = min(max(best, -1.0), 1.0)
    return out


def data(seed=0, batch=6, dim=5, classes=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, dim)).astype(np.float32), rng.integers(0, classes, batch)


def dtype_of(x):
    return keras.backend.standardize_dtype(x.dtype)


@agnostic
def test_norm_dense_matches_oracle_and_sub_centers():
    x, _ = data()
    for sub_centers in (1, 3):
        layer = NormDense(4, sub_centers=sub_centers)
        out = layer(x)
        assert tuple(out.shape) == (6, 4) and dtype_of(out) == "float32"
        assert [w.path.split("/")[-1] for w in layer.weights] == ["kernel"]
        assert tuple(layer.kernel.shape) == (4 * sub_centers, 5)
        kernel = ops.convert_to_numpy(layer.kernel)
        assert_close(out, oracle_cosines(x, kernel, sub_centers), rtol=1e-5)
        assert np.all(np.abs(ops.convert_to_numpy(out)) <= 1.0)


@agnostic
def test_norm_dense_clips_exact_matches_and_has_finite_gradient():
    layer = NormDense(3, kernel_initializer="ones")
    x = np.array([[2.0, 2.0, 2.0, 2.0], [-1.0, -1.0, -1.0, -1.0]], np.float32)
    out = ops.convert_to_numpy(layer(x))
    assert out.max() <= 1.0 and out.min() >= -1.0
    np.testing.assert_allclose(out, [[1, 1, 1], [-1, -1, -1]], atol=1e-6)
    loss = ArcFaceLoss()
    _, grad = value_and_grad(lambda e: loss(np.array([0, 1]), layer(e)), x)
    assert np.all(np.isfinite(grad))


@agnostic
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_heads_are_float32_under_mixed_policy(policy):
    keras.mixed_precision.set_global_policy(policy)
    x, y = data(1)
    inputs = keras.Input((5,))
    features = keras.layers.Dense(5)(inputs)  # float16 / bfloat16 compute
    head = NormDense(4)
    model = keras.Model(inputs, head(features))
    assert head.dtype_policy.name == "float32" and head.kernel.dtype == "float32"
    body = keras.Model(inputs, features)
    out = model(x)
    assert dtype_of(out) == "float32"
    # float32 all the way from the (low-precision) features: matches the float64 oracle
    low = ops.convert_to_numpy(ops.cast(body(x), "float32"))
    assert_close(out, oracle_cosines(low, ops.convert_to_numpy(head.kernel)), rtol=1e-5)
    arc = ArcMarginProduct(4)
    logits = arc([features, keras.Input((), dtype="int32")])
    assert dtype_of(logits) == "float32"


@agnostic
def test_arc_margin_product_two_call_forms_match_oracle():
    x, y = data(2)
    layer = ArcMarginProduct(4, margin=0.5, scale=64.0)
    cosines = layer(x)
    logits = layer([x, y])
    kernel = ops.convert_to_numpy(layer.kernel)
    expected_cos = oracle_cosines(x, kernel)
    assert_close(cosines, expected_cos, rtol=1e-5)
    assert_close(logits, margin_logits(y, expected_cos, arcface_target, 64.0), rtol=1e-5)


@agnostic
@pytest.mark.parametrize("easy_margin", [False, True])
def test_both_paths_give_the_same_loss(easy_margin):
    # Functional [embeddings, labels] + plain sparse CE == Sequential cosines + ArcFaceLoss,
    # for the same weights and batch, values and gradients.
    x, y = data(3, batch=16, dim=8, classes=10)
    inputs, labels = keras.Input((8,)), keras.Input((), dtype="int32")
    body = keras.layers.Dense(6)
    head = ArcMarginProduct(10, margin=0.45, scale=32.0, easy_margin=easy_margin)
    functional = keras.Model([inputs, labels], head([body(inputs), labels]))
    sequential = keras.Sequential([keras.Input((8,)), body])
    sequential.add(head)  # same layer objects: shared weights
    sparse_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    arcface = ArcFaceLoss(margin=0.45, scale=32.0, easy_margin=easy_margin)
    functional.compile(optimizer="sgd", loss=sparse_ce)
    sequential.compile(optimizer="sgd", loss=arcface)
    a = functional.evaluate([x, y], y, verbose=0)
    b = sequential.evaluate(x, y, verbose=0)
    assert a == pytest.approx(b, rel=1e-6)
    kernel = ops.convert_to_numpy(head.kernel)
    expected_cos = oracle_cosines(ops.convert_to_numpy(body(x)), kernel)
    target = lambda c: arcface_target(c, 0.45, easy_margin)  # noqa: E731
    assert a == pytest.approx(margin_loss(y, expected_cos, target, 32.0), rel=1e-5)
    # one SGD step from the same weights lands on the same weights: same gradients
    variables = body.weights + head.weights
    initial = [ops.convert_to_numpy(v) for v in variables]
    functional.train_on_batch([x, y], y)
    after_functional = [ops.convert_to_numpy(v) for v in variables]
    for variable, value in zip(variables, initial):
        variable.assign(value)
    sequential.train_on_batch(x, y)
    for value, before, expected in zip(variables, initial, after_functional):
        assert not np.allclose(expected, before)
        np.testing.assert_allclose(ops.convert_to_numpy(value), expected, rtol=1e-5, atol=1e-7)


@agnostic
def test_sequential_add_trains(tmp_path):
    x, y = data(4, batch=32, dim=8, classes=5)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8)])
    model.add(ArcMarginProduct(5, scale=16.0))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=ArcFaceLoss(scale=16.0))
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0).history["loss"]
    assert all(np.isfinite(history)) and history[-1] < history[0]


@agnostic
def test_column_labels_input():
    x, y = data(5)
    layer = ArcMarginProduct(4)
    flat = ops.convert_to_numpy(layer([x, y]))
    column = ops.convert_to_numpy(layer([x, y.reshape(-1, 1)]))
    np.testing.assert_array_equal(flat, column)


def layers_to_check():
    return [
        NormDense(7, sub_centers=2, kernel_initializer="he_normal", name="centers"),
        NormDense(7, kernel_regularizer=InterClassRegularizer(0.5, sub_centers=1)),
        ArcMarginProduct(7, margin=0.4, scale=30.0, easy_margin=True, sub_centers=3),
    ]


@agnostic
def test_config_round_trip():
    for layer in layers_to_check():
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        for key in ("units", "sub_centers"):
            assert config[key] == getattr(layer, key)
        if isinstance(layer, ArcMarginProduct):
            assert (config["margin"], config["scale"], config["easy_margin"]) == (0.4, 30.0, True)


@agnostic
def test_keras_save_and_reload(tmp_path):
    x, y = data(6, classes=7)
    for index, layer in enumerate(layers_to_check()):
        inputs = keras.Input((5,))
        if isinstance(layer, ArcMarginProduct):
            labels = keras.Input((), dtype="int32")
            model = keras.Model([inputs, labels], layer([inputs, labels]))
            feed = [x, y]
        else:
            model = keras.Model(inputs, layer(inputs))
            feed = x
        path = str(tmp_path / f"{index}.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        reloaded_layer = reloaded.layers[-1]
        assert type(reloaded_layer) is type(layer)
        assert reloaded_layer.get_config() == layer.get_config()
        np.testing.assert_allclose(
            ops.convert_to_numpy(reloaded(feed)), ops.convert_to_numpy(model(feed)), rtol=1e-6
        )
        assert len(reloaded.losses) == len(model.losses)


@agnostic
def test_argument_validation():
    for factory, message in [
        (lambda: NormDense(0), "Received: units=0"),
        (lambda: NormDense(2.5), "Received: units=2.5"),
        (lambda: NormDense(3, sub_centers=0), "Received: sub_centers=0"),
        (lambda: ArcMarginProduct(3, margin=-0.2), "Received: margin=-0.2"),
        (lambda: ArcMarginProduct(3, scale=0.0), "Received: scale=0.0"),
    ]:
        with pytest.raises((ValueError, TypeError), match=message):
            factory()
    with pytest.raises(ValueError, match="Received: input_shape"):
        NormDense(3)(np.zeros((2, 3, 4), np.float32))
    x, y = data(7, classes=3)
    with pytest.raises(ValueError, match=r"Received: input_shape=\[\(6, 5\), \(6,\), \(6,\)\]"):
        ArcMarginProduct(3)([x, y, y])
    built = ArcMarginProduct(3)
    built([x, y])
    with pytest.raises(ValueError, match="Received: inputs with 3 elements"):
        built([x, y, y])


def test_models_saved_with_the_old_kernel_layout_still_load():
    """tests/data/legacy_norm_dense.keras was written by the (D, units) layout code."""
    import os

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    io = np.load(os.path.join(here, "legacy_norm_dense_io.npz"))
    model = keras.saving.load_model(os.path.join(here, "legacy_norm_dense.keras"))
    assert tuple(model.get_layer("sub").kernel.shape) == (6, 6)  # square: layout from config
    assert tuple(model.get_layer("plain").kernel.shape) == (5, 6)
    outputs = model.predict([io["x"], io["y"]], verbose=0)
    for name, got in zip(("sub", "plain", "arc"), outputs):
        np.testing.assert_allclose(got, io[name], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Received: kernel_layout='rows'"):
        NormDense.from_config({**NormDense(3).get_config(), "kernel_layout": "rows"})
