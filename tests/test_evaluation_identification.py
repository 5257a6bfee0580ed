"""Identification (1:N) tests: hand-built galleries with known ranks and a loop oracle."""

import numpy as np
import pytest

from keras_arcface.evaluation.identification import (
    evaluate_identification,
    identification_metrics,
    search,
    split_gallery_probe,
)


def probes_with_scores(weights):
    """Probes whose cosine to gallery identity j (the unit vector e_j) is weights[j] / |w|."""
    weights = np.asarray(weights, np.float64)
    return weights / np.linalg.norm(weights, axis=1, keepdims=True)


def oracle_identification(probes, probe_labels, gallery, gallery_labels, fpir):
    """Per-probe Python loops: identity score = best image, rank = 1 + #identities above."""
    probes = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    identities = sorted(set(gallery_labels.tolist()))
    ranks, top1, mate_scores = [], [], []
    for probe, label in zip(probes, probe_labels):
        best = {}
        for image, identity in zip(gallery, gallery_labels.tolist()):
            score = float(np.dot(probe.astype(np.float64), image))
            best[identity] = max(best.get(identity, -np.inf), score)
        top1.append(max(best.values()))
        if label in best:
            mate = best[label]
            ranks.append(1 + sum(1 for i in identities if i != label and best[i] > mate))
            mate_scores.append(mate)
        else:
            ranks.append(0)
            mate_scores.append(None)
    ranks, top1 = np.array(ranks), np.array(top1)
    mated = ranks > 0
    nonmated_scores = sorted(top1[~mated], reverse=True)
    allowed = int(np.floor(fpir * len(nonmated_scores) + 1e-9))
    threshold = nonmated_scores[allowed]
    hits = sum(1 for r, s in zip(ranks, mate_scores) if r == 1 and s > threshold)
    return ranks, top1, hits / mated.sum(), threshold


def test_split_gallery_probe_by_identity():
    labels = np.array([5, 5, 5, 7, 9, 9, 7, 7])
    gallery, probes = split_gallery_probe(labels)
    assert gallery.tolist() == [0, 3, 4]  # first image of 5, 7, 9
    assert probes.tolist() == [1, 2, 5, 6, 7]
    gallery, probes = split_gallery_probe(labels, gallery_per_identity=2)
    assert gallery.tolist() == [0, 1, 3, 4, 5, 6]
    assert probes.tolist() == [2, 7]  # identity 9 has only 2 images: enrolled whole


def test_split_open_set_keeps_whole_identities_out():
    labels = np.repeat(np.arange(20), 3)
    gallery, probes = split_gallery_probe(labels, open_set_fraction=0.25, seed=3)
    enrolled = set(labels[gallery].tolist())
    assert len(enrolled) == 15 and len(gallery) == 15
    open_ids = set(range(20)) - enrolled
    for identity in open_ids:  # all 3 images of an open-set identity are probes
        assert np.isin(np.flatnonzero(labels == identity), probes).all()
    assert len(probes) == 15 * 2 + 5 * 3
    again = split_gallery_probe(labels, open_set_fraction=0.25, seed=3)
    assert again[0].tolist() == gallery.tolist(), "the split is deterministic for a seed"


def test_split_string_labels_and_validation():
    gallery, probes = split_gallery_probe(["bob", "amy", "bob", "amy"])
    assert gallery.tolist() == [0, 1] and probes.tolist() == [2, 3]
    with pytest.raises(ValueError, match="Received: gallery_per_identity=0"):
        split_gallery_probe([1, 2], gallery_per_identity=0)
    with pytest.raises(ValueError, match="Received: open_set_fraction=1.0"):
        split_gallery_probe([1, 2], open_set_fraction=1.0)


def test_search_hand_built_gallery():
    gallery = np.eye(4)
    queries = probes_with_scores([[0.1, 0.9, 0.5, 0.0], [0.0, 0.0, 0.2, 1.0]])
    indices, scores = search(queries, gallery, k=3)
    assert indices.tolist() == [[1, 2, 0], [3, 2, 0]]
    assert scores == pytest.approx(
        np.take_along_axis(queries, indices, axis=1).astype(np.float32), abs=1e-6
    )
    indices, _ = search(queries, gallery, k=10)  # k capped at the gallery size
    assert indices.shape == (2, 4) and indices[1].tolist() == [3, 2, 0, 1]  # tie 0/1 by index


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_search_matches_brute_force_loop(chunk_size):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(300, 16))
    queries = rng.normal(size=(25, 16))
    indices, scores = search(queries, gallery, k=5, chunk_size=chunk_size)
    unit_gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    for row, query in enumerate(queries):
        similarities = [float(np.dot(query / np.linalg.norm(query), g)) for g in unit_gallery]
        expected = sorted(range(len(similarities)), key=lambda j: -similarities[j])[:5]
        assert indices[row].tolist() == expected
        assert scores[row] == pytest.approx([similarities[j] for j in expected], abs=1e-5)


def test_identification_hand_built_ranks():
    # Gallery: identities 10..15, one unit vector each. Probe weights set the score order.
    gallery = np.eye(6)
    gallery_labels = np.array([10, 11, 12, 13, 14, 15])
    weights = [
        [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],  # label 10: rank 1
        [0.9, 0.8, 0.1, 0.0, 0.0, 0.0],  # label 11: rank 2
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # label 15: rank 6
        [0.2, 0.3, 0.4, 0.5, 0.9, 0.1],  # label 13: rank 2
        [0.9, 0.1, 0.1, 0.1, 0.1, 0.1],  # label 99: non-mated
    ]
    labels = np.array([10, 11, 15, 13, 99])
    result = identification_metrics(
        probes_with_scores(weights), labels, gallery, gallery_labels, ranks=(1, 2, 5)
    )
    assert result["probe_ranks"].tolist() == [1, 2, 6, 2, 0]
    assert result["rank_1"] == pytest.approx(1 / 4)
    assert result["rank_2"] == pytest.approx(3 / 4)
    assert result["rank_5"] == pytest.approx(3 / 4)
    assert result["cmc"] == pytest.approx([0.25, 0.75, 0.75, 0.75, 0.75])
    assert (result["num_mated"], result["num_nonmated"]) == (4, 1)
    assert result["num_gallery_identities"] == 6


def test_identification_ranks_identities_not_images():
    # Identity 1 has two images, both closer to the probe than identity 0's image: the mate
    # (identity 0) is second among identities, although third among images.
    gallery = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.1, 1.0, 0.0]])
    gallery_labels = np.array([0, 1, 1])
    probe = probes_with_scores([[0.5, 0.9, 0.0]])
    result = identification_metrics(probe, [0], gallery, gallery_labels)
    assert result["probe_ranks"].tolist() == [2]
    indices, _ = search(probe, gallery, k=3)
    assert indices.tolist() == [[2, 1, 0]]


def test_tpir_at_fpir_hand_worked():
    # 10 non-mated probes with top-1 scores 0.91..1.0 (ties none); FPIR 0.1 allows one false
    # alarm, so the threshold is the second highest non-mated score (0.99) and a mated probe
    # counts when it is ranked first with a score above 0.99.
    gallery = np.eye(2)
    nonmated = [[np.cos(a), np.sin(a)] for a in np.arccos(np.linspace(0.91, 1.0, 10))]
    mated_scores = [0.995, 0.999, 0.95, 0.5]
    mated = [[np.cos(a), np.sin(a)] for a in np.arccos(mated_scores)]
    probes = np.array(nonmated + mated)
    labels = np.array(["x"] * 10 + ["a"] * 4)
    gallery_labels = np.array(["a", "b"])
    result = identification_metrics(
        probes, labels, gallery, gallery_labels, fpir_targets=(0.1, 0.5, 0.01)
    )
    at_01, at_05, at_001 = result["tpir_at_fpir"]
    assert at_01["threshold"] == pytest.approx(0.99, abs=1e-6)
    assert at_01["fpir"] == pytest.approx(0.1)
    assert at_01["tpir"] == pytest.approx(2 / 4)  # 0.995 and 0.999
    assert at_05["threshold"] == pytest.approx(0.95, abs=1e-6)
    assert at_05["tpir"] == pytest.approx(2 / 4)  # 0.95 is not above 0.95
    assert at_001["tpir"] is None
    assert "below what the probes can resolve" in at_001["note"]


def test_identification_matches_loop_oracle():
    rng = np.random.default_rng(4)
    centers = rng.normal(size=(40, 24))
    gallery_labels = np.repeat(np.arange(30), 2)  # identities 0..29 enrolled, 2 images each
    gallery = centers[gallery_labels] + 1.3 * rng.normal(size=(60, 24))
    probe_labels = rng.integers(0, 40, size=200)  # 30..39 are not enrolled
    probes = centers[probe_labels] + 1.3 * rng.normal(size=(200, 24))
    result = identification_metrics(
        probes, probe_labels, gallery, gallery_labels, fpir_targets=(0.1,), chunk_size=13
    )
    ranks, top1, tpir, threshold = oracle_identification(
        probes, probe_labels, gallery, gallery_labels, 0.1
    )
    assert result["probe_ranks"].tolist() == ranks.tolist()
    assert result["top1_scores"] == pytest.approx(top1, abs=1e-5)
    mated = ranks > 0
    assert result["rank_1"] == pytest.approx(np.mean(ranks[mated] == 1))
    assert result["rank_5"] == pytest.approx(np.mean(ranks[mated] <= 5))
    assert 0.2 < result["rank_1"] < 0.95, "the structure must leave errors to find"
    entry = result["tpir_at_fpir"][0]
    assert entry["threshold"] == pytest.approx(threshold, abs=1e-5)
    assert entry["tpir"] == pytest.approx(tpir)


def test_closed_set_only_reports_tpir_note():
    gallery = np.eye(3)
    result = identification_metrics(np.eye(3), [0, 1, 2], gallery, [0, 1, 2])
    assert result["rank_1"] == 1.0
    assert all(e["tpir"] is None and "non-mated" in e["note"] for e in result["tpir_at_fpir"])


def test_identification_validation():
    with pytest.raises(ValueError, match="same width"):
        identification_metrics(np.ones((2, 3)), [0, 1], np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="same length"):
        identification_metrics(np.ones((2, 3)), [0], np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="Received: ranks"):
        identification_metrics(np.ones((2, 3)), [0, 1], np.ones((2, 3)), [0, 1], ranks=(0,))
    with pytest.raises(ValueError, match="Received: k=0"):
        search(np.ones((2, 3)), np.ones((2, 3)), k=0)


def test_evaluate_identification_embeds_splits_and_scores():
    rng = np.random.default_rng(0)
    identities = rng.integers(0, 256, size=(12, 6, 6, 3))
    labels = np.repeat(np.arange(12), 4)
    noise = rng.integers(-30, 31, size=(48, 6, 6, 3))
    images = np.clip(identities[labels] + noise, 0, 255).astype(np.uint8)
    projection = rng.normal(size=(108, 32))

    def embed(batch):
        return (batch.reshape(len(batch), -1) - 127.5) @ projection

    result = evaluate_identification(
        embed, images, labels, open_set_fraction=0.25, batch_size=5, progress=False
    )
    assert result["num_gallery"] == 9 and result["num_probes"] == 9 * 3 + 3 * 4
    raw = (images.reshape(48, -1).astype(np.float64) - 127.5) @ projection
    mirrored = (images[:, :, ::-1].reshape(48, -1).astype(np.float64) - 127.5) @ projection
    gallery_idx, probe_idx = split_gallery_probe(labels, open_set_fraction=0.25)
    fused = raw + mirrored
    expected = identification_metrics(
        fused[probe_idx], labels[probe_idx], fused[gallery_idx], labels[gallery_idx]
    )
    assert result["probe_ranks"].tolist() == expected["probe_ranks"].tolist()
    assert result["rank_1"] > 0.5


def test_half_precision_inputs_match_float32():
    rng = np.random.default_rng(2)
    gallery = (50 * rng.normal(size=(200, 32))).astype(np.float16)  # norms ~280: > float16 max^0.5
    probes = (gallery[:40].astype(np.float32) + 10 * rng.normal(size=(40, 32))).astype(np.float16)
    labels = np.arange(200)
    half = identification_metrics(probes, labels[:40], gallery, labels)
    full = identification_metrics(
        probes.astype(np.float32), labels[:40], gallery.astype(np.float32), labels
    )
    assert half["probe_ranks"].tolist() == full["probe_ranks"].tolist()
    assert np.all(np.isfinite(half["top1_scores"]))
