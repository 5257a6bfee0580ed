"""Renamed public names keep working for one release, with a ``DeprecationWarning``."""

import functools
import warnings

# The release in which the old spellings are removed.
REMOVED_IN = "0.3"
# Matches every deprecation message of this package (``warnings.filterwarnings(message=...)``).
MESSAGE_PATTERN = r".*deprecated and will be removed in keras-arcface"


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


def renamed_keywords(**renames):
    """Decorator: the function also takes each old keyword (``old="new"``), with a warning.

    Giving both spellings of one argument is a ``TypeError``.

    Example:
        >>> @renamed_keywords(centres_shape="centers_shape")  # doctest: +SKIP
        ... def restore(path, centers_shape=None): ...
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"{function.__qualname__}() got `{new}` and its deprecated spelling "
                        f"`{old}`; pass only `{new}`. Received: {old}={kwargs[old]!r}, "
                        f"{new}={kwargs[new]!r}"
                    )
                warn_renamed(f"{function.__qualname__}({old}=...)", f"{new}=")
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate


class RenamedKeys(dict):
    """A result ``dict`` that still answers renamed keys (``{old: new}``), with a warning.

    Only the new keys are stored, so ``json.dump`` and iteration see the new names alone.

    Example:
        >>> result = RenamedKeys({"centers_deg": [1.0]}, renamed={"centres_deg": "centers_deg"})
        >>> result["centres_deg"]  # doctest: +SKIP
        [1.0]
    """

    def __init__(self, *args, renamed, **kwargs):
        super().__init__(*args, **kwargs)
        self._renamed = dict(renamed)

    def _new_key(self, key):
        if key in self._renamed and not super().__contains__(key):
            warn_renamed(f"[{key!r}]", f"[{self._renamed[key]!r}]", stacklevel=4)
            return self._renamed[key]
        return key

    def __getitem__(self, key):
        return super().__getitem__(self._new_key(key))

    def get(self, key, default=None):
        return super().get(self._new_key(key), default)

    def __contains__(self, key):
        return super().__contains__(self._new_key(key))
