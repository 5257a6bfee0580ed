"""Argument checks shared by every layer of the package (messages end with ``Received: ...``)."""

import math
import numbers


def check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """Return ``float(value)`` after checking it is a finite real number within the bounds.

    Args:
        name: argument name used in the message.
        value: the value to check.
        low, high: optional bounds.
        low_open, high_open: whether the bound itself is excluded.

    Example:
        >>> check_number("scale", 64.0, low=0.0, low_open=True)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"`{name}` must be a finite real number. Received: {name}={value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"`{name}` must be in {bounds}. Received: {name}={value!r}")
    return value


def check_positive_int(name, value):
    """Return ``int(value)`` after checking it is an integer >= 1.

    Example:
        >>> check_positive_int("units", 10)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer. Received: {name}={value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1. Received: {name}={value!r}")
    return int(value)


def check_choice(name, value, choices):
    """Return ``value`` after checking it is one of ``choices``.

    Example:
        >>> check_choice("mining", "batch_hard", ("batch_hard", "semi_hard"))
    """
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")
    return value
