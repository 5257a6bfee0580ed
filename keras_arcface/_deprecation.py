"""Renamed public names keep working for one release, with a ``DeprecationWarning``."""

import functools
import warnings

# The release in which the old spellings are removed.
REMOVED_IN = "0.3"


def warn_renamed(old, new, stacklevel=3):
    """Warns that ``old`` was renamed ``new`` (callers point at the user's line).

    Example:
        >>> warn_renamed("target_logit", "target_cosine")  # doctest: +SKIP
    """
    warnings.warn(
        f"`{old}` is deprecated and will be removed in keras-arcface {REMOVED_IN}; "
        f"use `{new}` instead.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_function(function, old_name):
    """Returns a wrapper of ``function`` under its old name that warns on every call.

    Example:
        >>> l2_normalise = renamed_function(l2_normalize, "l2_normalise")  # doctest: +SKIP
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        warn_renamed(old_name, function.__name__)
        return function(*args, **kwargs)

    wrapper.__name__ = old_name
    wrapper.__qualname__ = old_name
    wrapper.__doc__ = f"Deprecated alias of :func:`{function.__name__}`.\n"
    return wrapper
