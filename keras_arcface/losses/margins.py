"""Pure ``keras.ops`` margin functions of the combined-margin family.

Every function here takes cosine similarities (any float dtype) and returns float32: the margin
math runs in float32 under any mixed-precision policy, because ``scale * cos`` reaches 64 and
``exp(64)`` overflows float16. Margins are in **radians** (``margin=0.5`` is 28.6 degrees).

Numerically safe building blocks:

- cosines are clipped to ``[-1, 1]`` before anything else;
- ``sin(theta) = sqrt(max(1 - cos^2, SINE_EPSILON))`` so that neither the sine nor the angle
  ``theta = atan2(sin, cos)`` has an infinite slope at ``cos = +-1`` (both ``sqrt(1 - cos^2)``
  and ``arccos`` do). The angle therefore lives in ``[~3.2e-4, pi - ~3.2e-4]`` radians.

The target-column update never builds a dense ``B x N`` one-hot matrix: the target cosine is
gathered (one batched gather), transformed, and written back with ``scatter_update``; the
cross-entropy is the sparse one. Each built-in margin has an analytic derivative
(``*_derivative``) so that ``margin_logits`` can run as one custom-gradient op whose backward
pass edits only the ``B`` target entries of the incoming gradient: the margin then costs no
extra ``B x N`` passes over a plain normalized softmax (see ``benchmarks/margin_overhead.py``).

Reference: Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
arXiv 1801.07698, sections 2.1-2.3.
"""

import math

import keras
from keras import ops

SINE_EPSILON = 1e-7
"""Floor on ``1 - cos^2`` (sine floored at ~3.2e-4) that keeps every slope finite."""


def clip_cosine(cosine):
    """Cast cosines to float32 and clip them to ``[-1, 1]``.

    Args:
        cosine: tensor of cosine similarities, any float dtype.

    Returns:
        float32 tensor of the same shape.

    Example:
        >>> clip_cosine([1.0000001, -0.3]).dtype  # float32
    """
    return ops.clip(ops.cast(cosine, "float32"), -1.0, 1.0)


def safe_sine(cosine):
    """``sin(theta)`` for ``theta = arccos(cosine)``, floored so its gradient stays finite.

    Args:
        cosine: float32 cosines in ``[-1, 1]``.

    Returns:
        ``sqrt(max(1 - cosine^2, SINE_EPSILON))``.

    Example:
        >>> safe_sine(ops.convert_to_tensor([0.0, 1.0]))  # [1.0, 3.16e-4]
    """
    return ops.sqrt(ops.maximum(1.0 - ops.square(cosine), SINE_EPSILON))


def _sine_slope(cosine, sine):
    # d safe_sine / d cosine: -cos/sin where the floor is inactive, 0 where it holds.
    return ops.where(1.0 - ops.square(cosine) > SINE_EPSILON, -cosine / sine, 0.0)


def safe_angle(cosine):
    """The angle ``theta = arccos(cosine)`` in radians with a finite gradient everywhere.

    Computed as ``atan2(safe_sine(cosine), cosine)``: equal to ``arccos`` away from the poles,
    within ~3.2e-4 rad of it at ``cosine = +-1``, and with slope ``-1 / sin(theta)`` bounded by
    ``1 / sqrt(SINE_EPSILON)``.

    Args:
        cosine: float32 cosines in ``[-1, 1]``.

    Returns:
        float32 angles in ``(0, pi)``.

    Example:
        >>> safe_angle(ops.convert_to_tensor([0.0]))  # [1.5707964]
    """
    return ops.arctan2(safe_sine(cosine), cosine)


def additive_angular_margin(cosine, margin=0.5, easy_margin=False):
    """ArcFace: ``cos(theta + margin)`` with the reference's monotone fallback.

    ``cos(theta + m)`` is computed without ``arccos`` as ``cos*cos(m) - sin*sin(m)``. Where
    ``theta + m > pi`` the function would turn back up (no longer monotone in ``theta``), so,
    as in the original MXNet implementation and most ports, for ``cos <= cos(pi - m)`` it is
    replaced by ``cos - sin(pi - m) * m`` (for ``m = 0.5``: threshold -0.877583, offset
    0.239713). The result is monotone in ``cos`` with a small downward step at the threshold.
    With ``easy_margin=True`` the margin is applied only where ``cos > 0`` instead.

    Args:
        cosine: target-class cosines, any shape and float dtype.
        margin: additive angular margin in radians, ``0 <= margin < pi``. Defaults to 0.5.
        easy_margin: apply the margin only to positive cosines. Defaults to False.

    Returns:
        float32 tensor, same shape as ``cosine``.

    Example:
        >>> additive_angular_margin(ops.convert_to_tensor([1.0, 0.0, -0.9]), margin=0.5)

    Reference: arXiv 1801.07698, eq. (3).
    """
    c = clip_cosine(cosine)
    shifted = c * math.cos(margin) - safe_sine(c) * math.sin(margin)
    if easy_margin:
        return ops.where(c > 0.0, shifted, c)
    threshold = math.cos(math.pi - margin)
    offset = math.sin(math.pi - margin) * margin
    return ops.where(c > threshold, shifted, c - offset)


def additive_angular_margin_derivative(cosine, margin=0.5, easy_margin=False):
    """Derivative of ``additive_angular_margin`` with respect to the cosine (float32).

    ``cos(m) + sin(m) * cos / sin`` on the margin branch (with the floored sine), 1 on the
    fallback or easy-margin identity branch.

    Args:
        cosine: target-class cosines.
        margin: additive angular margin in radians. Defaults to 0.5.
        easy_margin: as in ``additive_angular_margin``. Defaults to False.

    Returns:
        float32 tensor, same shape as ``cosine``.

    Example:
        >>> additive_angular_margin_derivative(ops.convert_to_tensor([0.0]), 0.5)  # cos(0.5)
    """
    c = clip_cosine(cosine)
    sine = safe_sine(c)
    slope = math.cos(margin) - math.sin(margin) * _sine_slope(c, sine)
    threshold = 0.0 if easy_margin else math.cos(math.pi - margin)
    return ops.where(c > threshold, slope, 1.0)


def additive_cosine_margin(cosine, margin=0.35):
    """CosFace: ``cos(theta) - margin``.

    Args:
        cosine: target-class cosines, any float dtype.
        margin: additive cosine margin (a cosine offset, not an angle). Defaults to 0.35.

    Returns:
        float32 tensor, same shape as ``cosine``.

    Example:
        >>> additive_cosine_margin(ops.convert_to_tensor([0.9]), margin=0.35)  # [0.55]

    Reference: Wang et al., CosFace (arXiv 1801.09414); ArcFace paper eq. (4), m3.
    """
    return clip_cosine(cosine) - margin


def unit_derivative(cosine, *args, **kwargs):
    """Derivative of a margin that shifts the cosine by a constant (CosFace, none): ones.

    Example:
        >>> unit_derivative(ops.convert_to_tensor([0.3]))  # [1.0]
    """
    del args, kwargs
    return ops.ones_like(clip_cosine(cosine))


def combined_margin(cosine, m1=1.0, m2=0.5, m3=0.0):
    """The combined margin ``cos(m1 * theta + m2) - m3``, all three applied together.

    ``m1`` is the multiplicative angular margin (SphereFace), ``m2`` the additive angular
    margin in radians (ArcFace) and ``m3`` the additive cosine margin (CosFace). When
    ``phi = m1 * theta + m2`` leaves ``[0, pi]`` the cosine stops being monotone; like
    SphereFace's ``psi``, the function is extended as ``(-1)^k cos(phi) - 2k`` with
    ``k = floor(phi / pi)``, which is continuous and strictly decreasing in ``theta`` for every
    ``m1 > 0``. (``ArcFaceLoss`` keeps the reference's own fallback instead, see
    ``additive_angular_margin``; the two agree wherever ``theta + m2 <= pi``.)

    Args:
        cosine: target-class cosines, any float dtype.
        m1: multiplicative angular margin, ``> 0``. Defaults to 1.0.
        m2: additive angular margin in radians. Defaults to 0.5.
        m3: additive cosine margin. Defaults to 0.0.

    Returns:
        float32 tensor, same shape as ``cosine``.

    Example:
        >>> combined_margin(ops.convert_to_tensor([0.5]), m1=1.0, m2=0.3, m3=0.2)  # CM1

    Reference: arXiv 1801.07698, eq. (4) and Table 1 (CM1, CM2).
    """
    phi, k, sign = _combined_phase(cosine, m1, m2)
    return sign * ops.cos(phi) - 2.0 * k - m3


def _combined_phase(cosine, m1, m2):
    phi = m1 * safe_angle(clip_cosine(cosine)) + m2
    k = ops.floor(ops.stop_gradient(phi) / math.pi)
    sign = 1.0 - 2.0 * (k - 2.0 * ops.floor(k / 2.0))
    return phi, k, sign


def combined_margin_derivative(cosine, m1=1.0, m2=0.5, m3=0.0):
    """Derivative of ``combined_margin`` with respect to the cosine (float32).

    ``-(-1)^k sin(phi) * m1 * dtheta/dcos`` with ``theta = safe_angle(cos)``, whose slope is
    ``(cos * dsin/dcos - sin) / (sin^2 + cos^2)`` (``-1/sin(theta)`` away from the poles).

    Args:
        cosine: target-class cosines.
        m1, m2, m3: as in ``combined_margin`` (``m3`` does not enter the derivative).

    Returns:
        float32 tensor, same shape as ``cosine``.

    Example:
        >>> combined_margin_derivative(ops.convert_to_tensor([0.0]), 1.0, 0.0)  # 1.0
    """
    del m3
    c = clip_cosine(cosine)
    sine = safe_sine(c)
    angle_slope = (c * _sine_slope(c, sine) - sine) / (ops.square(sine) + ops.square(c))
    phi, _, sign = _combined_phase(c, m1, m2)
    return -sign * ops.sin(phi) * m1 * angle_slope


def _flat_labels(labels):
    # Keras casts y_true to the loss dtype (float32): exact for class ids below 2**24.
    return ops.reshape(ops.cast(labels, "int32"), (-1,))


def target_cosine(labels, cosine):
    """Gather each row's target-class cosine.

    Args:
        labels: int class ids, shape ``[B]`` or ``[B, 1]``.
        cosine: float32 cosines, shape ``[B, N]``.

    Returns:
        float32 tensor of shape ``[B]``.

    Example:
        >>> target_cosine([1], ops.convert_to_tensor([[0.1, 0.7]]))  # [0.7]
    """
    labels = _flat_labels(labels)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # One GatherV2 op; TF's take_along_axis adds a dozen broadcast/shape ops per call.
        return tf.gather(cosine, labels, batch_dims=1)
    return ops.take_along_axis(cosine, ops.expand_dims(labels, -1), axis=-1)[:, 0]


def margin_logits(
    labels, cosine, target_fn, scale=64.0, detach_margin=False, target_derivative_fn=None
):
    """Scaled logits with a margin applied to the target column only.

    Non-target logits are ``scale * cos(theta_j)``; the target logit is
    ``scale * target_fn(cos(theta_y))``.

    Given ``target_derivative_fn`` (``d target_fn / d cos``), the target edit is one
    custom-gradient op: forward ``scatter_update(scale * cos, target, scale * f(cos_y))``,
    backward ``scatter_update(scale * g, target, scale * g_y * f'(cos_y))``, so the margin adds
    only ``B``-sized work. Without it, plain autodiff through gather + scatter is used (correct,
    a few ``B x N`` passes slower); any custom ``target_fn`` works that way.

    Args:
        labels: int class ids, shape ``[B]`` or ``[B, 1]``.
        cosine: cosines, shape ``[B, N]``, any float dtype (computed in float32).
        target_fn: the margin transform, e.g. ``functools.partial(additive_angular_margin,
            margin=0.5)``.
        scale: the feature scale ``s``. Defaults to 64.0.
        detach_margin: if True, the target logit's value has the margin but its gradient is that
            of the plain normalized softmax, ``scale`` (the current PyTorch reference's no-grad
            shortcut). Defaults to False: the true gradient of the margin, as in the paper.
        target_derivative_fn: optional derivative of ``target_fn``. Defaults to None.

    Returns:
        float32 logits of shape ``[B, N]``.

    Example:
        >>> margin_logits([0], ops.convert_to_tensor([[0.8, 0.1]]),
        ...               functools.partial(additive_cosine_margin, margin=0.35), scale=64.0)
    """
    labels = _flat_labels(labels)
    c = clip_cosine(cosine)
    index = ops.stack([ops.arange(ops.shape(c)[0], dtype="int32"), labels], axis=1)
    if target_derivative_fn is None and not detach_margin:
        adjusted = ops.cast(target_fn(target_cosine(labels, c)), "float32")
        return ops.scatter_update(scale * c, index, scale * adjusted)
    slope_fn = unit_derivative if detach_margin else target_derivative_fn

    @ops.custom_gradient
    def edit_target(c):
        target = target_cosine(labels, c)
        adjusted = ops.cast(target_fn(target), "float32")
        slope = slope_fn(target)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            upstream_target = target_cosine(labels, upstream)
            return ops.scatter_update(scale * upstream, index, scale * upstream_target * slope)

        return ops.scatter_update(scale * c, index, scale * adjusted), grad

    return edit_target(c)


def sparse_softmax_cross_entropy(labels, logits):
    """Per-sample softmax cross-entropy with sparse integer labels, in float32.

    On TensorFlow this is the fused sparse kernel; on other backends ``logsumexp`` minus the
    gathered target logit (both avoid a dense one-hot of the labels).

    Args:
        labels: int class ids, shape ``[B]`` or ``[B, 1]``.
        logits: float logits, shape ``[B, N]``.

    Returns:
        float32 tensor of shape ``[B]``.

    Example:
        >>> sparse_softmax_cross_entropy([0], ops.convert_to_tensor([[2.0, 0.0]]))  # [0.127]
    """
    labels = _flat_labels(labels)
    logits = ops.cast(logits, "float32")
    if keras.backend.backend() == "tensorflow":
        return ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return ops.logsumexp(logits, axis=-1) - target_cosine(labels, logits)
