"""Tests of keras_arcface.paper: figures, toy experiment, loss table and the CLI.

Numbers are checked against hand-worked values and float64 formulas written here,
never against the code under test.
"""

import json
import math

import numpy as np
import pytest

from keras_arcface import cli
from keras_arcface.paper import figures, loss_table, toy_experiment, trainer


def _curves(theta):
    return figures.target_logit_curves(theta)[1]


# ----------------------------------------------------------------------------- target logits


def test_softmax_and_norm_softmax_curves_are_cos_theta():
    theta = np.linspace(0.0, 180.0, 37)
    specs = (figures.CURVE_LOSSES[0], figures.MARGIN_LOSSES[1])
    _, curves = figures.target_logit_curves(theta, specs)
    expected = np.cos(np.radians(theta))
    np.testing.assert_allclose(curves["Softmax"], expected, atol=1e-6)
    np.testing.assert_allclose(curves["Norm-Softmax"], expected, atol=1e-6)


def test_target_logits_at_theta_zero():
    curves = _curves([0.0])
    # The package floors sin(theta) at sqrt(1e-7) (finite gradients at cos = 1), which
    # moves ArcFace's value at theta = 0 by sin(0.5) * 3.2e-4 = 1.5e-4 below cos(0.5).
    assert curves["ArcFace (m=0.5)"][0] == pytest.approx(math.cos(0.5), abs=3e-4)
    assert curves["CosFace (m=0.35)"][0] == pytest.approx(1.0 - 0.35, abs=1e-6)
    assert curves["Softmax"][0] == pytest.approx(1.0, abs=1e-6)
    assert curves["SphereFace (m=1.35)"][0] == pytest.approx(1.0, abs=1e-3)
    assert curves["CM1 (1, 0.3, 0.2)"][0] == pytest.approx(math.cos(0.3) - 0.2, abs=3e-4)
    assert curves["CM2 (0.9, 0.4, 0.15)"][0] == pytest.approx(math.cos(0.4) - 0.15, abs=3e-4)


def test_target_logits_match_hand_worked_formulas_inside_zero_to_pi():
    theta = np.array([20.0, 45.0, 60.0, 90.0, 120.0])
    t = np.radians(theta)
    curves = _curves(theta)
    expected = {
        "ArcFace (m=0.5)": np.cos(t + 0.5),
        "CosFace (m=0.35)": np.cos(t) - 0.35,
        "SphereFace (m=1.35)": np.cos(1.35 * t),
        "CM1 (1, 0.3, 0.2)": np.cos(t + 0.3) - 0.2,
        "CM2 (0.9, 0.4, 0.15)": np.cos(0.9 * t + 0.4) - 0.15,
    }
    for label, values in expected.items():
        np.testing.assert_allclose(curves[label], values, atol=2e-5, err_msg=label)
    # Two values worked by hand: cos(60 deg + 0.5 rad) and cos(90 deg + 0.3) - 0.2.
    assert curves["ArcFace (m=0.5)"][2] == pytest.approx(0.023604, abs=1e-5)
    assert curves["CM1 (1, 0.3, 0.2)"][3] == pytest.approx(-0.495520, abs=1e-5)


def test_target_logit_curves_decrease():
    theta = np.linspace(0.0, 180.0, 721)
    for label, curve in _curves(theta).items():
        # Strictly decreasing where every margin's angle stays in [0, pi] (theta <= 130 deg),
        # as the paper draws them, and never increasing over the whole range (the package's
        # fallbacks beyond pi are monotone).
        inside = theta <= 130.0
        assert np.all(np.diff(curve[inside]) < 0), label
        assert np.all(np.diff(curve) <= 1e-6), label


def test_margin_losses_sit_below_softmax_for_typical_angles():
    # Fig. 4(b): in the range where training angles live, every margin lowers the target logit.
    theta = np.linspace(20.0, 100.0, 81)
    curves = _curves(theta)
    for label, curve in curves.items():
        if label != "Softmax":
            assert np.all(curve < curves["Softmax"]), label


# ----------------------------------------------------------------------------- decision margins


def test_binary_decision_boundaries_hand_worked():
    _, boundary = figures.decision_margins([30.0, 60.0, 90.0])
    np.testing.assert_allclose(boundary["Softmax"], [30.0, 60.0, 90.0], atol=1e-3)
    np.testing.assert_allclose(boundary["Norm-Softmax"], [30.0, 60.0, 90.0], atol=1e-3)
    # ArcFace: theta2 = theta1 + 0.5 rad = theta1 + 28.6479 deg, a constant angular margin.
    np.testing.assert_allclose(boundary["ArcFace (m=0.5)"], [58.6479, 88.6479, 118.6479], atol=2e-3)
    # SphereFace: theta2 = 1.35 * theta1.
    np.testing.assert_allclose(boundary["SphereFace (m=1.35)"], [40.5, 81.0, 121.5], atol=2e-3)
    # CosFace: theta2 = arccos(cos(theta1) - 0.35); cos 60 = 0.5 -> arccos(0.15) = 81.3731 deg,
    # cos 90 = 0 -> arccos(-0.35) = 110.4873 deg.
    assert boundary["CosFace (m=0.35)"][1] == pytest.approx(81.3731, abs=2e-3)
    assert boundary["CosFace (m=0.35)"][2] == pytest.approx(110.4873, abs=2e-3)


def test_margin_summary_is_constant_for_arcface_only():
    summary = figures.margin_summary((30.0, 60.0, 90.0))
    assert set(summary["ArcFace (m=0.5)"].values()) == {28.65}
    cosface = list(summary["CosFace (m=0.35)"].values())
    assert cosface[0] > cosface[1] > cosface[2]  # a cosine margin shrinks in angle
    sphere = list(summary["SphereFace (m=1.35)"].values())
    assert sphere == pytest.approx([10.5, 21.0, 31.5], abs=0.01)


def test_theta_outside_range_is_rejected():
    with pytest.raises(ValueError, match="Received: theta_degrees="):
        figures.target_logit_curves([-1.0, 30.0])


# ----------------------------------------------------------------------------- toy experiment


def test_angular_gaps_hand_built():
    # Three tight classes centered on 0, 120 and 240 degrees, each spanning +-10 degrees.
    angles, labels = [], []
    for label, center in enumerate((0.0, 120.0, 240.0)):
        for offset in (-10.0, -5.0, 0.0, 5.0, 10.0):
            angles.append(center + offset)
            labels.append(label)
    radians = np.radians(angles)
    points = 3.0 * np.stack([np.cos(radians), np.sin(radians)], axis=1)
    gaps = toy_experiment.angular_gaps(points, labels, quantile=0.0)
    assert gaps["gaps_deg"] == pytest.approx([100.0, 100.0, 100.0], abs=1e-6)
    assert gaps["min_gap_deg"] == pytest.approx(100.0)
    assert gaps["order"] == [0, 1, 2]


def test_angular_gaps_report_overlap_as_negative():
    radians = np.radians([0.0, 30.0, 20.0, 50.0])
    points = np.stack([np.cos(radians), np.sin(radians)], axis=1)
    gaps = toy_experiment.angular_gaps(points, [0, 0, 1, 1], quantile=0.0)
    # Class 0 spans 0..30, class 1 spans 20..50: they overlap by 10 degrees.
    assert gaps["gaps_deg"][0] == pytest.approx(-10.0, abs=1e-6)
    assert gaps["gaps_deg"][1] == pytest.approx(310.0, abs=1e-6)


def test_angular_gaps_needs_two_dimensions():
    with pytest.raises(ValueError, match="Received: embeddings.shape="):
        toy_experiment.angular_gaps(np.zeros((4, 3)), [0, 0, 1, 1])


# ----------------------------------------------------------------------------- trainer pieces


def test_pk_batches_balance_identities():
    labels = np.repeat(np.arange(10), 5)
    for batch in trainer.pk_batches(labels, 4, 3, steps=5, seed=0):
        counts = np.bincount(labels[batch], minlength=10)
        assert sorted(counts[counts > 0]) == [3, 3, 3, 3]


def test_learning_rate_schedule_hand_worked():
    config = trainer.TrainConfig(learning_rate=0.1, warmup_fraction=0.1)
    # 100 steps: warm-up from 0 over 10 steps (0, 0.01, ...), then cosine from 0.1 to 0.
    with pytest.warns(DeprecationWarning, match="WarmupDecay"):
        assert trainer.learning_rate_at(0, 100, config) == pytest.approx(0.0, abs=1e-12)
    with pytest.warns(DeprecationWarning):
        assert trainer.learning_rate_at(5, 100, config) == pytest.approx(0.05)
        assert trainer.learning_rate_at(10, 100, config) == pytest.approx(0.1)
        assert trainer.learning_rate_at(55, 100, config) == pytest.approx(0.05)
        assert trainer.learning_rate_at(100, 100, config) == pytest.approx(0.0, abs=1e-7)


def test_train_config_validation():
    with pytest.raises(ValueError, match="Received: identities_per_batch=0"):
        trainer.TrainConfig(identities_per_batch=0)


# ----------------------------------------------------------------------------- loss table pieces


def test_every_paper_row_is_present():
    labels = [row.label for row in loss_table.ROWS]
    assert len(labels) == len(set(labels)) == 15
    for needed in (
        "Softmax",
        "Norm-Softmax",
        "SphereFace (m=1.35)",
        "CosFace (m=0.35)",
        "ArcFace (m=0.4)",
        "ArcFace (m=0.5)",
        "CM1 (1, 0.3, 0.2)",
        "CM2 (0.9, 0.4, 0.15)",
        "Norm-Softmax+Intra",
        "Norm-Softmax+Inter",
        "Triplet (m=0.35)",
        "ArcFace+Intra",
        "ArcFace+Inter",
        "ArcFace+Triplet",
    ):
        assert needed in labels


def test_table_config_validation():
    with pytest.raises(ValueError, match="Received: scale=0"):
        loss_table.TableConfig(scale=0)
    with pytest.raises(ValueError, match="Received: steps=0"):
        loss_table.TableConfig(steps=0)


def test_write_markdown_keeps_hand_written_text(tmp_path):
    summary = {
        "command": "keras-arcface paper table --reduced",
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {"description": "test machine"},
        "steps": 3,
        "budget_note": "fixed step budget",
        "config": {**_config_dict(), "seeds": [0]},
        "rows": [
            loss_table.summarise_row(
                loss_table.ROWS[5],
                [
                    {
                        "accuracy": 0.75,
                        "tar": 0.5,
                        "fold_std": 0.1,
                        "last_loss": 1.0,
                        "train_seconds": 2.0,
                    }
                ],
            )
        ],
    }
    path = tmp_path / "paper_table.md"
    path.write_text(
        f"# Title\n\nIntro.\n\n{loss_table.TABLE_START}\nSTALE-BLOCK\n{loss_table.TABLE_END}\n\n"
        "## Discussion\nKept.\n"
    )
    loss_table.write_markdown(str(path), summary)
    text = path.read_text()
    assert text.startswith("# Title\n\nIntro.")
    assert text.endswith("## Discussion\nKept.\n")
    assert "STALE-BLOCK" not in text
    assert "| ArcFace (m=0.5) | 75.00 ± 0.00 | 50.00 ± 0.00 |" in text


def _config_dict():
    import dataclasses

    return dataclasses.asdict(loss_table.REDUCED_TABLE)


# ----------------------------------------------------------------------------- the commands


def test_paper_figures_reduced_command(tmp_path, capsys):
    out = tmp_path / "figures"
    assert cli.main(["paper", "figures", str(out), "--reduced", "--quiet"]) == 0
    for name in ("target_logit_curves.png", "decision_margins.png", "toy_softmax_arcface.png"):
        path = out / name
        assert path.exists() and path.stat().st_size > 10_000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "figures.json").read_text())
    for label in ("Softmax", "ArcFace"):
        gaps = report["toy_experiment"][label]["gaps"]
        assert len(gaps["gaps_deg"]) == 8
        # Eight arcs and eight gaps go once around the circle.
        spans = sum(end - start for start, end in gaps["arcs_deg"])
        assert spans + sum(gaps["gaps_deg"]) == pytest.approx(360.0, abs=0.2)
        assert 0.0 <= report["toy_experiment"][label]["train_accuracy"] <= 1.0
    assert report["decision_margin_degrees"]["ArcFace (m=0.5)"]["60"] == pytest.approx(28.65)
    assert "angular gaps" in capsys.readouterr().out


@pytest.mark.slow
def test_paper_table_reduced_command(tmp_path):
    """The reduced table runs every row end to end; it cannot rank the losses.

    The reduced run trains each row for 4 SGD steps from random initialisation, which leaves
    every row at chance level on the held-out pairs. Measured with this engine
    (REDUCED_TABLE, seeds 0, 1, 2; TAR@FAR=1e-2 / accuracy): Softmax 0.045, 0.020, 0.020 /
    0.473, 0.520, 0.570; ArcFace (m=0.5) 0.051, 0.020, 0.023 / 0.520, 0.567, 0.477; CosFace
    (m=0.35) 0.078, 0.036, 0.057 / 0.517, 0.553, 0.483. ArcFace and Softmax overlap, so an
    assertion that the margin losses beat Softmax would pass or fail by luck.

    A larger run does not resolve it within this suite's budget either. The full table's own
    setting (TableConfig() defaults: 200 identities x 24 at 48x48, 150 steps of 128, 3,000
    held-out pairs), Softmax and ArcFace (m=0.5) only, seeds 0, 1, 2, measured 2026-12-02 on
    the shared 2-core machine: TAR@FAR=1e-2 / accuracy Softmax 0.1947, 0.2518, 0.2306 /
    0.8060, 0.8057, 0.8007; ArcFace 0.2799, 0.2546, 0.2290 / 0.8113, 0.8030, 0.8110. ArcFace
    leads on the mean TAR (0.2545 vs 0.2257) but not seed by seed (seed 2: 0.2290 vs 0.2306;
    accuracy seed 1: 0.8030 vs 0.8057), and the six runs took 75-199 s each (load 2-7), far
    over the slow suite's ~3 minutes. The ordering is what the full table
    (docs/paper_table.md, 150 steps x 3 seeds, every row) reports. This test checks
    what the reduced run can show: every row of the paper trains on the same budget, stays
    finite and is scored by the held-out protocol, and the report is written.
    """
    out = tmp_path / "table"
    assert cli.main(["paper", "table", "--reduced", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "paper_table.json").read_text())
    labels = [entry["label"] for entry in summary["rows"]]
    assert labels == [row.label for row in loss_table.ROWS]
    for entry in summary["rows"]:
        for run in entry["runs"]:
            assert run["finite"], entry["label"]
            assert 0.0 <= run["accuracy"] <= 1.0, entry["label"]
            assert 0.0 <= run["tar"] <= 1.0, entry["label"]
            assert run["steps"] == summary["steps"]
    text = (out / "paper_table.md").read_text()
    for label in labels:
        assert f"| {label} |" in text
    assert "keras-arcface paper table --reduced" in text


def test_objective_sums_head_loss_and_inter_regulariser():
    # NS+Inter on a hand-built batch, against a float64 NumPy computation of
    # cross-entropy(s * cos) - mean angle between distinct centers / pi.
    import keras

    row = next(r for r in loss_table.ROWS if r.label == "Norm-Softmax+Inter")
    objective = loss_table.build_objective(row, num_classes=3, scale=16.0)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0], dtype=np.int32)
    value = float(keras.ops.convert_to_numpy(objective(labels, embeddings)))

    kernel = np.asarray(objective.head.trainable_weights[0], dtype=np.float64).T  # (D, classes)
    centers = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    features = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    logits = 16.0 * features @ centers
    log_norm = np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1)) + logits.max(1)
    cross_entropy = np.mean(log_norm - logits[np.arange(5), labels])
    angles = [
        math.acos(float(np.clip(centers[:, i] @ centers[:, j], -1, 1)))
        for i in range(3)
        for j in range(3)
        if i != j
    ]
    assert value == pytest.approx(cross_entropy - np.mean(angles) / math.pi, rel=1e-4)


def test_objective_needs_a_loss():
    with pytest.raises(ValueError, match="Received: head_losses="):
        trainer.Objective(head=None)
