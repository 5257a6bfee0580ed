"""The softmax margin family against float64 loop oracles (values and finite-difference grads)."""

import functools
import math

import keras
import numpy as np
import pytest
from keras import ops
from loss_oracles import (
    arcface_target,
    assert_close,
    combined_target,
    cosface_target,
    cross_entropy,
    finite_difference,
    identity_target,
    margin_loss,
    value_and_grad,
)

from keras_arcface import losses
from keras_arcface.losses import margins

agnostic = pytest.mark.backend_agnostic

# id -> (loss factory, oracle target function); every case uses the loss's own scale.
CASES = {
    "arcface": (lambda **k: losses.ArcFaceLoss(**k), arcface_target),
    "arcface_m0.4": (
        lambda **k: losses.ArcFaceLoss(margin=0.4, **k),
        functools.partial(arcface_target, margin=0.4),
    ),
    "arcface_easy": (
        lambda **k: losses.ArcFaceLoss(easy_margin=True, **k),
        functools.partial(arcface_target, easy_margin=True),
    ),
    "cosface": (lambda **k: losses.CosFaceLoss(**k), cosface_target),
    "sphereface": (
        lambda **k: losses.SphereFaceLoss(**k),
        functools.partial(combined_target, m1=1.35, m2=0.0, m3=0.0),
    ),
    "cm1": (
        lambda **k: losses.get("cm1", **k),
        functools.partial(combined_target, m1=1.0, m2=0.3, m3=0.2),
    ),
    "cm2": (
        lambda **k: losses.get("cm2", **k),
        functools.partial(combined_target, m1=0.9, m2=0.4, m3=0.15),
    ),
    "combined_all": (
        lambda **k: losses.CombinedMarginLoss(m1=1.2, m2=0.25, m3=0.1, **k),
        functools.partial(combined_target, m1=1.2, m2=0.25, m3=0.1),
    ),
    "norm_softmax": (lambda **k: losses.NormSoftmaxLoss(**k), identity_target),
}

# Interior target cosines: the ArcFace fallback region (-0.95), both sides of zero (easy
# margin), SphereFace's k = 1 branch (< -0.687), and near 1; none within 1e-3 of a kink.
TARGET_COSINES = [-0.95, -0.8, -0.5, -0.1, 0.2, 0.6, 0.97]


def random_batch(seed, batch=7, classes=9):
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-0.9, 0.9, (batch, classes))
    labels = rng.integers(0, classes, batch)
    cosine[np.arange(batch), labels] = TARGET_COSINES[:batch]
    return labels, cosine


def loss_value(loss, labels, cosine):
    return float(loss(labels, ops.convert_to_tensor(np.asarray(cosine, np.float32))))


# Few test items, loops inside: every item pays a Keras session reset at teardown.


@agnostic
def test_value_matches_oracle():
    labels, cosine = random_batch(0)
    cosine = cosine.astype(np.float32)
    for name, (factory, target) in CASES.items():
        for scale in (64.0, 8.0):
            expected = margin_loss(labels, cosine, target, scale)
            actual = loss_value(factory(scale=scale), labels, cosine)
            assert_close(actual, expected, rtol=1e-5, err_msg=f"{name} scale={scale}")


@agnostic
def test_gradient_matches_finite_differences():
    labels, cosine = random_batch(1)
    cosine = cosine.astype(np.float32)
    for name, (factory, target) in CASES.items():
        loss = factory(scale=16.0)
        _, grad = value_and_grad(lambda x, loss=loss: loss(labels, x), cosine)
        expected = finite_difference(
            lambda x, target=target: margin_loss(labels, x, target, 16.0), cosine
        )
        assert_close(grad, expected, rtol=1e-5, err_msg=name)


@agnostic
def test_autodiff_path_matches_oracle_gradient():
    # margin_logits without the analytic derivative (the path custom margins take).
    labels, cosine = random_batch(2)
    cosine = cosine.astype(np.float32)
    for name, (factory, target) in CASES.items():
        loss = factory(scale=16.0)

        def fn(x, loss=loss):
            logits = margins.margin_logits(labels, x, loss.margin_cosine, scale=16.0)
            return ops.mean(margins.sparse_softmax_cross_entropy(labels, logits))

        value, grad = value_and_grad(fn, cosine)
        assert_close(value, margin_loss(labels, cosine, target, 16.0), rtol=1e-5, err_msg=name)
        expected = finite_difference(
            lambda x, target=target: margin_loss(labels, x, target, 16.0), cosine
        )
        assert_close(grad, expected, rtol=1e-5, err_msg=name)


def edge_cosines(margin=0.5):
    threshold = np.float32(math.cos(math.pi - margin))
    return [
        -1.0,
        1.0,
        float(threshold),
        float(np.nextafter(threshold, np.float32(1))),
        float(np.nextafter(threshold, np.float32(-1))),
        0.0,
        float(np.nextafter(np.float32(1), np.float32(0))),
        float(np.nextafter(np.float32(-1), np.float32(0))),
        1.0000001,  # rounding overshoot of a normalized dot product: clipped
        -1.0000001,
    ]


@agnostic
@pytest.mark.parametrize("detach", [False, True])
def test_edges_are_finite_and_match_oracle(detach):
    for name, (factory, target) in CASES.items():
        check_edges(name, factory, target, detach)


def check_edges(name, factory, target, detach):
    edges = edge_cosines()
    batch = len(edges)
    rng = np.random.default_rng(3)
    cosine = rng.uniform(-0.5, 0.5, (batch, 4)).astype(np.float32)
    cosine[:, 1] = np.float32(1.0)  # a non-target column at exactly 1 too
    labels = np.zeros(batch, np.int64)
    cosine[:, 0] = np.asarray(edges, np.float32)
    loss = factory(scale=64.0, detach_margin=detach)
    value, grad = value_and_grad(lambda x: loss(labels, x), cosine)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), name
    assert_close(value, margin_loss(labels, cosine, target, 64.0), rtol=1e-5, err_msg=name)


@agnostic
def test_detach_margin_has_norm_softmax_gradient_at_shifted_probabilities():
    for name in ("arcface", "sphereface", "cm2"):
        check_detached(name, *CASES[name])


def check_detached(name, factory, target):
    labels, cosine = random_batch(4)
    cosine = cosine.astype(np.float32)
    exact, detached = factory(scale=16.0), factory(scale=16.0, detach_margin=True)
    value, grad = value_and_grad(lambda x: detached(labels, x), cosine)
    assert_close(value, loss_value(exact, labels, cosine), rtol=1e-6, err_msg=name)
    rows = np.arange(len(labels))
    c_y = cosine[rows, labels].astype(np.float64)
    delta = np.array([target(c) - c for c in c_y])  # the margin's value, held fixed
    expected = finite_difference(
        lambda x: margin_loss(labels, x, target, 16.0, frozen_delta=delta), cosine
    )
    assert_close(grad, expected, rtol=1e-5, err_msg=name)
    # and it differs from the true gradient on the target column
    _, true_grad = value_and_grad(lambda x: exact(labels, x), cosine)
    assert not np.allclose(true_grad[rows, labels], grad[rows, labels], rtol=1e-3)


@agnostic
def test_float16_and_bfloat16_inputs_compute_in_float32():
    for name, (factory, target) in CASES.items():
        check_low_precision_inputs(name, factory(), target)


def check_low_precision_inputs(name, loss, target):
    labels, cosine = random_batch(5)
    for dtype in ("float16", "bfloat16"):
        x = ops.cast(ops.convert_to_tensor(cosine.astype(np.float32)), dtype)
        rounded = np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), np.float64)
        logits = loss.logits(labels, x)
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"
        expected = margin_loss(labels, rounded, target, 64.0)
        value = float(loss(labels, x))
        assert_close(value, expected, rtol=1e-2, err_msg=f"{name} {dtype}")
        # float32 math after the cast: in fact as close as float32 inputs
        assert_close(value, expected, rtol=1e-5, err_msg=f"{name} {dtype}")


@agnostic
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_losses_stay_float32_under_mixed_policy(policy):
    keras.mixed_precision.set_global_policy(policy)
    labels, cosine = random_batch(6)
    for name, (factory, target) in CASES.items():
        loss = factory()
        value = loss(labels, cosine.astype(np.float32))
        assert keras.backend.standardize_dtype(value.dtype) == "float32", name
        expected = margin_loss(labels, cosine.astype(np.float32), target, 64.0)
        assert_close(float(value), expected, rtol=1e-5, err_msg=name)


@agnostic
def test_logits_on_a_class_subset_with_remapped_labels():
    # What the Partial FC head does: keep some columns, renumber the labels into them.
    from loss_oracles import margin_logits as oracle_logits

    labels, cosine = random_batch(7, classes=12)
    keep = np.unique(np.concatenate([labels, [0, 5, 11]]))
    remap = {int(c): i for i, c in enumerate(keep)}
    sub_labels = np.array([remap[int(y)] for y in labels])
    sub = cosine[:, keep].astype(np.float32)
    for name, (factory, target) in CASES.items():
        logits = factory().logits(sub_labels, sub)
        assert tuple(logits.shape) == sub.shape
        expected = oracle_logits(sub_labels, sub, target, 64.0)
        assert_close(logits, expected, rtol=1e-5, err_msg=name)


@agnostic
def test_column_labels_equal_flat_labels():
    labels, cosine = random_batch(8)
    loss = losses.ArcFaceLoss()
    flat = loss_value(loss, labels, cosine)
    assert loss_value(loss, labels.reshape(-1, 1), cosine) == pytest.approx(flat, rel=1e-7)


@agnostic
def test_softmax_loss_is_plain_cross_entropy_on_large_logits():
    rng = np.random.default_rng(9)
    logits = rng.normal(0, 40, (6, 10)).astype(np.float32)  # would overflow a naive exp
    labels = rng.integers(0, 10, 6)
    value = float(losses.SoftmaxLoss()(labels, logits))
    assert_close(value, cross_entropy(labels, logits), rtol=1e-5)
    assert np.array_equal(np.asarray(losses.SoftmaxLoss().logits(labels, logits)), logits)


@agnostic
def test_combined_reduces_to_the_single_margins():
    labels, cosine = random_batch(10)  # no target at or below ArcFace's fallback threshold
    cosine[np.arange(len(labels)), labels] = np.clip(
        cosine[np.arange(len(labels)), labels], -0.8, 1
    )
    pairs = [
        (losses.CombinedMarginLoss(1.0, 0.5, 0.0), losses.ArcFaceLoss(0.5)),
        (losses.CombinedMarginLoss(1.0, 0.0, 0.35), losses.CosFaceLoss(0.35)),
        (losses.CombinedMarginLoss(1.35, 0.0, 0.0), losses.SphereFaceLoss(1.35)),
        (losses.CombinedMarginLoss(1.0, 0.0, 0.0), losses.NormSoftmaxLoss()),
    ]
    for combined, single in pairs:
        a, b = loss_value(combined, labels, cosine), loss_value(single, labels, cosine)
        assert a == pytest.approx(b, rel=1e-5), type(single).__name__


@agnostic
def test_target_functions_are_monotone():
    for fn in [
        functools.partial(margins.additive_angular_margin, margin=0.5),
        functools.partial(margins.additive_angular_margin, margin=1.2),
        functools.partial(margins.combined_margin, m1=1.35, m2=0.0, m3=0.0),
        functools.partial(margins.combined_margin, m1=0.9, m2=0.4, m3=0.15),
        functools.partial(margins.combined_margin, m1=2.5, m2=0.6, m3=0.0),
    ]:
        grid = np.linspace(-1, 1, 20001).astype(np.float32)
        values = np.asarray(fn(ops.convert_to_tensor(grid)))
        assert np.all(np.diff(values) >= -1e-6), fn.keywords
        # and never above the plain cosine: a margin only ever makes the target harder
        assert np.all(values <= grid + 1e-6), fn.keywords


@agnostic
def test_easy_margin_steps_down_at_zero_as_documented():
    # easy_margin (reference behaviour) is NOT monotone: at cos = 0 the target drops from 0 to
    # cos(pi/2 + m) = -sin(m). Margin only for cos > 0, identity elsewhere.
    tiny = 1e-6
    below, above = margins.additive_angular_margin(
        ops.convert_to_tensor([-tiny, tiny]), margin=0.5, easy_margin=True
    )
    assert float(below) == pytest.approx(-tiny, abs=1e-9)
    assert float(above) == pytest.approx(-math.sin(0.5), abs=1e-5)


@agnostic
def test_margin_is_in_radians():
    # cos(60 deg + 30 deg) = 0: margin pi/6 rad on a target at 60 deg.
    value = margins.additive_angular_margin(ops.convert_to_tensor([0.5]), margin=math.pi / 6)
    assert float(value[0]) == pytest.approx(0.0, abs=1e-6)


@agnostic
def test_registry():
    expected = {
        "softmax": losses.SoftmaxLoss,
        "norm_softmax": losses.NormSoftmaxLoss,
        "sphereface": losses.SphereFaceLoss,
        "cosface": losses.CosFaceLoss,
        "arcface": losses.ArcFaceLoss,
        "combined": losses.CombinedMarginLoss,
        "cm1": losses.CombinedMarginLoss,
        "cm2": losses.CombinedMarginLoss,
    }
    assert losses.available() == sorted(expected)
    for name, cls in expected.items():
        assert type(losses.get(name)) is cls
    cm1, cm2 = losses.get("CM1"), losses.get("cm2", scale=32.0)
    assert (cm1.m1, cm1.m2, cm1.m3) == (1.0, 0.3, 0.2)
    assert (cm2.m1, cm2.m2, cm2.m3, cm2.scale) == (0.9, 0.4, 0.15, 32.0)
    assert losses.get("arcface", margin=0.4).margin == 0.4
    assert losses.get("norm-softmax").scale == 64.0
    instance = losses.CosFaceLoss()
    assert losses.get(instance) is instance
    with pytest.raises(ValueError, match=r"arcface.*Received: name='arcfce'"):
        losses.get("arcfce")
    with pytest.raises(TypeError, match="Received: name=3"):
        losses.get(3)


@agnostic
def test_argument_validation():
    for factory, message in [
        (lambda: losses.ArcFaceLoss(margin=-0.1), "Received: margin=-0.1"),
        (lambda: losses.ArcFaceLoss(margin=4.0), "Received: margin=4.0"),
        (lambda: losses.ArcFaceLoss(scale=0), "Received: scale=0"),
        (lambda: losses.CosFaceLoss(margin=3), "Received: margin=3"),
        (lambda: losses.SphereFaceLoss(margin=0.5), "Received: margin=0.5"),
        (lambda: losses.CombinedMarginLoss(m1=0.0), "Received: m1=0.0"),
        (lambda: losses.CombinedMarginLoss(m2=4.0), "Received: m2=4.0"),
        (lambda: losses.NormSoftmaxLoss(intra_weight=-1), "Received: intra_weight=-1"),
        (lambda: losses.ArcFaceLoss(margin="0.5"), "Received: margin='0.5'"),
    ]:
        with pytest.raises((ValueError, TypeError), match=message):
            factory()


def all_losses():
    return [
        losses.ArcFaceLoss(margin=0.45, scale=32.0, easy_margin=True, intra_weight=0.5),
        losses.CosFaceLoss(margin=0.4, detach_margin=True),
        losses.SphereFaceLoss(margin=1.5),
        losses.CombinedMarginLoss(0.9, 0.4, 0.15, scale=48.0),
        losses.NormSoftmaxLoss(scale=30.0, intra_weight=1.0),
        losses.SoftmaxLoss(),
    ]


@agnostic
def test_config_round_trip():
    for loss in all_losses():
        check_config_round_trip(loss)


def check_config_round_trip(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    labels, cosine = random_batch(11)
    assert loss_value(clone, labels, cosine) == loss_value(loss, labels, cosine)


@agnostic
def test_keras_save_and_reload_with_compiled_loss(tmp_path):
    for loss in all_losses():
        check_save_and_reload(loss, str(tmp_path / f"{type(loss).__name__}.keras"))


def check_save_and_reload(loss, path):
    from keras_arcface.layers import NormDense

    inputs = keras.Input((6,))
    if isinstance(loss, losses.SoftmaxLoss):
        outputs = keras.layers.Dense(5)(inputs)
    else:
        outputs = NormDense(5)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss=loss)
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(8, 6)).astype(np.float32), rng.integers(0, 5, 8)
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.loss) is type(loss)
    assert reloaded.loss.get_config() == loss.get_config()
    before = float(loss(y, model(x)))
    assert float(reloaded.loss(y, reloaded(x))) == pytest.approx(before, rel=1e-6)


def test_tensorflow_graph_has_no_dense_one_hot():
    # TensorFlow only: the traced loss + gradient contain no OneHot and no B x N float mask.
    import tensorflow as tf

    labels = tf.constant([3, 1], tf.int32)
    cosine = tf.random.uniform((2, 50_000), -1, 1)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = losses.ArcFaceLoss()(labels, x)
        return value, tape.gradient(value, x)

    graph = step.get_concrete_function(cosine).graph
    op_types = {op.type for op in graph.get_operations()}
    assert "OneHot" not in op_types
    assert "SparseSoftmaxCrossEntropyWithLogits" in op_types
    assert {"TensorScatterUpdate"} <= op_types
    value, grad = step(cosine)
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad.numpy()))
