"""Errors and the bad-data policy shared by the converters and the input pipeline.

Bad data never passes silently. Every reader takes ``on_error="raise" | "skip"``:
``"raise"`` stops at the first bad item with a :class:`DataError` naming it;
``"skip"`` drops it, counts it in a :class:`SkipReport` and says so at the end.
"""

import collections
import dataclasses
import logging

from keras_arcface.errors import (  # noqa: F401 (re-exported)
    ON_ERROR_CHOICES,
    DataError,
    InputError,
    bad_item,
    check_on_error,
)

logger = logging.getLogger("keras_arcface.data")


class UnsafePickleError(DataError):
    """A ``.bin`` pickle asked for a global that verification sets never contain."""


@dataclasses.dataclass
class SkipReport:
    """Counts of items skipped under ``on_error="skip"``, by reason.

    Args:
        counts: reason -> number of items skipped for it.
        examples: reason -> up to ``max_examples`` item names, for the message.
        max_examples: how many names to keep per reason.

    Example:
        >>> report = SkipReport()
        >>> report.add("corrupt image", "a/1.jpg")
        >>> report.total
        1
    """

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict = dataclasses.field(default_factory=dict)
    max_examples: int = 3

    def add(self, reason, item=None):
        self.counts[reason] += 1
        names = self.examples.setdefault(reason, [])
        if item is not None and len(names) < self.max_examples:
            names.append(str(item))

    @property
    def total(self):
        return sum(self.counts.values())

    def as_dict(self):
        return {"total": self.total, "by_reason": dict(self.counts), "examples": self.examples}

    def summary(self):
        if not self.total:
            return "no items skipped"
        parts = []
        for reason, count in sorted(self.counts.items()):
            shown = ", ".join(self.examples.get(reason, []))
            parts.append(f"{count} x {reason}" + (f" (e.g. {shown})" if shown else ""))
        return f"skipped {self.total} bad item(s): " + "; ".join(parts)


def handle_data_error(on_error, report, error):
    """Raises or records a :class:`DataError` according to the policy."""
    handle_bad_item(on_error, report, error.reason or "bad item", error.item, error.detail)


def handle_bad_item(on_error, report, reason, item, detail=""):
    """Raises or records one bad item according to the policy.

    Args:
        on_error: ``"raise"`` or ``"skip"``.
        report: the :class:`SkipReport` that counts skips.
        reason: a short category ("corrupt image", "label out of range", ...).
        item: what was bad (a path, a record key).
        detail: extra text for the message.

    Example:
        >>> handle_bad_item("skip", SkipReport(), "corrupt image", "x.jpg")
    """
    message = f"{reason}: {item}" + (f" ({detail})" if detail else "")
    if on_error == "raise":
        raise DataError(
            message + ". Pass on_error='skip' (--on-error skip) to drop bad items and count them.",
            reason=reason,
            item=item,
            detail=detail,
        )
    report.add(reason, item)
    logger.warning("skipping %s", message)
