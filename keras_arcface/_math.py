"""``l2_normalize``: the one definition of "scale each row to unit length" in the package.

Both forms compute ``x / sqrt(max(sum(x**2), epsilon))``, the formula of
``tf.math.l2_normalize`` that the exported serving graph uses, so NumPy evaluation, the Keras
layers and every exported model agree; an all-zero row stays zero. ``keras`` is imported only by
:func:`l2_normalize_ops`, so NumPy callers never pay for a backend.
"""

import numpy as np

NORM_EPSILON = 1e-12


def l2_normalize(x, axis=-1, epsilon=NORM_EPSILON):
    """Scales ``x`` to unit L2 norm along ``axis``, in float64 NumPy (zero rows stay zero).

    Args:
        x: array-like.
        axis: the axis to normalize, default the last.
        epsilon: floor of the squared norm, default 1e-12 (as ``tf.math.l2_normalize``).

    Returns:
        float64 ``np.ndarray`` of the shape of ``x``.

    Example:
        >>> l2_normalize([[3.0, 4.0], [0.0, 0.0]]).tolist()
        [[0.6, 0.8], [0.0, 0.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    squared = np.sum(x * x, axis=axis, keepdims=True)
    return x / np.sqrt(np.maximum(squared, epsilon))


def l2_normalize_ops(x, axis=-1, epsilon=NORM_EPSILON):
    """``l2_normalize`` in ``keras.ops`` (any backend), computed in float32.

    Args:
        x: tensor or array.
        axis: the axis to normalize, default the last.
        epsilon: floor of the squared norm, default 1e-12.

    Example:
        >>> from keras import ops
        >>> l2_normalize_ops(ops.convert_to_tensor([[3.0, 4.0]]))  # [[0.6, 0.8]]  # doctest: +SKIP
    """
    from keras import ops

    x = ops.cast(x, "float32")
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon))
