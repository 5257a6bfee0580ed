"""Independent float64 NumPy-loop oracles for the margin losses, plus a backend-neutral gradient.

Written from the definitions in docs/losses.md (one scalar at a time, ``math`` trig), not from
the package code. The only shared convention is the documented sine floor
``sin(theta) = sqrt(max(1 - cos^2, 1e-7))`` that keeps slopes finite at cos = +-1.
"""

import math

import keras
import numpy as np

SINE_FLOOR = 1e-7


def angle(c):
    """theta = arccos(c) with the documented sine floor (equal to acos away from +-1)."""
    c = min(max(float(c), -1.0), 1.0)
    return math.atan2(math.sqrt(max(1.0 - c * c, SINE_FLOOR)), c)


def arcface_target(c, margin=0.5, easy_margin=False):
    c = min(max(float(c), -1.0), 1.0)
    shifted = math.cos(angle(c) + margin)
    if easy_margin:
        return shifted if c > 0 else c
    # The threshold is a float32 constant in float32 math: compare with its float32 value, so
    # that a cosine exactly at the float32 threshold takes the same branch in both.
    if c > float(np.float32(math.cos(math.pi - margin))):
        return shifted
    return c - math.sin(math.pi - margin) * margin


def combined_target(c, m1=1.0, m2=0.5, m3=0.0):
    phi = m1 * angle(c) + m2
    k = math.floor(phi / math.pi)
    return (-1) ** k * math.cos(phi) - 2 * k - m3


def cosface_target(c, margin=0.35):
    return min(max(float(c), -1.0), 1.0) - margin


def identity_target(c):
    return min(max(float(c), -1.0), 1.0)


def margin_logits(labels, cosine, target, scale, frozen_delta=None):
    """Row by row: scale * cos, target column replaced by scale * target(cos_y).

    With ``frozen_delta`` (per row) the target logit is ``scale * (cos_y + delta)`` instead:
    the value of the margin held fixed, used for the no-grad shortcut's gradient.
    """
    cosine = np.asarray(cosine, np.float64)
    out = np.empty_like(cosine)
    for i in range(cosine.shape[0]):
        for j in range(cosine.shape[1]):
            out[i, j] = scale * min(max(cosine[i, j], -1.0), 1.0)
        y = int(labels[i])
        c_y = min(max(cosine[i, y], -1.0), 1.0)
        out[i, y] = scale * (target(c_y) if frozen_delta is None else c_y + frozen_delta[i])
    return out


def cross_entropy(labels, logits):
    """Mean over rows of logsumexp(row) - row[label], with the max shift."""
    total = 0.0
    for i, row in enumerate(np.asarray(logits, np.float64)):
        top = max(row)
        total += top + math.log(sum(math.exp(v - top) for v in row)) - row[int(labels[i])]
    return total / len(labels)


def margin_loss(labels, cosine, target, scale, intra_weight=0.0, frozen_delta=None):
    value = cross_entropy(labels, margin_logits(labels, cosine, target, scale, frozen_delta))
    if intra_weight:
        value += intra_weight * intra(labels, cosine)
    return value


def intra(labels, cosine):
    """Mean target angle / pi."""
    cosine = np.asarray(cosine, np.float64)
    angles = [angle(cosine[i, int(y)]) for i, y in enumerate(labels)]
    return sum(angles) / len(angles) / math.pi


def finite_difference(fn, x, step=1e-6):
    """Central differences of a float64 scalar function of an array."""
    x = np.array(x, np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (fn(up) - fn(down)) / (2 * step)
    return grad


def value_and_grad(fn, x):
    """Value and gradient of ``fn(x)`` (a scalar ``keras.ops`` expression) on any backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return np.asarray(value), np.asarray(tape.gradient(value, x))
    if backend == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(jax.numpy.asarray(x))
        return np.asarray(value), np.asarray(grad)
    if backend == "torch":
        import torch

        x = torch.tensor(np.asarray(x), requires_grad=True)
        value = fn(x)
        value.backward()
        return value.detach().cpu().numpy(), x.grad.cpu().numpy()
    raise NotImplementedError(f"No gradient helper for backend {backend!r}")


def assert_close(actual, expected, rtol, err_msg=""):
    """Relative match, with an absolute floor of rtol times the largest expected magnitude."""
    expected = np.asarray(expected, np.float64)
    floor = rtol * max(float(np.max(np.abs(expected))), 1e-12)
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, rtol=rtol, atol=floor, err_msg=err_msg
    )
