"""One list metric of a run: its in-memory buffers, its thinning, and its share of the execution's cap.

The caller's thread appends to the buffers; the delivery worker drains them
and thins what it drained (:mod:`craft_callbacks.thinning` holds the rules).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from craft_callbacks.exceptions import MetricLimitWarning
from craft_callbacks.names import KeyNames, cache_key
from craft_callbacks.notices import Notices
from craft_callbacks.thinning import ListThinner, SharedCaps
from craft_callbacks.values import Number

Appenders = tuple[Callable[[Number], None], Callable[[int | None], None]]


class Series:
    """The buffers and thinning state of one list metric.

    Values and steps live in two parallel lists of untracked objects (floats,
    ints): no allocation the garbage collector must walk. The caller appends
    the value first, then the step, so the first ``len(steps)`` entries of
    both are always complete pairs.
    """

    __slots__ = ("appenders", "held", "last", "last_step", "name", "steps", "thinner", "values")

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.values: list[Number] = []
        self.steps: list[int | None] = []
        self.appenders: Appenders = (self.values.append, self.steps.append)
        self.thinner = ListThinner(cap)
        self.last: Number | None = None
        self.last_step: int | None = None
        self.held: int | None = None  # values the execution held before this run's (None: not known yet)

    def drain(self) -> tuple[list[int | None], list[Number]]:
        """Remove and return the complete pairs appended so far (worker thread)."""
        count = len(self.steps)
        steps = self.steps[:count]
        values = self.values[:count]
        del self.steps[:count]
        del self.values[:count]
        return steps, values

    def forget(self) -> None:
        """Drop what the buffers hold (a forked child never sends its parent's values)."""
        self.values.clear()
        self.steps.clear()

    def fit_share(
        self, caps: SharedCaps, run: str, held: int, cap: int, log: logging.Logger, notices: Notices
    ) -> None:
        """Before the first values are thinned: the list's cap is what execution ``run`` has left.

        The cap is per list per execution: a second run in one execution fits
        into what the first left, and runs recording at once share it.
        """
        self.held = held
        caps.join((run, self.name), self.thinner, held, cap)
        left = self.thinner.cap
        if left == cap:
            return
        log.info(
            "craft_callbacks: list metric %r of execution %s already holds %s values (a continued or "
            "earlier run), or another run records it at once; this run has %s of its cap of %s",
            self.name,
            run,
            f"{held:,}",
            f"{left:,}",
            f"{cap:,}",
        )
        if not left:
            notices.defer(
                MetricLimitWarning,
                f"thin:{self.name}",
                f"list metric {self.name!r} already holds {held:,} values in execution {run} (an earlier "
                f"run), the cap of {cap:,}: this run's values of it are dropped",
            )

    def leave_share(self, caps: SharedCaps, run: str, cap: int) -> None:
        """The run ended: what it did not use of its share goes back to the others."""
        if self.held is not None:
            caps.leave((run, self.name), self.thinner, cap)

    def thin(
        self, steps: list[int | None], values: list[Number], events: int, expected: int | None
    ) -> tuple[list[int | None], list[Number], bool]:
        """The drained values kept under the cap (the last one is remembered), and whether thinning
        started with them."""
        self.last = values[-1]
        self.last_step = steps[-1]
        selection = self.thinner.select(len(values), events, expected)
        if selection.indices is not None:
            steps = [steps[index] for index in selection.indices]
            values = [values[index] for index in selection.indices]
        return steps, values, selection.thinning_started

    def thinning_message(self, run: str, cap: int, events: int, expected: int | None) -> str:
        """Why this list is thinned, in words."""
        what = f"the cap of {cap:,} values per list"
        if self.thinner.cap < cap:
            what = (
                f"its share of {what}, {self.thinner.cap:,} values (execution {run} "
                f"held {self.held or 0:,} before this run, or other runs record it at once)"
            )
        if expected and events <= expected:
            why = (
                f"is on course to pass {what}; it is thinned evenly over the {expected:,} expected "
                "logging events"
            )
        else:
            why = (
                f"passed half of {what} and the run's length is unknown; it is thinned more and more "
                "sparsely so it spans the whole run"
            )
        return f"list metric {self.name!r} {why} (its last value is always kept)"


class RunLists:
    """The list metrics of one run by name, and the appenders of every key the caller logged.

    Only string keys are cached where the hot path looks (:attr:`appenders`):
    ``1``, ``True`` and ``1.0`` are one dict key in Python but three metric
    names here, so other keys are cached by their type too.
    """

    def __init__(self, names: KeyNames, cap: int) -> None:
        self.by_name: dict[str, Series] = {}
        self.appenders: dict[str, Appenders] = {}
        self.appenders_of_other_keys: dict[tuple[type, Hashable], Appenders] = {}
        self._names = names
        self._cap = cap

    def __iter__(self) -> Iterator[Series]:
        return iter(list(self.by_name.values()))

    def appenders_for(self, key: Any) -> Appenders:
        """The appenders of a key seen for the first time (or of a non-string key, every time);
        the caller holds the run's lock."""
        if isinstance(key, str):
            appenders = self.appenders.get(key)
            if appenders is None:
                appenders = self.appenders[key] = self._series_named(key).appenders
            return appenders
        where = cache_key(key)
        appenders = self.appenders_of_other_keys.get(where)
        if appenders is None:
            appenders = self.appenders_of_other_keys[where] = self._series_named(key).appenders
        return appenders

    def _series_named(self, key: Any) -> Series:
        name = self._names.name_for(key)
        series = self.by_name.get(name)
        if series is None:
            series = self.by_name[name] = Series(name, self._cap)
        return series


__all__ = ["Appenders", "RunLists", "Series"]
