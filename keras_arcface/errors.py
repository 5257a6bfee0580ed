"""Error types shared by every part of keras-arcface (the lowest layer: imports nothing).

:class:`InputError` marks a problem with what the user gave (a file, a value, a
folder), as opposed to a bug. The command line prints such errors as one line and
exits non-zero; a traceback appears only with ``--verbose``. Every more specific
user-error type (:class:`DataError`, configuration errors) derives from it.
"""


class InputError(ValueError):
    """Bad input a user can fix: a damaged file, a wrong value, an unsafe folder.

    Subclasses ``ValueError`` so callers that already catch ``ValueError`` for bad
    input keep working.

    Example:
        >>> try:
        ...     raise InputError("out/ is not empty; pass --overwrite to replace it.")
        ... except ValueError as error:
        ...     print(error)
        out/ is not empty; pass --overwrite to replace it.
    """


class DataError(InputError):
    """A bad input item: corrupt image, truncated record, bad label, wrong size.

    Args:
        message: the full message.
        reason: a short category ("corrupt image", "truncated record", ...).
        item: what was bad (a path, a record key).
        detail: extra text (the decoder's own message).
    """

    def __init__(self, message, reason=None, item=None, detail=""):
        super().__init__(message)
        self.reason = reason
        self.item = item
        self.detail = detail


def bad_item(reason, item, detail=""):
    """Builds the :class:`DataError` for one bad item, message ``reason: item (detail)``.

    Example:
        >>> str(bad_item("corrupt image", "a.jpg", "truncated"))
        'corrupt image: a.jpg (truncated)'
    """
    message = f"{reason}: {item}" + (f" ({detail})" if detail else "")
    return DataError(message, reason=reason, item=item, detail=detail)


ON_ERROR_CHOICES = ("raise", "skip")


def check_on_error(on_error):
    """Validates an ``on_error`` policy (``"raise"`` or ``"skip"``) and returns it.

    Example:
        >>> check_on_error("skip")
        'skip'
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(
            f"`on_error` must be one of {ON_ERROR_CHOICES}. Received: on_error={on_error!r}"
        )
    return on_error
