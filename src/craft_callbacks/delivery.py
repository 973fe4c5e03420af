"""Background delivery: batch what the recorder collected and hand it to the sink.

The training thread only appends to in-memory buffers. A daemon worker wakes
every ``flush_interval`` seconds (or sooner when asked), collects the new
values, and gives each list metric's new values to the sink in one call per
flush. A failing sink is retried with exponential backoff and jitter, and
nothing it raises reaches the training thread.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from craft_callbacks.exceptions import DeliveryWarning, PermanentError
from craft_callbacks.values import Number

if TYPE_CHECKING:  # the sinks package imports this module
    from craft_callbacks.sinks.local_store import LocalStore

logger = logging.getLogger("craft_callbacks")

LIST_REQUEST_LIMIT = 10_000  # the SDK splits larger lists into several requests
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0


@runtime_checkable
class Sink(Protocol):
    """Anything with the Craft AI SDK's two recording methods (``CraftAiSdk`` is one)."""

    def record_metric_value(self, name: str, value: Number) -> Any: ...

    def record_list_metric_values(self, name: str, values: list[Number]) -> Any: ...


@dataclass
class Outbox:
    """Values per metric name, in order: new ones collected, or ones a sink has not accepted."""

    lists: dict[str, tuple[list[int | None], list[Number]]] = field(default_factory=dict)
    scalars: dict[str, Number] = field(default_factory=dict)

    def add_list(self, name: str, steps: list[int | None], values: list[Number]) -> None:
        pending = self.lists.get(name)
        if pending is None:
            self.lists[name] = (steps, values)
        else:
            pending[0].extend(steps)
            pending[1].extend(values)

    def take(self, other: Outbox) -> None:
        """Move everything of ``other`` to the end of this outbox (``other`` is left empty)."""
        for name, (steps, values) in other.lists.items():
            self.add_list(name, steps, values)
        self.scalars.update(other.scalars)
        other.lists = {}
        other.scalars = {}

    def describe(self, *others: Outbox) -> str:
        """What this outbox (and ``others``) hold, in words: ``120 list values and 2 scalars``."""
        outboxes = (self, *others)
        values = sum(len(values) for box in outboxes for _, values in list(box.lists.values()))
        scalars = len({name for box in outboxes for name in list(box.scalars)})
        return f"{values:,} list values and {scalars} scalars"

    def __bool__(self) -> bool:
        return bool(self.lists or self.scalars)


def is_permanent(error: BaseException) -> bool:
    """Whether a sink error is a refusal that retrying cannot change."""
    if isinstance(error, PermanentError):
        return True
    for holder in (error, getattr(error, "response", None)):
        status = getattr(holder, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500 and status not in (401, 408, 429):
            return True
    return False


class Destination:
    """Where one run's metrics go: a sink, the run's execution id, and what it has not accepted.

    Each list's pending values go in requests of at most ``LIST_REQUEST_LIMIT``
    values (the SDK sends one HTTP request per call up to that size), and a
    request the sink accepted is never sent again. Subclasses hook into each
    step (the platform spools and reconciles there).
    """

    def __init__(self, sink: Any, execution_id: str, description: str) -> None:
        self.sink = sink
        self.execution_id = execution_id
        self.description = description
        self.pending = Outbox()
        self.rejected: dict[str, str] = {}
        self.rejected_values = 0
        self.progress = 0  # counts the units of work done (a request accepted, a write)
        self.list_request_limit = getattr(sink, "list_request_limit", LIST_REQUEST_LIMIT)

    def deliver(self, new: Outbox) -> None:
        """Take the new values and send everything pending; raises on a transient failure."""
        self.pending.take(new)
        for name in list(self.pending.lists):
            self._send_list(name)
        for name in list(self.pending.scalars):
            self._send_scalar(name)

    def _send_list(self, name: str) -> None:
        steps, values = self.pending.lists[name]
        if f"list {name}" in self.rejected:
            self.rejected_values += len(values)
            del self.pending.lists[name]
            return
        try:
            self._before_list(name)
        except Exception as error:
            if not is_permanent(error):
                self._after_failure(name, error)
                raise
            self._refuse("list", name, error, len(values))
            del self.pending.lists[name]
            return
        while values:
            chunk = values[: self.list_request_limit]
            try:
                self.sink.record_list_metric_values(name, chunk)
            except Exception as error:
                if not is_permanent(error):
                    self._after_failure(name, error)
                    raise
                self._refuse("list", name, error, len(values))
                break
            del steps[: len(chunk)]
            del values[: len(chunk)]
            self._after_list_accepted(name, len(chunk))
            self.progress += 1
        del self.pending.lists[name]

    def _send_scalar(self, name: str) -> None:
        value = self.pending.scalars[name]
        if f"scalar {name}" not in self.rejected:
            try:
                self.sink.record_metric_value(name, value)
            except Exception as error:
                if not is_permanent(error):
                    raise
                self._refuse("scalar", name, error, 1)
            else:
                self._after_scalar_accepted(name, value)
        else:
            self.rejected_values += 1
        del self.pending.scalars[name]

    def _refuse(self, kind: str, name: str, error: BaseException, count: int) -> None:
        self.rejected[f"{kind} {name}"] = str(error)
        self.rejected_values += count
        warnings.warn(
            f"craft_callbacks: the sink refused {kind} metric {name!r} ({error}); its values in "
            "this run are dropped, the other metrics keep flowing",
            DeliveryWarning,
            stacklevel=2,
        )

    def _before_list(self, name: str) -> None:
        """Called before a list's pending values are sent."""

    def _after_list_accepted(self, name: str, count: int) -> None:
        """Called when the sink accepted the next ``count`` values of a list."""

    def _after_scalar_accepted(self, name: str, value: Number) -> None:
        """Called when the sink accepted a scalar."""

    def _after_failure(self, name: str, error: BaseException) -> None:
        """Called when sending a list failed in a way worth retrying."""

    def record_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Keep hyperparameters where the sink has a place for them."""
        record = getattr(self.sink, "record_hyperparameters", None)
        if callable(record):
            record(params)

    def set_status(self, status: str) -> None:
        """Keep the run's final status where the sink has a place for it."""

    def keep_for_later(self, outbox: Outbox) -> bool:
        """Keep values for a later delivery (the spool) without sending; False where there is no place."""
        return False

    def release(self) -> None:
        """The run is closed: let go of what the destination holds for it."""

    def how_to_deliver_later(self) -> str:
        """A sentence saying how undelivered values can still be delivered, or ''."""
        return ""


class StoreDestination(Destination):
    """A run in the local store: every flush is one SQLite transaction, steps included."""

    sink: LocalStore

    def deliver(self, new: Outbox) -> None:
        self.pending.take(new)
        self.sink.write(
            self.execution_id,
            lists=[(name, steps, values) for name, (steps, values) in self.pending.lists.items()],
            scalars=self.pending.scalars,
        )
        self.pending = Outbox()
        self.progress += 1

    def record_hyperparameters(self, params: Mapping[str, Any]) -> None:
        self.sink.set_hyperparameters(self.execution_id, params)

    def set_status(self, status: str) -> None:
        self.sink.set_status(self.execution_id, status)


class DeliveryWorker:
    """The daemon thread that moves collected values to a destination.

    ``collect(outbox, final)`` runs on the worker thread and moves the
    recorder's new values into the outbox; ``final`` is true on the last
    round, at close.
    """

    def __init__(
        self,
        collect: Callable[[Outbox, bool], None],
        destination: Destination,
        flush_interval: float,
    ) -> None:
        self.outbox = Outbox()
        self.destination = destination
        self._collect = collect
        self._interval = max(0.01, float(flush_interval))
        self._wake = threading.Event()
        self._state = threading.Condition()
        self._requested = 0
        self._done = 0
        self.rounds = 0
        self._stopping = False
        self._deadline = float("inf")
        self._failures = 0
        self._last_error: str | None = None
        self._warned = False
        # Run in a copy of the creator's context: the platform's injected execution context
        # (craft_ai_sdk's execution id) lives in a ContextVar, which new threads do not inherit.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="craft-callbacks-delivery", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def request_flush(self) -> None:
        """Wake the worker now (a buffer is large); returns at once."""
        self._wake.set()

    def wait_for_round(self, timeout: float) -> bool:
        """Wake the worker and wait until it has collected once more; False on timeout."""
        with self._state:
            seen = self.rounds
            self._wake.set()
            return self._state.wait_for(lambda: self.rounds > seen or not self.alive, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything collected before this call is delivered; False on timeout."""
        with self._state:
            self._requested += 1
            target = self._requested
        self._wake.set()
        with self._state:
            return self._state.wait_for(lambda: self._done >= target or not self.alive, timeout)

    def stop(self, timeout: float) -> bool:
        """Deliver everything (a last collect included) and end the thread; False if it ran out of time."""
        with self._state:
            self._stopping = True
            self._deadline = time.monotonic() + timeout
        self._wake.set()
        self._thread.join(timeout + 1.0)
        return not self._thread.is_alive() and not self.outbox and not self.destination.pending

    def _run(self) -> None:
        delay = self._interval
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            with self._state:
                stopping = self._stopping
                target = self._requested
            delivered = self._round(final=stopping)
            if delivered:
                delay = self._interval
                with self._state:
                    self._done = max(self._done, target)
                    self._state.notify_all()
            else:
                delay = self._backoff()
            if stopping and (delivered or time.monotonic() + min(delay, 1.0) >= self._deadline):
                with self._state:
                    self._state.notify_all()
                return
            if stopping:
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))

    def _round(self, final: bool) -> bool:
        try:
            self._collect(self.outbox, final)
            with self._state:
                self.rounds += 1
                self._state.notify_all()
            if self.outbox or self.destination.pending:
                self.destination.deliver(self.outbox)
        except Exception as error:
            self._failures += 1
            self._last_error = f"{type(error).__name__}: {error}"
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"craft_callbacks: delivering metrics to {self.destination.description} failed "
                    f"({self._last_error}); retrying in the background, training goes on",
                    DeliveryWarning,
                    stacklevel=2,
                )
            return False
        if self._failures:
            logger.info(
                "craft_callbacks: delivery to %s recovered after %d failed attempts",
                self.destination.description,
                self._failures,
            )
        self._failures = 0
        return True

    def _backoff(self) -> float:
        base = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2.0 ** max(0, self._failures - 1))
        jitter: float = random.uniform(0.5, 1.0)
        return base * jitter

    @property
    def last_error(self) -> str | None:
        return self._last_error
