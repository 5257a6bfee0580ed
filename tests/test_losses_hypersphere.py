"""The paper's section 2.3 losses (Intra, Inter, angular Triplet) against float64 loop oracles."""

import math
import os
import re

import keras
import numpy as np
import pytest
from keras import ops
from loss_oracles import (
    angle,
    arcface_target,
    assert_close,
    finite_difference,
    intra,
    margin_loss,
    value_and_grad,
)

from keras_arcface.layers import NormDense
from keras_arcface.losses import (
    ArcFaceLoss,
    InterClassRegularizer,
    InterLoss,
    IntraLoss,
    NormSoftmaxLoss,
    TripletLoss,
    inter_class_angle,
)

agnostic = pytest.mark.backend_agnostic
DOCS = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "losses.md")


def unit(v):
    return np.asarray(v, np.float64) / np.linalg.norm(v)


def oracle_inter(kernel, sub_centers=1):
    """Mean angle / pi over ordered pairs of rows (centers) owned by different classes."""
    kernel = np.asarray(kernel, np.float64)
    total, count = 0.0, 0
    for a in range(kernel.shape[0]):
        for b in range(kernel.shape[0]):
            if a // sub_centers != b // sub_centers:
                total += angle(unit(kernel[a]) @ unit(kernel[b]))
                count += 1
    return total / count / math.pi


def oracle_triplet(labels, embeddings, margin, mining):
    """Angular triplet loss by loops over anchors (batch-hard) or anchor-positive pairs."""
    x = [unit(e) for e in np.asarray(embeddings, np.float64)]
    n = len(x)
    theta = [[angle(x[a] @ x[b]) for b in range(n)] for a in range(n)]
    terms = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [q for q in range(n) if labels[q] != labels[a]]
        if not pos or not neg:
            continue
        if mining == "batch_hard":
            hp, hn = max(theta[a][p] for p in pos), min(theta[a][q] for q in neg)
            terms.append(max(hp - hn + margin, 0.0))
            continue
        for p in pos:
            harder = [theta[a][q] for q in neg if theta[a][q] > theta[a][p]]
            chosen = min(harder) if harder else max(theta[a][q] for q in neg)
            terms.append(max(theta[a][p] - chosen + margin, 0.0))
    return sum(terms) / len(terms) if terms else 0.0


def random_cosines(seed, batch=6, classes=8):
    rng = np.random.default_rng(seed)
    cosine = rng.uniform(-0.95, 0.95, (batch, classes)).astype(np.float32)
    return rng.integers(0, classes, batch), cosine


def triplet_batch(seed, identities=3, per_identity=3, dim=5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(identities, dim))
    labels = np.repeat(np.arange(identities), per_identity)
    x = centers[labels] + 0.8 * rng.normal(size=(len(labels), dim))
    return labels, x.astype(np.float32)


@agnostic
def test_intra_loss_value_and_gradient():
    labels, cosine = random_cosines(0)
    value, grad = value_and_grad(lambda c: IntraLoss()(labels, c), cosine)
    assert_close(value, intra(labels, cosine), rtol=1e-5)
    assert_close(grad, finite_difference(lambda c: intra(labels, c), cosine), rtol=1e-5)
    edges = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
    value, grad = value_and_grad(lambda c: IntraLoss()(np.array([0, 0]), c), edges)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert float(value) == pytest.approx(0.5, abs=1e-3)  # angles 0 and pi


@agnostic
@pytest.mark.parametrize("loss_cls", [ArcFaceLoss, NormSoftmaxLoss])
def test_intra_weight_adds_the_intra_term(loss_cls):
    # ArcFace+Intra and NS+Intra rows: CE + weight * mean(theta_y) / pi.
    labels, cosine = random_cosines(1)
    target = arcface_target if loss_cls is ArcFaceLoss else (lambda c: c)
    loss = loss_cls(scale=16.0, intra_weight=0.7)
    value, grad = value_and_grad(lambda c: loss(labels, c), cosine)
    assert_close(value, margin_loss(labels, cosine, target, 16.0, intra_weight=0.7), rtol=1e-5)
    expected = finite_difference(
        lambda c: margin_loss(labels, c, target, 16.0, intra_weight=0.7), cosine
    )
    assert_close(grad, expected, rtol=1e-5)


@agnostic
def test_inter_class_angle_value_and_gradient():
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(6, 4)).astype(np.float32)
    for sub_centers in (1, 2, 3):
        value, grad = value_and_grad(lambda k, s=sub_centers: inter_class_angle(k, s), kernel)
        assert_close(value, oracle_inter(kernel, sub_centers), rtol=1e-5)
        expected = finite_difference(lambda k, s=sub_centers: oracle_inter(k, s), kernel)
        assert_close(grad, expected, rtol=1e-4)
    assert float(InterLoss()(kernel)) == pytest.approx(-oracle_inter(kernel), rel=1e-5)
    # orthogonal centers: every angle pi/2; identical centers stay finite
    assert float(inter_class_angle(np.eye(3, dtype=np.float32))) == pytest.approx(0.5, rel=1e-6)
    _, grad = value_and_grad(lambda k: inter_class_angle(k), np.ones((4, 3), np.float32))
    assert np.all(np.isfinite(grad))


@agnostic
def test_inter_class_regularizer_on_norm_dense_spreads_centers():
    head = NormDense(6, kernel_regularizer=InterClassRegularizer(2.0))
    head.build((None, 3))
    kernel = ops.convert_to_numpy(head.kernel)
    head(np.zeros((1, 3), np.float32))
    assert len(head.losses) == 1
    assert float(head.losses[0]) == pytest.approx(-2.0 * oracle_inter(kernel), rel=1e-5)
    # gradient descent on the regulariser alone enlarges the mean angle
    reg = InterClassRegularizer(1.0)
    k = kernel.astype(np.float32)
    before = oracle_inter(k)
    for _ in range(20):
        _, grad = value_and_grad(reg, k)
        k = k - 0.5 * grad
    assert oracle_inter(k) > before + 0.01
    config = reg.get_config()
    assert InterClassRegularizer.from_config(config).get_config() == config
    restored = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(restored, InterClassRegularizer)


@agnostic
@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_triplet_value_and_gradient(mining):
    loss = TripletLoss(margin=0.35, mining=mining)
    for seed in (3, 4):
        labels, x = triplet_batch(seed)
        value, grad = value_and_grad(lambda e, labels=labels: loss(labels, e), x)
        expected = oracle_triplet(labels, x, 0.35, mining)
        assert expected > 0  # the batch is hard enough to test something
        assert_close(value, expected, rtol=1e-5)
        fd = finite_difference(lambda e, labels=labels: oracle_triplet(labels, e, 0.35, mining), x)
        assert_close(grad, fd, rtol=1e-4)


@agnostic
def test_triplet_edge_batches():
    x = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)
    for mining in ("batch_hard", "semi_hard"):
        loss = TripletLoss(mining=mining)
        assert float(loss(np.array([0, 1, 2, 3]), x)) == 0.0  # no positives
        assert float(loss(np.array([1, 1, 1, 1]), x)) == 0.0  # no negatives
        same = np.tile(x[:1], (4, 1))  # identical embeddings: angles at the sine floor
        value, grad = value_and_grad(lambda e, loss=loss: loss(np.array([0, 0, 1, 1]), e), same)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        assert float(value) == pytest.approx(0.35, abs=1e-3)
    # a well-separated batch has zero loss
    centers = np.eye(3, dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert float(TripletLoss()(labels, centers[labels] * 3.0)) == pytest.approx(0.0, abs=1e-6)


@agnostic
def test_hypersphere_config_and_validation():
    for loss in (TripletLoss(0.2, "semi_hard"), IntraLoss()):
        config = loss.get_config()
        assert type(loss).from_config(config).get_config() == config
    assert InterLoss.from_config(InterLoss(sub_centers=2).get_config()).sub_centers == 2
    for factory, message in [
        (lambda: TripletLoss(mining="hardest"), "Received: mining='hardest'"),
        (lambda: TripletLoss(margin=-1.0), "Received: margin=-1.0"),
        (lambda: InterClassRegularizer(-0.5), "Received: weight=-0.5"),
        (lambda: InterLoss(sub_centers=0), "Received: sub_centers=0"),
    ]:
        with pytest.raises((ValueError, TypeError), match=message):
            factory()


@agnostic
def test_hypersphere_losses_under_low_precision():
    labels, x = triplet_batch(6)
    for dtype in ("float16", "bfloat16"):
        low = ops.cast(ops.convert_to_tensor(x), dtype)
        rounded = np.asarray(ops.convert_to_numpy(ops.cast(low, "float32")), np.float64)
        value = TripletLoss(0.35)(labels, low)
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        assert_close(value, oracle_triplet(labels, rounded, 0.35, "batch_hard"), rtol=1e-2)
    labels, cosine = random_cosines(7)
    value = IntraLoss()(labels, ops.cast(ops.convert_to_tensor(cosine), "float16"))
    assert_close(value, intra(labels, cosine.astype(np.float16)), rtol=1e-2)
    kernel = np.random.default_rng(8).normal(size=(5, 4))
    value = inter_class_angle(ops.cast(ops.convert_to_tensor(kernel), "bfloat16"))
    assert_close(value, oracle_inter(kernel), rtol=1e-2)


@agnostic
def test_hypersphere_losses_save_and_reload(tmp_path):
    inputs = keras.Input((5,))
    embeddings = keras.layers.Dense(4, name="embeddings")(inputs)
    head = NormDense(3, kernel_regularizer=InterClassRegularizer(0.5), name="cosines")
    model = keras.Model(inputs, {"cosines": head(embeddings), "embeddings": embeddings})
    model.compile(
        optimizer="sgd",
        loss={"cosines": IntraLoss(), "embeddings": TripletLoss(0.3, "semi_hard")},
    )
    labels, x = triplet_batch(9, identities=3, per_identity=2)
    before = model.evaluate(x, {"cosines": labels, "embeddings": labels}, verbose=0)
    path = str(tmp_path / "hypersphere.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    after = reloaded.evaluate(x, {"cosines": labels, "embeddings": labels}, verbose=0)
    np.testing.assert_allclose(after, before, rtol=1e-5)
    regularizer = reloaded.get_layer("cosines").kernel_regularizer
    assert isinstance(regularizer, InterClassRegularizer) and regularizer.weight == 0.5


def docs_blocks():
    with open(DOCS, encoding="utf-8") as handle:
        text = handle.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow  # 13 small models; TensorFlow only to keep the JAX job short
def test_docs_recipes_run_and_save(tmp_path, monkeypatch):
    # docs/losses.md builds every paper row with a tiny model; run its code as written.
    monkeypatch.chdir(tmp_path)
    namespace = {}
    blocks = docs_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        exec(compile(block, DOCS, "exec"), namespace)  # noqa: S102
    rows = namespace["rows"]
    for name in ("ArcFace+Intra", "ArcFace+Inter", "ArcFace+Triplet", "NS+Intra+Inter"):
        assert name in rows, name
    for name, history in rows.items():
        losses = history.history["loss"]
        assert all(np.isfinite(losses)), name
    for path in tmp_path.glob("*.keras"):
        keras.saving.load_model(str(path))
