"""fold_batch_norm: a float64 NumPy conv -> BN oracle, whole backbones, what must not fold."""

import os

import keras
import numpy as np
import pytest

from keras_arcface.models import GroupedConv2D, fold_batch_norm, get_backbone
from keras_arcface.models.folding import foldable_batch_norms

agnostic = pytest.mark.backend_agnostic
BatchNorm = keras.layers.BatchNormalization


def randomize(model, seed=0):
    """Non-trivial BN statistics, BN affine weights and PReLU slopes (as torch_reference's)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            size = layer.moving_mean.shape[0]
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, size))
            if layer.center:
                layer.beta.assign(rng.uniform(-0.3, 0.3, size))
            layer.moving_mean.assign(rng.uniform(-0.3, 0.3, size))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size))
        elif isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(0.05, 0.45, layer.alpha.shape))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.uniform(-0.2, 0.2, layer.bias.shape))
    return model


def batch_norms(model):
    return [layer.name for layer in model.layers if isinstance(layer, BatchNorm)]


def oracle_conv(x, kernel, stride, pad, groups):
    """float64 loop: grouped NHWC convolution, kernel ``[kh, kw, in / groups, out]``."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kernel = np.asarray(kernel, np.float64)
    kh, kw, per_group, out = kernel.shape
    height = (x.shape[1] - kh) // stride + 1
    width = (x.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], height, width, out))
    for o in range(out):
        first = (o // (out // groups)) * per_group
        for i in range(height):
            for j in range(width):
                patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw]
                y[:, i, j, o] = np.sum(
                    patch[..., first : first + per_group] * kernel[..., o], (1, 2, 3)
                )
    return y


def oracle_batch_norm(z, layer):
    """float64: ``(z - mean) / sqrt(var + eps) * gamma + beta`` with the layer's statistics."""
    value = lambda v: np.asarray(keras.ops.convert_to_numpy(v), np.float64)  # noqa: E731
    gamma = value(layer.gamma) if layer.scale else 1.0
    beta = value(layer.beta) if layer.center else 0.0
    scale = gamma / np.sqrt(value(layer.moving_variance) + layer.epsilon)
    return (z - value(layer.moving_mean)) * scale + beta


def conv_bn_model():
    """Four branches, each a foldable layer -> BN: conv, depthwise, grouped conv, dense."""
    images = keras.Input((7, 7, 4), name="images")
    conv = keras.layers.Conv2D(6, 3, strides=2, use_bias=False, name="conv")(images)
    depthwise = keras.layers.DepthwiseConv2D(
        3, padding="same", depth_multiplier=2, use_bias=False, name="dw"
    )(images)
    grouped = GroupedConv2D(6, 3, padding="same", groups=2, name="grouped")(images)
    dense = keras.layers.Dense(5, name="fc")(keras.layers.Flatten(name="flatten")(images))
    outputs = [
        BatchNorm(epsilon=1e-5, name="conv_bn")(conv),
        BatchNorm(epsilon=1e-3, name="dw_bn")(depthwise),
        BatchNorm(name="grouped_bn", center=False)(grouped),
        BatchNorm(name="fc_bn", scale=False)(dense),
    ]
    return randomize(keras.Model(images, outputs, name="branches"), seed=3)


def oracle_outputs(model, x):
    """float64 conv -> BN of every branch of :func:`conv_bn_model`, from its weights."""
    weight = lambda name, i=0: keras.ops.convert_to_numpy(model.get_layer(name).weights[i])  # noqa: E731
    kh, kw, channels, multiplier = weight("dw").shape
    depthwise = weight("dw").reshape(kh, kw, 1, channels * multiplier)  # channel c*m + k
    dense = x.reshape(len(x), -1).astype(np.float64) @ weight("fc") + weight("fc", 1)
    return [
        oracle_batch_norm(oracle_conv(x, weight("conv"), 2, 0, 1), model.get_layer("conv_bn")),
        oracle_batch_norm(oracle_conv(x, depthwise, 1, 1, channels), model.get_layer("dw_bn")),
        oracle_batch_norm(
            oracle_conv(x, weight("grouped"), 1, 1, 2) + weight("grouped", 1),
            model.get_layer("grouped_bn"),
        ),
        oracle_batch_norm(dense, model.get_layer("fc_bn")),
    ]


@agnostic
def test_folded_layers_match_a_float64_conv_then_batch_norm():
    model = conv_bn_model()
    x = np.random.default_rng(0).normal(size=(3, 7, 7, 4)).astype(np.float32)
    expected = oracle_outputs(model, x)
    folded = fold_batch_norm(model)
    assert batch_norms(folded) == []
    assert [layer.name for layer in folded.layers] == [
        layer.name for layer in model.layers if not isinstance(layer, BatchNorm)
    ]
    assert all(folded.get_layer(name).use_bias for name in ("conv", "dw", "grouped", "fc"))
    for got, want in zip(folded(x, training=False), expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-5)
    # The given model is untouched and still computes conv -> BN.
    assert len(batch_norms(model)) == 4 and not model.get_layer("conv").use_bias
    for got, want in zip(model(x, training=False), expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-5)


@agnostic
def test_nothing_foldable_comes_back_equivalent():
    images = keras.Input((6, 6, 3))
    x = BatchNorm(name="after_input")(images)  # no layer before it
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(x)
    x = BatchNorm(name="after_activation")(x)
    y = keras.layers.Conv2D(4, 1, name="shared_output")(x)
    z = BatchNorm(name="output_read_twice")(y)  # y also feeds the Add
    z = keras.layers.Add(name="add")([y, z])
    shared = keras.layers.Dense(4, name="called_twice")
    flat = keras.layers.GlobalAveragePooling2D(name="pool")(z)
    w = BatchNorm(name="after_shared")(shared(flat))
    w = keras.layers.Add(name="add2")([w, shared(shared(flat))])
    model = randomize(keras.Model(images, w))
    assert foldable_batch_norms(model) == {}
    folded = fold_batch_norm(model)
    assert folded is not model
    assert [layer.name for layer in folded.layers] == [layer.name for layer in model.layers]
    for a, b in zip(folded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-6,
        atol=1e-6,
    )


def embeddings_of(model, x):
    return np.asarray(model.predict_on_batch(x), np.float64)


def assert_same_embeddings(folded, model, x):
    got, want = embeddings_of(folded, x), embeddings_of(model, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    cosine = np.sum(got * want, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert np.all(cosine > 1 - 1e-5), cosine


def test_mbf_folds_all_fifty_batch_norms_and_embeds_the_same():
    model = randomize(get_backbone("mbf"), seed=1)
    folded = fold_batch_norm(model)
    assert len(batch_norms(model)) == 50  # stem 2, 15 bottlenecks x 3, sep 1, GDC head 2
    assert batch_norms(folded) == []
    assert len(folded.layers) == len(model.layers) - 50
    np.testing.assert_array_equal(
        folded.get_layer("stem_prelu").get_weights()[0],
        model.get_layer("stem_prelu").get_weights()[0],
    )
    x = np.random.default_rng(2).uniform(0, 255, (4, 112, 112, 3)).astype(np.float32)
    assert_same_embeddings(folded, model, x)


def test_iresnet_keeps_the_batch_norms_before_padded_convolutions():
    model = randomize(get_backbone("small"), seed=2)
    folded = fold_batch_norm(model)
    # bn1 of each block reads the block input (padded by conv1) and head_bn an Add: 4 stay.
    assert sorted(batch_norms(folded)) == [
        "head_bn",
        "stage1_block1_bn1",
        "stage2_block1_bn1",
        "stage3_block1_bn1",
    ]
    assert len(batch_norms(model)) == 15
    x = np.random.default_rng(3).uniform(0, 255, (4, 112, 112, 3)).astype(np.float32)
    assert_same_embeddings(folded, model, x)


def test_mixed_precision_folds_in_float64_and_keeps_the_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = conv_bn_model()
    finally:
        keras.config.set_dtype_policy(previous)
    folded = fold_batch_norm(model)
    conv = folded.get_layer("conv")
    assert conv.compute_dtype == "float16" and conv.kernel.dtype == "float32"
    x = np.random.default_rng(4).normal(size=(2, 7, 7, 4)).astype(np.float32)
    for got, want in zip(folded(x, training=False), oracle_outputs(model, x)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=2e-2, atol=2e-2)


def test_folded_model_saves_and_reloads(tmp_path):
    folded = fold_batch_norm(conv_bn_model())
    path = os.path.join(tmp_path, "folded.keras")
    folded.save(path)
    reloaded = keras.saving.load_model(path)
    x = np.random.default_rng(5).normal(size=(2, 7, 7, 4)).astype(np.float32)
    for a, b in zip(reloaded.predict_on_batch(x), folded.predict_on_batch(x)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), keras.layers.Dense(2)],
    ids=["sequential", "layer"],
)
def test_non_functional_model_is_a_clear_type_error(model):
    with pytest.raises(TypeError, match="functional keras.Model.*Received: model="):
        fold_batch_norm(model)


def test_embedder_folds_a_keras_model_on_load_unless_told_not_to(tmp_path):
    from keras_arcface.inference import Embedder

    model = randomize(get_backbone("small"), seed=6)
    path = os.path.join(tmp_path, "embedding.keras")
    model.save(path)
    folded = Embedder.load(path)
    as_saved = Embedder.load(path, fold_batch_norm=False)
    assert len(batch_norms(folded.runtime.model)) == 4
    assert len(batch_norms(as_saved.runtime.model)) == 15
    images = np.random.default_rng(7).uniform(0, 255, (3, 112, 112, 3)).astype(np.uint8)
    got, want = folded.embed(images, align=False), as_saved.embed(images, align=False)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(
        want, l2_rows(embeddings_of(model, images.astype(np.float32))), atol=1e-5
    )


def l2_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_saved_model_export_folds_unless_told_not_to(tmp_path):
    import tensorflow as tf

    from keras_arcface.export.saved_model import export_saved_model

    model = randomize(get_backbone("small"), seed=8)
    images = np.random.default_rng(9).uniform(0, 255, (2, 112, 112, 3)).astype(np.float32)
    expected = l2_rows(embeddings_of(model, images))
    stored = {}
    for fold in (True, False):
        path = export_saved_model(
            model, os.path.join(tmp_path, f"fold_{fold}"), fold_batch_norm=fold
        )
        serve = tf.saved_model.load(path).signatures["serving_default"]
        got = serve(images=tf.constant(images))["embeddings"].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)
        reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
        shapes = reader.get_variable_to_shape_map().items()
        stored[fold] = sum(int(np.prod(s)) for n, s in shapes if not n.startswith("_CHECK"))
    assert stored == {True: fold_batch_norm(model).count_params(), False: model.count_params()}
