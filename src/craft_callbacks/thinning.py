"""Keep each list metric under the platform's per-list cap (50,000 values per execution).

Values already delivered cannot be taken back from the platform, so a list
must be thinned *while* it is recorded. :class:`ListThinner` decides, chunk by
chunk on the background worker, which of a list's new values are kept:

* never more than ``cap`` values;
* a list that will not reach the cap is never thinned;
* known total (the adapter passed the expected number of logging events):
  the list's final length is projected from its own rate, and when the
  projection passes the cap the rest of the list is thinned evenly so the
  whole run fits and nearly all the cap is used;
* unknown total (or a run that outlives its estimate): up to half the cap is
  kept as it comes; then every 2nd value, every 4th, ... each phase taking a
  third of the remaining room, so the list spans the whole run.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from craft_callbacks.defaults import DEFAULT_MAX_LIST_VALUES


@dataclass
class Selection:
    """Which values of a chunk are kept: ``None`` means all of them."""

    indices: list[int] | None
    thinning_started: bool = False


@dataclass
class ListThinner:
    """The thinning state of one list metric in one run."""

    cap: int = DEFAULT_MAX_LIST_VALUES
    seen: int = 0
    kept: int = 0
    thinned: int = 0
    last_kept: bool = True
    _position: float = field(default=0.0, repr=False)
    _stride: int = field(default=1, repr=False)
    _skip: int = field(default=0, repr=False)
    _phase_room: int = field(default=0, repr=False)
    _graceful: bool = field(default=False, repr=False)
    _thinning: bool = field(default=False, repr=False)
    _reported: bool = field(default=False, repr=False)

    def select(self, count: int, events: int, expected_events: int | None) -> Selection:
        """Choose which of the next ``count`` values to keep.

        ``events`` is the number of logging events so far in the run and
        ``expected_events`` the number the adapter expects in all (or None).
        """
        start = self.seen
        self.seen += count
        if count <= 0:
            return Selection(None)
        known = expected_events is not None and expected_events > 0 and events <= expected_events
        if not self._thinning:
            projected = self._projected(events, expected_events) if known else self.seen
            fits = projected <= self.cap and self.kept + count <= self.cap
            if fits and (known or self.kept + count <= self.cap // 2):
                self.kept += count
                self.last_kept = True
                return Selection(None)
            self._thinning = True
        if known and not self._graceful:
            indices = self._even(start, count, events, expected_events or 0)
        else:
            indices = self._phases(count)
        dropped = count - len(indices)
        self.kept += len(indices)
        self.thinned += dropped
        self.last_kept = bool(indices) and indices[-1] == count - 1
        started = dropped > 0 and not self._reported
        self._reported = self._reported or started
        return Selection(indices, started)

    def keep_last(self) -> bool:
        """At the end of the run: whether the list's last value, thinned away, is kept after all.

        Thinning leaves one value of the cap free for it, so a thinned list
        always ends with the run's final value.
        """
        if self.last_kept or self.kept >= self.cap:
            return False
        self.kept += 1
        self.thinned -= 1
        self.last_kept = True
        return True

    @property
    def _room(self) -> int:
        """Values that may still be kept while thinning (one is saved for the last value)."""
        return max(0, self.cap - 1 - self.kept)

    def _projected(self, events: int, expected_events: int | None) -> float:
        if not events or not expected_events:
            return float(self.seen)
        return max(float(self.seen), self.seen * expected_events / events)

    def _even(self, start: int, count: int, events: int, expected: int) -> list[int]:
        """Keep an even share of the chunk so the projected list ends at the cap."""
        room = self._room
        remaining = self._projected(events, expected) - start
        ratio = 1.0 if remaining <= 0 else min(1.0, room / remaining)
        kept: list[int] = []
        position = self._position
        for index in range(count):
            if len(kept) >= room:
                break
            before = int(position)
            position += ratio
            if int(position) > before or (index == 0 and start == 0):
                kept.append(index)
        self._position = position - int(position)
        return kept

    def _phases(self, count: int) -> list[int]:
        """Graceful thinning when the total is unknown: strides 1, 2, 4, ...

        Kept positions are computed by stride arithmetic, in time proportional
        to what is kept, not to the chunk: a long run thinned hard costs the
        worker little.
        """
        if not self._graceful:
            self._graceful = True
            self._phase_room = self.cap // 2 - self.kept
            if self._phase_room <= 0:
                self._next_phase(0)
        room = self._room
        kept: list[int] = []
        position = 0  # the next index of the chunk to consider
        while position < count and len(kept) < room:
            if self._skip >= count - position:  # the rest of the chunk is skipped
                self._skip -= count - position
                break
            position += self._skip  # the next kept index
            take = min(self._phase_room, room - len(kept), (count - 1 - position) // self._stride + 1)
            kept.extend(range(position, position + take * self._stride, self._stride))
            last = position + (take - 1) * self._stride
            self._phase_room -= take
            if self._phase_room <= 0:
                self._next_phase(len(kept))
            else:
                self._skip = self._stride - 1
            position = last + 1
        return kept

    def _next_phase(self, kept_now: int) -> None:
        """Halve the density: double the stride, spend a third of the remaining room."""
        self._stride *= 2
        self._skip = self._stride - 1
        self._phase_room = max(1, (self.cap - 1 - self.kept - kept_now) // 3)


@dataclass
class _Sharers:
    """The lists of one name filling one execution's list at the same time."""

    base: int  # values the execution's list held before (or that sharers who left kept)
    thinners: list[ListThinner] = field(default_factory=list)


class SharedCaps:
    """Split one execution's per-list cap among the recorders filling that list at once.

    The cap is per list per *execution*: a run alone gets what earlier runs
    left (``cap - held``); runs that record the same list at the same time
    (several recorders in one process) share what is left evenly, and what a
    run that ends did not use goes to the others. A run counts from its start
    (:meth:`open_run`), not from its first values of the list: shares do not
    depend on which run's worker happened to collect first. Thread-safe: each
    recorder's worker calls it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sharers: dict[tuple[str, str], _Sharers] = {}
        # the runs recording, per execution (weakly: a run dropped unclosed stops counting)
        self._open: dict[str, weakref.WeakSet[Any]] = {}

    def open_run(self, execution_id: str, run: Any) -> None:
        """``run`` (of ``execution_id``) starts: it will have its share of every list."""
        with self._lock:
            self._open.setdefault(execution_id, weakref.WeakSet()).add(run)

    def close_run(self, execution_id: str, run: Any, cap: int) -> None:
        """``run`` ended (after it left its lists): the others share its room."""
        with self._lock:
            runs = self._open.get(execution_id)
            if runs is not None:
                runs.discard(run)
            for (execution, _), sharers in self._sharers.items():
                if execution == execution_id:
                    _share(sharers, cap, self._running(execution_id))

    def _running(self, execution_id: str) -> int:
        runs = self._open.get(execution_id)
        return len(runs) if runs is not None else 0

    def join(self, key: tuple[str, str], thinner: ListThinner, held: int, cap: int) -> None:
        """``thinner`` starts filling the list ``key`` (execution, name), which held ``held`` values."""
        with self._lock:
            sharers = self._sharers.setdefault(key, _Sharers(held))
            sharers.thinners.append(thinner)
            _share(sharers, cap, self._running(key[0]))

    def leave(self, key: tuple[str, str], thinner: ListThinner, cap: int) -> None:
        """``thinner``'s run ended: its values stay in the list, its unused room goes to the others."""
        with self._lock:
            sharers = self._sharers.get(key)
            if sharers is None or thinner not in sharers.thinners:
                return
            sharers.thinners.remove(thinner)
            sharers.base += thinner.kept
            if sharers.thinners:
                _share(sharers, cap, self._running(key[0]) - 1)
            else:
                del self._sharers[key]


def _share(sharers: _Sharers, cap: int, runs_open: int) -> None:
    """Even shares of the room among the runs recording (those yet to log the list included); a
    sharer that already kept more than its share keeps what it has."""
    room = max(0, cap - sharers.base)
    pending = sorted(sharers.thinners, key=lambda thinner: thinner.kept, reverse=True)
    absent = max(0, runs_open - len(pending))  # runs that have not logged this list yet
    while pending:
        fair = room // (len(pending) + absent)
        thinner = pending[0]
        if thinner.kept <= fair:
            break
        thinner.cap = thinner.kept  # values already sent cannot be taken back
        room -= thinner.kept
        pending.pop(0)
    shares = len(pending) + absent
    for index, thinner in enumerate(pending):
        thinner.cap = room // shares + (1 if index < room % shares else 0)
