"""Background delivery: batch what the recorder collected and hand it to the sink.

The training thread only appends to in-memory buffers. A daemon worker wakes
every ``flush_interval`` seconds (or sooner when asked), collects the new
values, and gives each list metric's new values to the sink in one call per
flush. A failing sink is retried with exponential backoff and jitter, and
nothing it raises reaches the training thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from craft_callbacks.exceptions import DeliveryWarning
from craft_callbacks.sinks.local_store import LocalStore
from craft_callbacks.values import Number

logger = logging.getLogger("craft_callbacks")

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 30.0


@runtime_checkable
class Sink(Protocol):
    """Anything with the Craft AI SDK's two recording methods (``CraftAiSdk`` is one)."""

    def record_metric_value(self, name: str, value: Number) -> Any: ...

    def record_list_metric_values(self, name: str, values: list[Number]) -> Any: ...


@dataclass
class Outbox:
    """Values collected but not yet accepted by the sink, per metric name, in order."""

    lists: dict[str, tuple[list[int | None], list[Number]]] = field(default_factory=dict)
    scalars: dict[str, Number] = field(default_factory=dict)

    def add_list(self, name: str, steps: list[int | None], values: list[Number]) -> None:
        pending = self.lists.get(name)
        if pending is None:
            self.lists[name] = (steps, values)
        else:
            pending[0].extend(steps)
            pending[1].extend(values)

    def describe(self) -> str:
        """What is pending, in words: ``120 list values and 2 scalars``."""
        values = sum(len(values) for _, values in self.lists.values())
        return f"{values:,} list values and {len(self.scalars)} scalars"

    def __bool__(self) -> bool:
        return bool(self.lists or self.scalars)


class PermanentError(Exception):
    """A sink refused values for good (a 4xx other than 401/408/429); retrying will not help."""


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
    """Where one run's metrics go: wraps a sink and knows the run's execution id."""

    def __init__(self, sink: Any, execution_id: str, description: str) -> None:
        self.sink = sink
        self.execution_id = execution_id
        self.description = description
        self.rejected: dict[str, str] = {}
        self.rejected_values = 0

    def deliver(self, outbox: Outbox) -> None:
        """Send the outbox; what was accepted leaves it. Raises on a transient failure."""
        for name in list(outbox.lists):
            _, values = outbox.lists[name]
            self._send("list", name, outbox.lists, values, len(values))
        for name in list(outbox.scalars):
            self._send("scalar", name, outbox.scalars, outbox.scalars[name], 1)

    def _send(self, kind: str, name: str, pending: dict[str, Any], payload: Any, count: int) -> None:
        """Send one metric's pending values; a refused metric is not sent again in this run."""
        label = f"{kind} {name}"
        if label in self.rejected:
            self.rejected_values += count
            del pending[name]
            return
        try:
            if kind == "list":
                self.sink.record_list_metric_values(name, payload)
            else:
                self.sink.record_metric_value(name, payload)
        except Exception as error:
            if not is_permanent(error):
                raise
            self.rejected[label] = str(error)
            self.rejected_values += count
            warnings.warn(
                f"craft_callbacks: the sink refused {kind} metric {name!r} ({error}); its values in "
                "this run are dropped, the other metrics keep flowing",
                DeliveryWarning,
                stacklevel=2,
            )
        del pending[name]

    def record_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Keep hyperparameters where the sink has a place for them."""
        record = getattr(self.sink, "record_hyperparameters", None)
        if callable(record):
            record(params)

    def set_status(self, status: str) -> None:
        """Keep the run's final status where the sink has a place for it."""


class StoreDestination(Destination):
    """A run in the local store: every flush is one SQLite transaction, steps included."""

    sink: LocalStore

    def deliver(self, outbox: Outbox) -> None:
        self.sink.write(
            self.execution_id,
            lists=[(name, steps, values) for name, (steps, values) in outbox.lists.items()],
            scalars=outbox.scalars,
        )
        outbox.lists.clear()
        outbox.scalars.clear()

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
        self._stopping = False
        self._deadline = float("inf")
        self._failures = 0
        self._last_error: str | None = None
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="craft-callbacks-delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def request_flush(self) -> None:
        """Wake the worker now (a buffer is large); returns at once."""
        self._wake.set()

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
        return not self._thread.is_alive() and not self.outbox

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
            if self.outbox:
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
