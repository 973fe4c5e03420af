"""The once-only warnings of one run: each thing is said once, at the user's line, never per step.

A warning found on the delivery worker's thread is deferred and said on the
caller's next call, so it points at the user's code too. Anything that goes
wrong inside a call is one warning, never an exception into training.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any, Final

from craft_callbacks.exceptions import CraftCallbacksWarning, NonFiniteMetricWarning, NonNumericMetricWarning
from craft_callbacks.values import NON_FINITE, Rejected, describe_type

_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


class Notices:
    """What one run has said, and what its worker found to say on the caller's next call."""

    def __init__(self) -> None:
        self._said: set[tuple[str, str]] = set()
        self.deferred: list[tuple[type[CraftCallbacksWarning], str, str]] = []
        self.dropped: dict[str, dict[str, int]] = {
            "non-numeric": {},
            "non-finite": {},
        }  # why -> name -> count

    def said(self, category: type[CraftCallbacksWarning] | str, key: str) -> bool:
        """Whether ``(category, key)`` was said already; a category given as a word marks a log line."""
        name = category if isinstance(category, str) else category.__name__
        return (name, key) in self._said

    def mark(self, category: type[CraftCallbacksWarning] | str, key: str) -> bool:
        """Mark ``(category, key)`` as said; True the first time (say it then)."""
        name = category if isinstance(category, str) else category.__name__
        if (name, key) in self._said:
            return False
        self._said.add((name, key))
        return True

    def once(self, category: type[CraftCallbacksWarning], key: str, message: str) -> None:
        """Warn ``message`` the first time ``(category, key)`` comes up in this run."""
        if self.mark(category, key):
            warnings.warn(f"craft_callbacks: {message}", category, stacklevel=outside_package())

    def defer(self, category: type[CraftCallbacksWarning], key: str, message: str) -> None:
        """A warning found on the worker thread, said on the caller's next call (at its line)."""
        if not self.said(category, key):
            self.deferred.append((category, key, message))

    def say_deferred(self) -> None:
        while self.deferred:
            try:
                category, key, message = self.deferred.pop(0)
            except IndexError:  # another caller thread (Keras's async batch hooks) took the last one
                return
            self.once(category, key, message)

    def drop(self, name: str, rejected: Rejected, run: str) -> None:
        """A value of metric ``name`` is dropped: counted for the summary, said once per name and kind."""
        per_name = self.dropped[rejected.kind]
        per_name[name] = per_name.get(name, 0) + 1
        if rejected.kind == NON_FINITE:
            category: type[CraftCallbacksWarning] = NonFiniteMetricWarning
            what = "a non-finite value"
        else:
            category = NonNumericMetricWarning
            what = "a non-numeric value"
        self.once(
            category,
            name,
            f"metric {name!r} got {what} ({rejected.reason}); dropped. Later such values of "
            f"{name!r} in run {run} are dropped without another warning",
        )

    def forked(self, run: str, parent: int) -> None:
        """A call in a process forked from the one that created run ``run``: nothing is recorded."""
        self.once(
            CraftCallbacksWarning,
            "forked",
            f"this process ({os.getpid()}) was forked from the one that created the recorder of run "
            f"{run} (pid {parent}); values logged here are NOT recorded. Create a MetricRecorder in "
            "this process to record them (the parent's run records the parent's values)",
        )

    def failed(self, where: str, metrics: Any, error: BaseException) -> None:
        """A call that failed: said plainly when it was given no mapping, else an internal error."""
        if isinstance(metrics, Mapping):
            self.internal_error(where, error)
            return
        self.once(
            CraftCallbacksWarning,
            f"mapping:{where}",
            f"{where} takes a mapping of metric names to values, not {describe_type(metrics)}; "
            "nothing of such calls is recorded",
        )

    def internal_error(self, where: str, error: BaseException) -> None:
        self.once(
            CraftCallbacksWarning,
            f"internal:{where}",
            f"{where} failed ({type(error).__name__}: {error}); training goes on, "
            "some metrics of this call may be missing",
        )


def outside_package() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package."""
    frame = sys._getframe(2)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level
