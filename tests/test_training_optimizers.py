"""Optimiser names mean what they say: ``adamw`` is AdamW (decoupled), ``adam`` is Adam + L2."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_arcface.training import config, optimizers


def _one_step_with_zero_data_gradient(cfg, w0=2.0, lr=0.1):
    """One backbone update as the trainer makes it: the data gradient is 0, so only decay acts.

    The trainer adds the coupled decay as a loss term (``coupled_l2_penalty``) and leaves the
    decoupled one to the Keras optimiser; this reproduces exactly that split.
    """
    var = keras.Variable(np.full((3,), w0, np.float32))
    opt = optimizers.build_optimizer(cfg, learning_rate=lr)
    with tf.GradientTape() as tape:
        penalty = optimizers.coupled_l2_penalty(
            [var], optimizers.coupled_weight_decay(cfg.optimizer)
        )
        loss = 0.0 * tf.reduce_sum(var.value) + penalty
    opt.apply([tape.gradient(loss, var.value)], [var])
    return float(np.asarray(var)[0])


def test_adamw_means_decoupled_weight_decay():
    cfg = config.load_config(None, ["optimizer.name=adamw", "optimizer.weight_decay=0.01"])
    assert (cfg.optimizer.name, cfg.optimizer.weight_decay_mode) == ("adamw", "decoupled")
    assert optimizers.coupled_weight_decay(cfg.optimizer) == 0.0
    opt = optimizers.build_optimizer(cfg, learning_rate=0.1)
    assert type(opt) is keras.optimizers.AdamW and opt.weight_decay == pytest.approx(0.01)
    # Decoupled (Loshchilov & Hutter): w <- w - lr * wd * w, untouched by the Adam moments.
    assert _one_step_with_zero_data_gradient(cfg) == pytest.approx(2.0 - 0.1 * 0.01 * 2.0)


def test_adam_is_adam_with_coupled_l2():
    cfg = config.load_config(None, ["optimizer.name=adam", "optimizer.weight_decay=0.01"])
    assert (cfg.optimizer.name, cfg.optimizer.weight_decay_mode) == ("adam", "coupled")
    assert optimizers.coupled_weight_decay(cfg.optimizer) == pytest.approx(0.01)
    opt = optimizers.build_optimizer(cfg, learning_rate=0.1)
    assert type(opt) is keras.optimizers.Adam
    # Coupled: the gradient is wd * w = 0.02, and Adam's first step moves by about lr.
    m, v = 0.1 * 0.02, 0.001 * 0.02**2
    step = 0.1 * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-7)
    assert _one_step_with_zero_data_gradient(cfg) == pytest.approx(2.0 - step, rel=1e-4)


def test_old_adamw_coupled_spelling_warns_and_keeps_its_meaning():
    with pytest.warns(DeprecationWarning, match="optimizer.name=adam"):
        cfg = config.load_config(
            None, ["optimizer.name=adamw", "optimizer.weight_decay_mode=coupled"]
        )
    assert (cfg.optimizer.name, cfg.optimizer.weight_decay_mode) == ("adam", "coupled")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the normalized config no longer warns
        assert type(optimizers.build_optimizer(cfg, 0.1)) is keras.optimizers.Adam


def test_adam_with_decoupled_decay_is_refused():
    with pytest.raises(ValueError, match="optimizer.name=adamw"):
        config.load_config(None, ["optimizer.name=adam", "optimizer.weight_decay_mode=decoupled"])


def test_sgd_default_stays_the_papers_coupled_decay():
    cfg = config.load_config(None, [])
    assert (cfg.optimizer.name, cfg.optimizer.weight_decay_mode) == ("sgd", "coupled")
    assert type(optimizers.build_optimizer(cfg, 0.1)) is keras.optimizers.SGD


def test_center_optimizer_follows_the_same_names():
    centers = tf.Variable(tf.ones((4, 2)))
    adamw = optimizers.CenterOptimizer(centers, name="adamw")
    assert adamw.kind == "adamw" and not adamw.coupled
    adam = optimizers.CenterOptimizer(centers, name="adam")
    assert adam.kind == "adamw" and adam.coupled
    cfg = config.load_config(None, ["optimizer.name=adamw"])
    assert not optimizers.CenterOptimizer.from_config(centers, cfg).coupled
