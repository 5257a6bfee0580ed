"""Renamed names keep working for one release and say so with a DeprecationWarning."""

import math

import numpy as np
import pytest


def test_margin_cosine_is_the_unscaled_margin_transform_and_target_logit_still_works():
    from keras import ops

    from keras_arcface.losses import ArcFaceLoss, CosFaceLoss

    cosine = np.array([0.5, -0.2], dtype=np.float32)
    arc = ArcFaceLoss(margin=0.5, scale=64.0)
    expected = [math.cos(math.acos(0.5) + 0.5), math.cos(math.acos(-0.2) + 0.5)]
    np.testing.assert_allclose(ops.convert_to_numpy(arc.margin_cosine(cosine)), expected, 1e-6)
    with pytest.warns(DeprecationWarning, match="margin_cosine"):
        old = arc.target_logit(cosine)
    np.testing.assert_array_equal(ops.convert_to_numpy(old), arc.margin_cosine(cosine))
    cos_face = CosFaceLoss(margin=0.35)
    np.testing.assert_allclose(cos_face.margin_cosine(cosine), [0.15, -0.55], atol=1e-6)
    with pytest.warns(DeprecationWarning, match="margin_cosine_derivative"):
        arc.target_logit_derivative(cosine)


def test_a_subclass_written_against_target_logit_is_still_honoured():
    from keras import ops

    from keras_arcface.losses.margin_loss import MarginLoss

    class OldStyle(MarginLoss):
        def target_logit(self, cosine):
            return ops.cast(cosine, "float32") - 0.25

    cosine = np.array([[0.5, 0.1], [0.3, 0.9]], dtype=np.float32)
    labels = np.array([0, 1])
    with pytest.warns(DeprecationWarning, match="OldStyle.target_logit"):
        logits = ops.convert_to_numpy(OldStyle(scale=10.0).logits(labels, cosine))
    # Hand-worked: target columns shifted by -0.25, everything times 10.
    np.testing.assert_allclose(logits, [[2.5, 1.0], [3.0, 6.5]], atol=1e-5)


def test_renamed_functions_warn_and_forward():
    from keras_arcface import losses
    from keras_arcface.data import verify as old_verify_module
    from keras_arcface.paper import figures, loss_table

    with pytest.warns(DeprecationWarning, match="normalized_target_logit"):
        old = figures.normalised_target_logit(losses.get("cosface", margin=0.35), [0.0])
    np.testing.assert_allclose(old, [0.65], atol=1e-6)
    assert loss_table.verify.__wrapped__ is loss_table.evaluate_heldout_pairs
    with pytest.warns(DeprecationWarning, match="check_dataset"):
        with pytest.raises((FileNotFoundError, ValueError)):
            old_verify_module.verify_dataset("/nonexistent/dataset", progress=False)


def test_verifier_is_the_verification_monitor():
    from keras_arcface.training import callbacks

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 112, 112, 3), dtype=np.uint8)
    issame = [True, False, True, False]
    with pytest.warns(DeprecationWarning, match="VerificationMonitor"):
        old = callbacks.Verifier([("toy", images, issame)], batch_size=4, flip=False)
    assert isinstance(old, callbacks.VerificationMonitor)
    assert old.columns == ["verify/toy/accuracy", "verify/toy/accuracy_std"]


def test_runtime_normalized_attribute_and_metadata_key():
    from keras_arcface.inference import contract, runtimes

    class Fake(runtimes._Runtime):
        normalized = True

    with pytest.warns(DeprecationWarning, match="normalized"):
        assert Fake().normalised is True
    metadata = contract.contract_metadata(512)
    assert metadata["output_l2_normalized"] is True
    assert metadata["output_l2_normalised"] is True  # old key: still written for 0.1 apps until 0.3


def test_centre_layout_constant_is_center_layout():
    from keras_arcface import layers
    from keras_arcface.layers import norm_dense

    assert layers.CENTER_LAYOUT == "classes_by_dim"
    with pytest.warns(DeprecationWarning, match="CENTER_LAYOUT"):
        assert layers.CENTRE_LAYOUT == layers.CENTER_LAYOUT
    with pytest.warns(DeprecationWarning, match="CENTER_LAYOUT"):
        assert norm_dense.CENTRE_LAYOUT == layers.CENTER_LAYOUT
    with pytest.raises(AttributeError):
        _ = norm_dense.NO_SUCH_NAME


def test_centre_initializer_is_the_center_initializer():
    from keras_arcface.layers import partial_fc

    with pytest.warns(DeprecationWarning, match="CenterInitializer"):
        old = partial_fc.CentreInitializer(stddev=0.02, seed=5)
    new = partial_fc.CenterInitializer(stddev=0.02, seed=5)
    assert isinstance(old, partial_fc.CenterInitializer)
    np.testing.assert_array_equal(np.asarray(old((6, 3))), np.asarray(new((6, 3))))


def _deprecations(record, text):
    return [
        w for w in record if issubclass(w.category, DeprecationWarning) and text in str(w.message)
    ]


def test_trainer_centre_variables_is_center_variables():
    from types import SimpleNamespace

    from keras_arcface.training.trainer import Trainer

    fake = SimpleNamespace(sharded=False, head=SimpleNamespace(centers="the centers"))
    assert Trainer.center_variables(fake) == ["the centers"]
    with pytest.warns(DeprecationWarning, match="center_variables"):
        assert Trainer.centre_variables(fake) == ["the centers"]


def _checkpoint_with_centers(folder, num_classes, dim):
    import tensorflow as tf

    from keras_arcface.training.checkpointing import Checkpointer

    head = tf.Module()
    head.centers = tf.Variable(np.zeros((num_classes, dim), np.float32))
    checkpointer = Checkpointer(tf.train.Checkpoint(head=head), str(folder), is_chief=True)
    checkpointer.save(1)
    return checkpointer


def test_checkpointer_takes_centres_shape_with_a_warning(tmp_path):
    import warnings

    from keras_arcface.training import checkpointing

    checkpointer = _checkpoint_with_centers(tmp_path, 4, 3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert checkpointer.restore_latest(centers_shape=(4, 3)).endswith("ckpt-1")
    assert not _deprecations(record, "centres")
    # The old keyword is forwarded: a wrong class count is still refused by it.
    with pytest.warns(DeprecationWarning, match="centers_shape"):
        with pytest.raises(ValueError, match="4 classes"):
            checkpointer.restore_latest(centres_shape=(5, 3))
    with pytest.warns(DeprecationWarning, match="centers_shape"):
        assert checkpointer.restore(checkpointer.latest, centres_shape=(4, 3))
    with pytest.raises(TypeError, match="centres_shape"):
        checkpointer.restore_latest(centres_shape=(4, 3), centers_shape=(4, 3))
    with pytest.warns(DeprecationWarning, match="check_centers_shape"):
        with pytest.raises(ValueError, match="embedding size 3"):
            checkpointing.check_centres_shape(checkpointer.latest, 4, 8)
    with pytest.warns(DeprecationWarning, match="CENTERS_KEY"):
        assert checkpointing.CENTRES_KEY == checkpointing.CENTERS_KEY
    with pytest.raises(AttributeError):
        _ = checkpointing.NO_SUCH_NAME


def test_partial_fc_config_shard_centres_attribute():
    from keras_arcface.training.config import PartialFCConfig

    section = PartialFCConfig(shard_centers=False)
    with pytest.warns(DeprecationWarning, match="shard_centers="):
        assert PartialFCConfig(shard_centres=False) == section
    with pytest.raises(TypeError, match="shard_centres"):
        PartialFCConfig(shard_centres=False, shard_centers=True)
    with pytest.warns(DeprecationWarning, match="shard_centers"):
        assert section.shard_centres is False
    with pytest.warns(DeprecationWarning, match="shard_centers"):
        section.shard_centres = True
    assert section.shard_centers is True


def test_angular_gaps_answers_centres_deg_but_writes_centers_deg():
    import json

    from keras_arcface.paper.toy_experiment import angular_gaps

    angles = np.radians([0, 10, 90, 100])
    gaps = angular_gaps(np.stack([np.cos(angles), np.sin(angles)], 1), [0, 0, 1, 1], 0.0)
    assert gaps["centers_deg"] == [5.0, 95.0]  # hand-worked: the mean angle of each pair
    with pytest.warns(DeprecationWarning, match="centers_deg"):
        assert gaps["centres_deg"] == [5.0, 95.0]
    with pytest.warns(DeprecationWarning, match="centers_deg"):
        assert gaps.get("centres_deg") == [5.0, 95.0]
    assert "centres_deg" not in json.loads(json.dumps(gaps))
    assert gaps.get("no_such_key", 7) == 7


def test_metadata_of_an_older_export_is_read_under_the_new_key(tmp_path):
    import json

    from keras_arcface.inference import contract

    artifact = tmp_path / "model_float32.tflite"
    old = {"output_l2_normalised": True, "embedding_dim": 8}  # as 0.1 wrote it
    (tmp_path / "model_float32.json").write_text(json.dumps(old), encoding="utf-8")
    metadata = contract.read_sidecar(artifact)
    assert metadata["output_l2_normalized"] is True
    assert metadata["embedding_dim"] == 8
    assert (
        contract.upgrade_metadata({"output_l2_normalized": False})["output_l2_normalized"] is False
    )
