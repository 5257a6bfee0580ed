"""Partial FC head (keras_arcface.layers), center optimiser and schedules vs float64 oracles."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_arcface import layers, losses
from keras_arcface.layers import PartialFC
from keras_arcface.training.optimizers import CenterOptimizer
from keras_arcface.training.schedules import WarmupDecay

SCALE = 16.0
COSFACE_MARGIN = 0.35


# ---------------------------------------------------------------------------- the oracle
def oracle_loss(emb, centers, labels, columns=None, margin=COSFACE_MARGIN, scale=SCALE):
    """Mean CosFace loss in float64 loops: s*(cos - m) on the target, s*cos elsewhere."""
    emb = np.asarray(emb, np.float64)
    centers = np.asarray(centers, np.float64)
    columns = np.arange(len(centers)) if columns is None else np.asarray(columns)
    total = 0.0
    for i, label in enumerate(labels):
        e = emb[i] / math.sqrt(sum(v * v for v in emb[i]))
        logits = []
        for c in columns:
            w = centers[c] / math.sqrt(sum(v * v for v in centers[c]))
            cos = float(np.dot(e, w))
            logits.append(scale * (cos - margin) if c == label else scale * cos)
        top = max(logits)
        log_z = top + math.log(sum(math.exp(v - top) for v in logits))
        target = logits[list(columns).index(label)]
        total += log_z - target
    return total / len(labels)


def numeric_grad(fn, x, eps=1e-6):
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        up = fn()
        flat[k] = old - eps
        down = fn()
        flat[k] = old
        grad.reshape(-1)[k] = (up - down) / (2 * eps)
    return grad


@pytest.fixture
def batch():
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(6, 5))
    centers = rng.normal(size=(11, 5))
    labels = np.array([0, 3, 3, 7, 10, 5])
    return emb, centers, labels


def _head(centers, sample_rate, seed=0, loss=None):
    head = PartialFC(
        len(centers),
        centers.shape[1],
        sample_rate=sample_rate,
        seed=seed,
        logits_fn=None if loss is None else loss.logits,
    )
    head.build((None, centers.shape[1]))
    head.centers.assign(centers.astype("float32"))
    return head


def _loss_and_grads(head, emb, labels, loss, step=0):
    head.logits_fn = loss.logits
    emb_t = tf.constant(emb, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(emb_t)
        value = tf.reduce_mean(head.per_example_loss(emb_t, labels, step=step))
    g_emb, g_centers = tape.gradient(value, [emb_t, head.centers.value])
    return float(value), g_emb.numpy(), g_centers


# ------------------------------------------------------------------------------- tests
def test_full_rate_equals_full_softmax_oracle(batch):
    emb, centers, labels = batch
    loss = losses.get("cosface", margin=COSFACE_MARGIN, scale=SCALE)
    head = _head(centers, 1.0)
    value, g_emb, g_centers = _loss_and_grads(head, emb, labels, loss)
    assert value == pytest.approx(oracle_loss(emb, centers, labels), rel=1e-5)
    e64, c64 = emb.copy(), centers.copy()
    want_emb = numeric_grad(lambda: oracle_loss(e64, c64, labels), e64)
    want_centers = numeric_grad(lambda: oracle_loss(e64, c64, labels), c64)
    assert not isinstance(g_centers, tf.IndexedSlices)  # dense: the whole matrix
    np.testing.assert_allclose(g_emb, want_emb, rtol=2e-3, atol=2e-5)
    np.testing.assert_allclose(np.asarray(g_centers), want_centers, rtol=2e-3, atol=2e-5)


def test_full_rate_equals_normdense_plus_loss(batch):
    """sample_rate=1 is exactly the library's full head: NormDense + the loss."""
    emb, centers, labels = batch
    loss = losses.get("arcface", margin=0.5, scale=SCALE)
    head = _head(centers, 1.0)
    dense = layers.NormDense(len(centers))
    dense.build((None, centers.shape[1]))
    kernel = dense.trainable_variables[0]
    kernel.assign(centers.astype("float32"))  # one layout: a center per row
    emb_t = tf.constant(emb, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(emb_t)
        want = loss(labels, dense(emb_t))
    want_grad = tape.gradient(want, emb_t).numpy()
    value, g_emb, _ = _loss_and_grads(head, emb, labels, loss)
    assert value == pytest.approx(float(want), rel=1e-5)
    np.testing.assert_allclose(g_emb, want_grad, rtol=1e-4, atol=1e-6)


def test_sampled_head_uses_positives_plus_random_negatives(batch):
    emb, centers, labels = batch
    loss = losses.get("cosface", margin=COSFACE_MARGIN, scale=SCALE)
    head = _head(centers, 0.8, seed=3)
    cosine, local, index = head(tf.constant(emb, tf.float32), labels, step=5)
    index = index.numpy()
    assert len(index) == math.ceil(0.8 * 11)
    assert np.all(np.diff(index) > 0)  # sorted and unique
    assert set(labels) <= set(index)
    np.testing.assert_array_equal(index[local.numpy()], labels)  # remapped labels
    # Same (seed, step): same subset (every replica and worker agrees); another step differs.
    again = head.sample(tf.constant(labels), 5).numpy()
    np.testing.assert_array_equal(again, index)
    others = {tuple(head.sample(tf.constant(labels), s).numpy()) for s in range(6, 16)}
    assert len(others) > 1
    # The loss is the softmax over exactly those columns, and only their rows get gradient.
    value, _, g_centers = _loss_and_grads(head, emb, labels, loss, step=5)
    assert value == pytest.approx(oracle_loss(emb, centers, labels, columns=index), rel=1e-5)
    assert isinstance(g_centers, tf.IndexedSlices)
    np.testing.assert_array_equal(np.sort(g_centers.indices.numpy()), index)


def test_sampled_gradients_match_numeric_oracle(batch):
    """The hand-written cosine gradient of the sampled head against float64 differences."""
    emb, centers, labels = batch
    loss = losses.get("arcface", margin=0.5, scale=SCALE)
    head = _head(centers, 0.8, seed=1)
    index = head.sample(tf.constant(labels), 2).numpy()
    value, g_emb, g_centers = _loss_and_grads(head, emb, labels, loss, step=2)

    def oracle():  # ArcFace in float64: s*cos(theta + m) on the target, s*cos elsewhere
        total = 0.0
        for i, label in enumerate(labels):
            e = e64[i] / np.sqrt(np.sum(e64[i] ** 2))
            logits = []
            for c in index:
                cos = float(np.dot(e, c64[c] / np.sqrt(np.sum(c64[c] ** 2))))
                if c == label:
                    cos = math.cos(math.acos(min(1.0, max(-1.0, cos))) + 0.5)
                logits.append(SCALE * cos)
            top = max(logits)
            total += top + math.log(sum(math.exp(v - top) for v in logits))
            total -= logits[list(index).index(label)]
        return total / len(labels)

    e64, c64 = emb.copy(), centers.copy()
    assert value == pytest.approx(oracle(), rel=1e-5)
    want_emb = numeric_grad(oracle, e64)
    want_centers = numeric_grad(oracle, c64)
    np.testing.assert_allclose(g_emb, want_emb, rtol=2e-3, atol=2e-5)
    dense = tf.math.unsorted_segment_sum(g_centers.values, g_centers.indices, len(centers))
    np.testing.assert_allclose(dense.numpy(), want_centers, rtol=2e-3, atol=2e-5)
    unsampled = np.setdiff1d(np.arange(len(centers)), index)
    assert np.all(want_centers[unsampled] == 0.0)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_center_optimizer_sparse_sgd_matches_formula(nesterov, mode):
    """Sampled rows: m = mu*m - lr*(g [+ wd*w]); w += m (or mu*m - lr*g) [- lr*wd*w]."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(7, 3))
    var = tf.Variable(w.astype("float32"))
    opt = CenterOptimizer(
        var, momentum=0.9, nesterov=nesterov, weight_decay=0.01, weight_decay_mode=mode
    )
    m = np.zeros_like(w)
    for rows in ([0, 2, 5], [2, 6], [0, 2, 5]):
        g = rng.normal(size=(len(rows), 3))
        opt.apply(tf.IndexedSlices(tf.constant(g, tf.float32), tf.constant(rows)), 0.1)
        for k, r in enumerate(rows):
            grad = g[k] + (0.01 * w[r] if mode == "coupled" else 0.0)
            m[r] = 0.9 * m[r] - 0.1 * grad
            delta = 0.9 * m[r] - 0.1 * grad if nesterov else m[r]
            if mode == "decoupled":
                delta = delta - 0.1 * 0.01 * w[r]
            w[r] = w[r] + delta
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.slot_1.numpy(), m, rtol=1e-5, atol=1e-6)


def test_sample_is_the_top_scores_of_its_seeded_draw():
    """Large N takes the thresholded path; it must pick exactly the `count` largest scores
    of the (seed, step) uniform draw, positives forced to the top, ties to the lower id."""
    num_classes = 100_000
    head = PartialFC(num_classes, 4, sample_rate=0.01, seed=9)
    labels = np.array([5, 99_999, 5, 123, 40_000])
    for step in (0, 7):
        index = head.sample(tf.constant(labels), step).numpy()
        seed = tf.constant([9, step], tf.int64)
        scores = tf.random.stateless_uniform([num_classes], seed=seed).numpy().astype(np.float64)
        scores[labels] = 2.0
        order = np.lexsort((np.arange(num_classes), -scores))  # by score desc, then id
        np.testing.assert_array_equal(index, np.sort(order[:1000]))


def test_sample_never_drops_positives_when_rate_is_tiny():
    head = PartialFC(1000, 4, sample_rate=0.001)
    head.build((None, 4))
    labels = tf.constant(np.arange(0, 1000, 50))  # 20 positives > ceil(0.001 * 1000)
    index = head.sample(labels, 0).numpy()
    np.testing.assert_array_equal(index, np.arange(0, 1000, 50))


def test_partial_fc_at_ten_percent_trains():
    rng = np.random.default_rng(0)
    num_classes, dim = 400, 16
    means = rng.normal(size=(num_classes, dim)).astype("float32")
    loss = losses.get("arcface", margin=0.3, scale=SCALE)
    head = _head(rng.normal(size=(num_classes, dim)) * 0.01, 0.1, loss=loss)
    opt = CenterOptimizer(head.centers, momentum=0.9, weight_decay=5e-4)

    @tf.function
    def step(x, y, k):
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(head.per_example_loss(x, y, step=k))
        opt.apply(tape.gradient(value, head.centers.value), 0.5)
        return value

    history = []
    for k in range(60):
        y = rng.integers(0, num_classes, 64)
        x = means[y] + 0.3 * rng.normal(size=(64, dim)).astype("float32")
        history.append(float(step(x, y, tf.constant(k, tf.int64))))
    assert np.mean(history[-10:]) < 0.5 * np.mean(history[:5])


def test_center_optimizer_sgd_matches_coupled_momentum_formula():
    """Dense rows: m = mu*m - lr*(g + wd*w); w += m (MXNet SGD, the paper's)."""
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(5, 3))
    grads = [rng.normal(size=(5, 3)) for _ in range(3)]
    var = tf.Variable(w0.astype("float32"))
    opt = CenterOptimizer(var, momentum=0.9, weight_decay=0.01)
    w, m = w0.copy(), np.zeros_like(w0)
    for g in grads:
        opt.apply(tf.constant(g, tf.float32), 0.1)
        m = 0.9 * m - 0.1 * (g + 0.01 * w)
        w = w + m
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)


def test_center_optimizer_sparse_rows_are_lazy():
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(6, 2))
    var = tf.Variable(w0.astype("float32"))
    opt = CenterOptimizer(var, momentum=0.9, weight_decay=0.0)
    g1 = rng.normal(size=(2, 2))
    opt.apply(tf.IndexedSlices(tf.constant(g1, tf.float32), tf.constant([1, 4])), 0.1)
    g2 = rng.normal(size=(1, 2))
    opt.apply(tf.IndexedSlices(tf.constant(g2, tf.float32), tf.constant([4])), 0.1)
    want = w0.copy()
    want[1] += -0.1 * g1[0]  # its momentum is not applied again in step 2 (lazy)
    m4 = -0.1 * g1[1]
    want[4] += m4
    want[4] += 0.9 * m4 - 0.1 * g2[0]
    np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-6)
    untouched = [0, 2, 3, 5]
    np.testing.assert_array_equal(var.numpy()[untouched], w0.astype("float32")[untouched])


def test_center_optimizer_adamw_one_step():
    w0 = np.array([[1.0, -2.0], [0.5, 0.25]])
    g = np.array([[0.1, 0.2], [-0.3, 0.4]])
    var = tf.Variable(w0.astype("float32"))
    opt = CenterOptimizer(var, name="adamw", weight_decay=0.1, weight_decay_mode="decoupled")
    opt.apply(tf.constant(g, tf.float32), 0.01)
    m = 0.1 * g
    v = 0.001 * g**2
    m_hat, v_hat = m / 0.1, v / 0.001
    want = w0 - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8) - 0.01 * 0.1 * w0
    np.testing.assert_allclose(var.numpy(), want, rtol=1e-5)


def test_warmup_schedules_by_hand():
    cases = [
        ("polynomial", 0, 0.0),  # warm-up starts at zero
        ("polynomial", 5, 0.05),  # half-way through a 10-step warm-up
        ("polynomial", 10, 0.1),
        ("polynomial", 55, 0.1 * (1 - 45 / 90) ** 2),
        ("polynomial", 100, 0.0),
        ("cosine", 55, 0.1 * 0.5 * (1 + math.cos(math.pi * 0.5))),
        ("step", 39, 0.1),
        ("step", 40, 0.01),
        ("step", 80, 0.001),
        ("constant", 99, 0.1),
    ]
    for decay, step, want in cases:
        schedule = WarmupDecay(0.1, 100, warmup_steps=10, decay=decay, boundaries=[40, 80])
        assert float(schedule(step)) == pytest.approx(want, abs=1e-7), (decay, step)


def test_schedule_serialises():
    schedule = WarmupDecay(0.2, 50, warmup_steps=5, decay="step", boundaries=[20])
    clone = WarmupDecay.from_config(schedule.get_config())
    assert float(clone(30)) == pytest.approx(float(schedule(30)))
    with pytest.raises(ValueError, match="Received: decay="):
        WarmupDecay(0.1, 10, decay="linear")


def test_intra_term_and_target_cosine(batch):
    """with_target_cosine gives each example's target cosine (for the Intra-Loss term)."""
    emb, centers, labels = batch
    head = _head(centers, 1.0, loss=losses.get("norm_softmax", scale=SCALE))
    _, target = head.per_example_loss(tf.constant(emb, tf.float32), labels, with_target_cosine=True)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    w = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    want = [float(e[i] @ w[c]) for i, c in enumerate(labels)]
    np.testing.assert_allclose(target.numpy(), want, rtol=1e-5, atol=1e-6)


def test_head_without_margin_callable_says_what_to_pass(batch):
    emb, centers, labels = batch
    head = _head(centers, 1.0)
    with pytest.raises(TypeError, match="logits_fn"):
        head.per_example_loss(tf.constant(emb, tf.float32), labels)


def test_config_round_trip_and_same_initial_centers():
    head = PartialFC(50, 8, sample_rate=0.2, seed=4)
    head.build((None, 8))
    clone = PartialFC.from_config(head.get_config())
    clone.build((None, 8))
    assert clone.get_config() == head.get_config()
    np.testing.assert_array_equal(clone.centers.numpy(), head.centers.numpy())
    # Any block of rows draws exactly the rows the whole matrix holds (sharded heads rely on it).
    init = layers.partial_fc.CenterInitializer(seed=4)
    np.testing.assert_array_equal(init.rows(17, 41, 8).numpy(), head.centers.numpy()[17:41])
    big = init.rows(8000, 8300, 3).numpy()  # across the 8192-row chunk boundary
    np.testing.assert_array_equal(big, init((9000, 3)).numpy()[8000:8300])


def test_old_module_still_works_with_a_deprecation_warning(batch):
    emb, centers, labels = batch
    loss = losses.get("cosface", margin=COSFACE_MARGIN, scale=SCALE)
    from keras_arcface.training import partial_fc as old

    with pytest.warns(DeprecationWarning, match="keras_arcface.layers.PartialFC"):
        legacy_class = old.PartialFC
    head = legacy_class(len(centers), centers.shape[1])
    head.build((None, centers.shape[1]))
    head.centers.assign(centers.astype("float32"))
    value = float(tf.reduce_mean(head.per_example_loss(tf.constant(emb, tf.float32), labels, loss)))
    assert value == pytest.approx(oracle_loss(emb, centers, labels), rel=1e-5)
