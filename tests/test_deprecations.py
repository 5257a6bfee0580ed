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
    assert metadata["output_l2_normalised"] is True  # old key, still written until 0.3


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
