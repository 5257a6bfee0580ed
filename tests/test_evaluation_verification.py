"""Verification protocol tests against an independent float64 oracle written here.

The oracle follows the reference protocol step by step with explicit Python loops over folds
and thresholds (InsightFace's ``calculate_roc`` / ``calculate_val``): contiguous folds,
``np.argmax`` on the training accuracies (first maximum), and for TAR@FAR the SciPy <= 1.8
behaviour of ``interp1d(far_train, thresholds, kind="slinear")``, which built a degree-1
B-spline on the knots ``[x0, x..., xn]`` (SciPy >= 1.9 rejects the duplicate FAR values the
reference feeds it, so the spline is built here directly).
"""

import numpy as np
import pytest

from keras_arcface.evaluation import (
    evaluate_verification,
    fold_bounds,
    format_far,
    pair_distances,
    roc_curve,
    verification_metrics,
)

# ----------------------------------------------------------------------------- the oracle


def oracle_folds(num_pairs, nfolds):
    """scikit-learn KFold(shuffle=False): contiguous, the first n % k folds one longer."""
    folds, start = [], 0
    for k in range(nfolds):
        size = num_pairs // nfolds + (1 if k < num_pairs % nfolds else 0)
        folds.append(np.arange(start, start + size))
        start += size
    return folds


def oracle_distances(emb1, emb2):
    emb1 = np.asarray(emb1, np.float64)
    emb2 = np.asarray(emb2, np.float64)
    emb1 = emb1 / np.linalg.norm(emb1, axis=1, keepdims=True)
    emb2 = emb2 / np.linalg.norm(emb2, axis=1, keepdims=True)
    return np.sum(np.square(emb1 - emb2), axis=1)


def oracle_accuracy(threshold, dist, issame):
    predict = dist < threshold
    tp = np.sum(predict & issame)
    tn = np.sum(~predict & ~issame)
    return float(tp + tn) / dist.size


def oracle_val_far(threshold, dist, issame):
    predict = dist < threshold
    val = float(np.sum(predict & issame)) / float(np.sum(issame))
    far = float(np.sum(predict & ~issame)) / float(np.sum(~issame))
    return val, far


def oracle_slinear(x, y, target):
    """SciPy <= 1.8 ``interp1d(x, y, kind='slinear')(target)``."""
    from scipy.interpolate import BSpline

    order = np.argsort(x, kind="mergesort")
    x, y = np.asarray(x)[order], np.asarray(y)[order]
    return float(BSpline.construct_fast(np.r_[x[0], x, x[-1]], y, 1)(target))


def oracle_protocol(emb1, emb2, issame, nfolds=10, far_targets=(1e-3,)):
    """Accuracy per fold, and for every FAR target the reference's TAR, its std and FAR."""
    dist = oracle_distances(emb1, emb2)
    issame = np.asarray(issame, bool)
    thresholds = np.arange(0, 4, 0.01)
    fine = np.arange(0, 4, 0.001)
    folds = oracle_folds(len(dist), nfolds)
    accuracies, best_thresholds = [], []
    vals = {t: [] for t in far_targets}
    fars = {t: [] for t in far_targets}
    for test in folds:
        train = np.setdiff1d(np.arange(len(dist)), test)
        acc_train = np.zeros(len(thresholds))
        for i, threshold in enumerate(thresholds):
            acc_train[i] = oracle_accuracy(threshold, dist[train], issame[train])
        best = int(np.argmax(acc_train))
        best_thresholds.append(thresholds[best])
        accuracies.append(oracle_accuracy(thresholds[best], dist[test], issame[test]))
        if not far_targets:
            continue
        far_train = np.zeros(len(fine))
        for i, threshold in enumerate(fine):
            _, far_train[i] = oracle_val_far(threshold, dist[train], issame[train])
        for target in far_targets:
            if np.max(far_train) >= target:
                threshold = oracle_slinear(far_train, fine, target)
            else:
                threshold = 0.0
            val, far = oracle_val_far(threshold, dist[test], issame[test])
            vals[target].append(val)
            fars[target].append(far)
    return {
        "fold_accuracies": accuracies,
        "fold_thresholds": best_thresholds,
        "accuracy": np.mean(accuracies),
        "accuracy_std": np.std(accuracies),
        "tar": {t: np.mean(v) for t, v in vals.items()},
        "tar_std": {t: np.std(v) for t, v in vals.items()},
        "far": {t: np.mean(v) for t, v in fars.items()},
    }


def structured_pairs(num_pairs, dim=32, noise=0.9, seed=0, genuine_fraction=0.5):
    """Identity vectors plus noise: genuine pairs share an identity, impostors do not."""
    rng = np.random.default_rng(seed)
    issame = rng.random(num_pairs) < genuine_fraction
    identities = rng.normal(size=(num_pairs, dim))
    emb1 = identities + noise * rng.normal(size=(num_pairs, dim))
    other = np.where(issame[:, None], identities, rng.normal(size=(num_pairs, dim)))
    # A spread of noise levels makes the genuine/impostor distributions overlap.
    scale = rng.uniform(0.3, 1.6, size=(num_pairs, 1))
    emb2 = other + noise * scale * rng.normal(size=(num_pairs, dim))
    return emb1.astype(np.float32), emb2.astype(np.float32), issame


def tar_entry(result, target):
    (entry,) = [e for e in result["tar_at_far"] if e["far_target"] == target]
    return entry


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "num_pairs,nfolds,seed",
    [(1200, 10, 0), (1003, 10, 1), (757, 7, 2)],
)
def test_protocol_matches_oracle(num_pairs, nfolds, seed):
    emb1, emb2, issame = structured_pairs(num_pairs, seed=seed)
    expected = oracle_protocol(emb1, emb2, issame, nfolds=nfolds, far_targets=(1e-2,))
    result = verification_metrics(emb1, emb2, issame, nfolds=nfolds, far_targets=(1e-2, 1e-1))

    assert result["fold_accuracies"] == expected["fold_accuracies"]
    assert result["fold_thresholds"] == expected["fold_thresholds"]
    assert result["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert result["accuracy_std"] == pytest.approx(expected["accuracy_std"], abs=1e-12)
    assert result["best_threshold"] == pytest.approx(np.mean(expected["fold_thresholds"]))
    assert 0.6 < result["accuracy"] < 0.99, "the structure must leave errors to find"
    entry = tar_entry(result, 1e-2)
    assert entry["note"] is None
    assert entry["tar"] == pytest.approx(expected["tar"][1e-2], abs=1e-9)
    assert entry["tar_std"] == pytest.approx(expected["tar_std"][1e-2], abs=1e-9)
    assert entry["far"] == pytest.approx(expected["far"][1e-2], abs=1e-9)
    assert result["num_pairs"] == num_pairs
    assert result["num_genuine"] == int(issame.sum())
    assert result["nfolds"] == nfolds


def test_tar_at_far_matches_oracle_at_several_targets():
    emb1, emb2, issame = structured_pairs(2500, seed=5, noise=1.1)
    result = verification_metrics(emb1, emb2, issame, far_targets=(1e-1, 1e-2, 1e-3))
    expected = oracle_protocol(emb1, emb2, issame, far_targets=(1e-1, 1e-2, 1e-3))
    for target in (1e-1, 1e-2, 1e-3):
        entry = tar_entry(result, target)
        assert entry["tar"] == pytest.approx(expected["tar"][target], abs=1e-9), target
        assert entry["far"] == pytest.approx(expected["far"][target], abs=1e-9), target
    tars = [tar_entry(result, t)["tar"] for t in (1e-1, 1e-2, 1e-3)]
    assert tars[0] > tars[1] > tars[2], "TAR must fall as the FAR target tightens"


def test_far_below_resolution_is_reported_explicitly():
    emb1, emb2, issame = structured_pairs(1000, seed=3)
    result = verification_metrics(emb1, emb2, issame, far_targets=(1e-2, 1e-3, 1e-4))
    train_impostors = min(
        int((~issame).sum()) - int((~issame[b:e]).sum()) for b, e in fold_bounds(1000, 10)
    )
    assert 100 < train_impostors < 1000  # so 1e-2 is resolvable, 1e-3 and 1e-4 are not
    assert tar_entry(result, 1e-2)["tar"] is not None
    for target in (1e-3, 1e-4):
        entry = tar_entry(result, target)
        assert entry["tar"] is None and entry["far"] is None
        assert "below what the pairs can resolve" in entry["note"]
        assert str(train_impostors) in entry["note"]


def test_perfectly_separable_pairs_score_one():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 64))
    issame = np.arange(600) % 3 != 0
    other = np.where(
        issame[:, None], base + 0.05 * rng.normal(size=base.shape), rng.normal(size=base.shape)
    )
    result = verification_metrics(base, other, issame)
    assert result["accuracy"] == 1.0
    assert result["accuracy_std"] == 0.0
    assert result["auc"] == 1.0
    assert result["eer"] == 0.0
    assert tar_entry(result, 1e-1)["tar"] == 1.0


def test_far_never_reached_on_the_grid_falls_back_as_the_reference():
    # Impostors exactly opposite (distance 4) are rejected by every threshold below 4, so
    # no threshold reaches FAR 1e-1; the reference then uses threshold 0 (TAR 0). That value
    # is kept for parity and flagged.
    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 64))
    issame = np.arange(600) % 3 != 0
    other = np.where(issame[:, None], base, -base)
    result = verification_metrics(base, other, issame)
    entry = tar_entry(result, 1e-1)
    expected = oracle_protocol(base, other, issame, far_targets=(1e-1,))
    assert entry["tar"] == expected["tar"][1e-1] == 0.0
    assert entry["threshold"] == 0.0
    assert "never reached" in entry["note"]
    assert result["accuracy"] == 1.0


def test_unrelated_embeddings_score_about_half():
    rng = np.random.default_rng(1)
    emb1, emb2 = rng.normal(size=(2, 4000, 128))
    issame = rng.random(4000) < 0.5
    result = verification_metrics(emb1, emb2, issame)
    assert abs(result["accuracy"] - 0.5) < 0.04
    assert abs(result["auc"] - 0.5) < 0.04
    assert abs(result["eer"] - 0.5) < 0.04


def unit_pairs_at(distances):
    """Unit 2-D vectors whose squared distance is ``distances`` (2 - 2 cos a)."""
    angles = np.arccos(1 - np.asarray(distances, np.float64) / 2)
    emb1 = np.tile([1.0, 0.0], (len(angles), 1))
    emb2 = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return emb1, emb2


def test_ties_take_the_first_maximum_as_the_reference():
    # 10 folds of 10 pairs (5 genuine, 5 impostor). Genuine pairs sit at 0.205 except one at
    # 0.505 in fold 3; impostors at 1.505. Every threshold between the largest training
    # genuine distance and 1.505 scores 100 % on the training folds; the FIRST maximum is the
    # smallest of them, so fold 3 (whose 0.505 pair is unseen in training) gets 0.21 and
    # misses that pair, while a last-maximum rule (1.50) would not.
    distances = np.tile([0.205] * 5 + [1.505] * 5, 10)
    distances[30] = 0.505
    issame = np.tile([True] * 5 + [False] * 5, 10)
    emb1, emb2 = unit_pairs_at(distances)
    result = verification_metrics(emb1, emb2, issame)
    grid = np.arange(0, 4, 0.01)
    expected_thresholds = [grid[51]] * 10
    expected_thresholds[3] = grid[21]
    assert result["fold_thresholds"] == expected_thresholds
    assert result["fold_accuracies"] == [1.0] * 3 + [0.9] + [1.0] * 6
    assert result["accuracy"] == pytest.approx(0.99, abs=1e-15)
    expected = oracle_protocol(emb1, emb2, issame, far_targets=())
    assert result["fold_accuracies"] == expected["fold_accuracies"]


def test_roc_auc_and_eer_hand_worked():
    # genuine 0.1, 0.2, 0.5; impostor 0.3, 0.4 (pairs accepted when distance <= threshold).
    distances = np.array([0.1, 0.3, 0.2, 0.4, 0.5])
    issame = np.array([True, False, True, False, True])
    fpr, tpr, thresholds = roc_curve(distances, issame)
    assert fpr.tolist() == [0, 0, 0, 0.5, 1, 1]
    assert tpr == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 1])
    assert thresholds[1:].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    emb1, emb2 = unit_pairs_at(distances)
    result = verification_metrics(emb1, emb2, issame, nfolds=2, far_targets=())
    # AUC = P(genuine distance < impostor distance) = 4 of 6 pairs.
    assert result["auc"] == pytest.approx(4 / 6)
    # FRR 1/3 at FAR 0 (<= 0.2), then FAR 0.5 at FRR 1/3 (<= 0.3): the FRR - FAR line
    # crosses zero two thirds of the way, at FAR = FRR = 1/3.
    assert result["eer"] == pytest.approx(1 / 3)
    assert result["eer_threshold"] == pytest.approx(0.2 + 2 / 3 * 0.1)


def test_eer_on_an_exact_crossing():
    distances = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8])
    issame = np.array([True] * 4 + [False] * 4)
    emb1, emb2 = unit_pairs_at(distances)
    result = verification_metrics(emb1, emb2, issame, nfolds=2, far_targets=())
    assert result["eer"] == pytest.approx(0.25)
    assert result["eer_threshold"] == pytest.approx(0.4)
    assert result["auc"] == pytest.approx(14 / 16)  # 0.6 loses only to 0.4 and 0.5


def test_auc_matches_pairwise_count_oracle():
    emb1, emb2, issame = structured_pairs(400, seed=9)
    dist = oracle_distances(emb1, emb2)
    wins = 0.0
    for g in dist[issame]:
        for i in dist[~issame]:
            wins += 1.0 if g < i else (0.5 if g == i else 0.0)
    expected = wins / (issame.sum() * (~issame).sum())
    result = verification_metrics(emb1, emb2, issame)
    assert result["auc"] == pytest.approx(expected, abs=1e-12)


def test_fold_bounds_are_kfold_contiguous():
    assert fold_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert fold_bounds(6000, 10) == [(600 * k, 600 * (k + 1)) for k in range(10)]
    bounds = fold_bounds(1003, 10)
    assert [e - b for b, e in bounds] == [101, 101, 101] + [100] * 7
    for (b, e), expected in zip(bounds, oracle_folds(1003, 10)):
        assert list(range(b, e)) == expected.tolist()


def test_pair_distances_normalize_first():
    assert pair_distances([[3.0, 4.0]], [[6.0, 8.0]]).tolist() == [0.0]
    assert pair_distances([[1.0, 0.0]], [[-5.0, 0.0]]).tolist() == [4.0]


def test_format_far():
    assert [format_far(f) for f in (1e-1, 1e-2, 1e-3, 1e-4, 5e-3)] == [
        "1e-1",
        "1e-2",
        "1e-3",
        "1e-4",
        "5e-3",
    ]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"embeddings2": np.ones((10, 3))}, "same shape"),
        ({"issame": np.arange(19) % 2 == 0}, "one entry per pair"),
        ({"issame": np.full((20, 1), True)}, "one entry per pair"),
        ({"issame": np.arange(20) % 3}, "booleans"),
        ({"nfolds": 30}, "nfolds"),
        ({"far_targets": (0.0,)}, "far_targets"),
        ({"thresholds": [0.5, 0.1]}, "strictly increasing"),
    ],
)
def test_invalid_arguments_raise_with_received(kwargs, match):
    emb1, emb2, issame = structured_pairs(20)
    arguments = {"embeddings1": emb1, "embeddings2": emb2, "issame": issame, **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        verification_metrics(
            arguments.pop("embeddings1"),
            arguments.pop("embeddings2"),
            arguments.pop("issame"),
            **arguments,
        )
    assert "Received:" in str(info.value)


def test_single_class_and_non_finite_inputs_raise():
    emb1, emb2, _ = structured_pairs(20)
    with pytest.raises(ValueError, match="both genuine"):
        verification_metrics(emb1, emb2, np.ones(20, bool))
    emb1[3, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        verification_metrics(emb1, emb2, np.arange(20) % 2 == 0)


# ----------------------------------------------------------------------------- embedding


def linear_embedder(dim=16, seed=0, height=8, width=8):
    projection = np.random.default_rng(seed).normal(size=(height * width * 3, dim))
    calls = []

    def embed(batch):
        assert batch.dtype == np.float32 and batch.ndim == 4
        calls.append(len(batch))
        return batch.reshape(len(batch), -1).astype(np.float64) @ projection / 255.0

    return embed, projection, calls


def random_pair_images(num_pairs, seed=0, size=8):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(2 * num_pairs, size, size, 3), dtype=np.uint8)
    # Genuine pairs: the second image is the first with a little pixel noise.
    issame = np.arange(num_pairs) % 2 == 0
    noisy = images[0::2].astype(int) + rng.integers(-20, 21, size=images[0::2].shape)
    images[1::2][issame] = np.clip(noisy, 0, 255).astype(np.uint8)[issame]
    return images, issame


def test_evaluate_verification_flip_fusion_matches_hand_fused():
    images, issame = random_pair_images(40)
    embed, projection, calls = linear_embedder()
    result = evaluate_verification(embed, images, issame, batch_size=16, progress=False)

    raw = []
    mirrored = []
    for image in images.astype(np.float64):
        raw.append(image.reshape(-1) @ projection / 255.0)
        mirrored.append(image[:, ::-1, :].reshape(-1) @ projection / 255.0)
    raw, mirrored = np.array(raw), np.array(mirrored)
    fused = raw + mirrored
    expected = verification_metrics(fused[0::2], fused[1::2], issame)
    assert result["fold_accuracies"] == expected["fold_accuracies"]
    assert result["auc"] == pytest.approx(expected["auc"], abs=1e-12)
    norms = np.r_[np.linalg.norm(raw, axis=1), np.linalg.norm(mirrored, axis=1)]
    assert result["mean_norm"] == pytest.approx(norms.mean(), rel=1e-9)
    assert result["flip"] is True and result["embedding_dim"] == 16
    assert calls == [16] * 10, "80 images in batches of 16, originals then mirrors"


def test_evaluate_verification_without_flip_and_any_batch_size():
    images, issame = random_pair_images(30, seed=1)
    embed, projection, _ = linear_embedder(seed=1)
    raw = images.reshape(len(images), -1).astype(np.float64) @ projection / 255.0
    expected = verification_metrics(raw[0::2], raw[1::2], issame)
    for batch_size, pixels in ((7, images), (64, images.astype(np.float32))):
        result = evaluate_verification(
            embed, pixels, issame, batch_size=batch_size, flip=False, progress=False
        )
        assert result["fold_accuracies"] == expected["fold_accuracies"]
        assert result["mean_norm"] == pytest.approx(np.linalg.norm(raw, axis=1).mean())
        assert result["flip"] is False


def test_evaluate_verification_rejects_bad_inputs():
    images, issame = random_pair_images(10)
    embed, _, _ = linear_embedder()
    with pytest.raises(ValueError, match="two images per pair"):
        evaluate_verification(embed, images[:-2], issame, progress=False)
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        evaluate_verification(embed, images[..., 0], issame, progress=False)
    with pytest.raises(ValueError, match="one embedding row per image"):
        evaluate_verification(lambda x: x[:1, 0, 0], images, issame, progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_verification(
            lambda x: np.full((len(x), 4), np.nan), images, issame, progress=False
        )


def test_a_distance_equal_to_a_threshold_is_rejected():
    # Orthogonal unit vectors are exactly 2.0 apart, which is exactly the grid's 201st value:
    # the reference accepts only distance < threshold, so the first threshold accepting the
    # genuine pairs is 2.01, not 2.0.
    grid = np.arange(0, 4, 0.01)
    assert grid[200] == 2.0
    issame = np.arange(40) % 2 == 0
    emb1 = np.tile([1.0, 0.0], (40, 1))
    emb2 = np.where(issame[:, None], [0.0, 1.0], [-1.0, 0.0])  # genuine 2.0, impostor 4.0
    assert pair_distances(emb1, emb2).tolist() == [2.0, 4.0] * 20
    result = verification_metrics(emb1, emb2, issame, far_targets=())
    assert result["fold_thresholds"] == [grid[201]] * 10
    assert result["accuracy"] == 1.0
    expected = oracle_protocol(emb1, emb2, issame, far_targets=())
    assert result["fold_thresholds"] == expected["fold_thresholds"]


def test_tar_when_the_far_target_is_hit_exactly():
    # 100 impostors per fold -> 900 per training set, so FAR 1e-1 = 90/900 and 1e-2 = 9/900
    # are exact training FAR values: the reference then takes the LAST threshold with that FAR.
    rng = np.random.default_rng(11)
    issame = np.arange(2000) % 2 == 0
    # Impostor distances 0.002 apart (twice the grid step): the training FAR passes through
    # every k/900, so no count is skipped.
    distances = rng.uniform(0.0, 1.5, 2000)
    distances[~issame] = rng.permutation(np.linspace(0.5005, 2.4985, 1000))
    emb1, emb2 = unit_pairs_at(distances)
    dist = oracle_distances(emb1, emb2)
    fine = np.arange(0, 4, 0.001)
    train = np.arange(200, 2000)
    fars = [np.sum((dist[train] < t) & ~issame[train]) / 900 for t in fine]
    assert 0.1 in fars and 0.01 in fars, "the construction must hit the targets exactly"
    result = verification_metrics(emb1, emb2, issame, far_targets=(1e-1, 1e-2))
    expected = oracle_protocol(emb1, emb2, issame, far_targets=(1e-1, 1e-2))
    for target in (1e-1, 1e-2):
        entry = tar_entry(result, target)
        assert entry["tar"] == pytest.approx(expected["tar"][target], abs=1e-12)
        assert entry["far"] == pytest.approx(expected["far"][target], abs=1e-12)


def test_half_precision_embeddings_are_evaluated_in_float64():
    # A mixed_float16 model returns float16 embeddings; squaring float16 differences loses
    # digits (and overflows past 256), so the protocol must widen first.
    emb1, emb2, issame = structured_pairs(600, seed=4)
    emb1_16, emb2_16 = (100 * emb1).astype(np.float16), (100 * emb2).astype(np.float16)
    result = verification_metrics(emb1_16, emb2_16, issame)
    wide = verification_metrics(emb1_16.astype(np.float64), emb2_16.astype(np.float64), issame)
    assert result["fold_accuracies"] == wide["fold_accuracies"]
    assert result["distances"].dtype == np.float64
    expected = oracle_distances(emb1_16, emb2_16)
    assert result["distances"] == pytest.approx(expected, abs=1e-12)
