"""Destinations: where one run's values go, what they have not accepted, and where each value is.

:class:`Destination` sends to any object with the SDK's two recording
methods, in requests of at most ``LIST_REQUEST_LIMIT`` values;
:class:`StoreDestination` writes the local store; the remote ones (the
platform, DigitalHub) are :class:`~craft_callbacks.delivery.remote.RemoteDestination`.
:class:`Whereabouts` counts a run's values as delivered, spooled or lost.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from craft_callbacks.delivery.retry import is_permanent, retrying
from craft_callbacks.exceptions import DeliveryWarning, NotSentError
from craft_callbacks.values import Number

if TYPE_CHECKING:
    from craft_callbacks.sinks.local_store import LocalStore

LIST_REQUEST_LIMIT = 10_000  # the SDK splits larger lists into several requests


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

    def absorb(self, other: Outbox) -> None:
        """Move everything of ``other`` to the end of this outbox (``other`` is left empty)."""
        for name, (steps, values) in other.lists.items():
            self.add_list(name, steps, values)
        self.scalars.update(other.scalars)
        other.lists = {}
        other.scalars = {}

    @property
    def list_values(self) -> int:
        """How many list values the outbox holds."""
        return sum(len(values) for _, values in list(self.lists.values()))

    def __bool__(self) -> bool:
        return bool(self.lists or self.scalars)


@dataclass
class Whereabouts:
    """Where a run's values are: delivered, kept in the spool, or lost (and why).

    Counts list values and scalars apart; ``lost`` maps each reason to how
    many values (list values and scalars together) it cost.
    """

    delivered_values: int = 0
    delivered_scalars: int = 0
    spooled_values: int = 0
    spooled_scalars: int = 0
    lost: dict[str, int] = field(default_factory=dict)

    @property
    def lost_count(self) -> int:
        return sum(self.lost.values())

    def words(self, destination: str, spool: str | None = None) -> str:
        """In words: ``3,000 list values and 2 scalars reached X, 10 list values and 0 scalars
        are in the spool P, 0 lost``. ``spool`` names the spool (None: the sink has none).
        A lost scalar counts as one value.
        """
        reached = f"{self.delivered_values:,} list values and {self.delivered_scalars} scalars"
        parts = [f"{reached} reached {destination}"]
        if spool is not None:
            parts.append(
                f"{self.spooled_values:,} list values and {self.spooled_scalars} scalars are in {spool}"
            )
        if self.lost:
            reasons = "; ".join(f"{why}: {count:,}" for why, count in sorted(self.lost.items()))
            parts.append(f"{self.lost_count:,} values lost ({reasons})")
        else:
            parts.append("0 lost")
        return ", ".join(parts)


class Destination:
    """Where one run's metrics go: a sink, the run's execution id, and what it has not accepted.

    Each round of the worker calls :meth:`take` (new values join what is
    pending; a spooling destination makes them durable there) and, when no
    retry backoff is running, :meth:`send`. Each list's pending values go in
    requests of at most ``LIST_REQUEST_LIMIT`` values (the SDK sends one HTTP
    request per call up to that size), and a request the sink accepted is
    never sent again. Subclasses hook into each step (the platform spools and
    reconciles there).
    """

    def __init__(self, sink: Any, execution_id: str, description: str) -> None:
        self.sink = sink
        self.execution_id = execution_id
        self.description = description
        self.pending = Outbox()
        self.rejected: dict[str, str] = {}
        self.rejected_values = 0
        self.progress = 0  # counts the units of work done (a request accepted, a write)
        self.delivered_values = 0
        self.delivered_scalars = 0
        self.lost: dict[str, int] = {}
        self.list_request_limit = getattr(sink, "list_request_limit", LIST_REQUEST_LIMIT)

    def take(self, new: Outbox) -> None:
        """New values join the pending ones (the caller's outbox is left empty)."""
        self.pending.absorb(new)

    def send(self) -> None:
        """Send everything pending; raises on a transient failure (what was accepted stays accepted)."""
        for name in list(self.pending.lists):
            self._send_list(name)
        for name in list(self.pending.scalars):
            self._send_scalar(name)

    def deliver(self, new: Outbox) -> None:
        """Take the new values and send everything pending; raises on a transient failure."""
        self.take(new)
        self.send()

    def deliver_after_close(
        self, scalars: dict[str, Number], still_sending: bool, timeout: float
    ) -> str | None:
        """End-of-run values that came after close: delivered before returning (a blocking write
        is fine now), with the end of a run's retries. None when they were delivered, else what
        went wrong and where they are, in words.

        ``still_sending``: the worker is still stuck in a request past close, so nothing is sent
        beside it; a spooling destination keeps the values in its spool.
        """
        deadline = time.monotonic() + timeout  # the spool write of take() counts too
        outbox = Outbox(scalars=dict(scalars))
        if still_sending:
            self.take(outbox)
            why = f"were not sent: delivery to {self.description} is still stuck"
            kept = self.whereabouts("delivery is still stuck").spooled_scalars
        else:
            try:
                self.take(outbox)
                retrying(self.send, attempts=3, deadline=deadline)
                return None
            except Exception as error:
                why = f"could not be delivered to {self.description} ({type(error).__name__}: {error})"
                kept = self.whereabouts("").spooled_scalars
        spool = self.spool_path()
        where = (
            f"they are in the spool {spool} (craft-callbacks sync --spool {spool})"
            if kept and spool
            else ("they are lost")
        )
        return f"end-of-run values {sorted(scalars)} {why}; {where}"

    def held(self, name: str) -> int | None:
        """How many values the list ``name`` holds before this run's own (the cap counts them).

        None while that cannot be known yet (the remote does not answer).
        """
        return 0

    def resume_from(self, step: int) -> None:
        """The run resumes from a checkpoint taken at ``step``: what it logs again must not be kept
        twice. A sink that keeps no steps cannot tell: nothing to do."""

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
                raise
            self._refuse("list", name, error, len(values))
            del self.pending.lists[name]
            return
        while values:
            chunk = values[: self.list_request_limit]
            try:
                sent(self.sink.record_list_metric_values(name, chunk))
            except Exception as error:
                if not is_permanent(error):
                    self._after_failure(name, error)
                    raise
                self._refuse("list", name, error, len(values))
                break
            del steps[: len(chunk)]
            del values[: len(chunk)]
            self.delivered_values += len(chunk)
            self._after_list_accepted(name, len(chunk))
            self.progress += 1
        del self.pending.lists[name]

    def _send_scalar(self, name: str) -> None:
        value = self.pending.scalars[name]
        if f"scalar {name}" not in self.rejected:
            try:
                sent(self.sink.record_metric_value(name, value))
            except Exception as error:
                if not is_permanent(error):
                    raise
                self._refuse("scalar", name, error, 1)
            else:
                self.delivered_scalars += 1
                self._after_scalar_accepted(name, value)
        else:
            self.rejected_values += 1
        del self.pending.scalars[name]

    def _refuse(self, kind: str, name: str, error: BaseException, count: int) -> None:
        self.rejected[f"{kind} {name}"] = str(error)
        self.rejected_values += count
        warnings.warn(
            f"craft_callbacks: {self.description} refused {kind} metric {name!r} ({error}); its "
            f"{count:,} values in this run are lost, the other metrics keep flowing",
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

    def whereabouts(self, why_undelivered: str) -> Whereabouts:
        """Where the run's values are now; pending values not kept anywhere count as lost."""
        account = Whereabouts(self.delivered_values, self.delivered_scalars, lost=dict(self.lost))
        if self.rejected_values:
            account.lost["refused by the sink"] = self.rejected_values
        unkept = self.pending.list_values + len(self.pending.scalars)
        if unkept:
            account.lost[why_undelivered] = account.lost.get(why_undelivered, 0) + unkept
        return account

    def spool_path(self) -> str | None:
        """The durable spool undelivered values wait in, or None where there is none (or it fails)."""
        return None

    def spool_phrase(self) -> str | None:
        """The spool in words, for messages (``the spool P``); None where the sink has none."""
        return None

    def release(self) -> None:
        """The run is closed: let go of what the destination holds for it."""


def sent(answer: Any) -> None:
    """The SDK's ``record_*`` return False when they sent nothing (outside an execution)."""
    if answer is False:
        raise NotSentError("the sink sent nothing (it answered False: not inside an execution?)")


class StoreDestination(Destination):
    """A run in the local store: every round is one SQLite transaction, steps included."""

    sink: LocalStore

    def __init__(self, sink: LocalStore, execution_id: str, description: str) -> None:
        super().__init__(sink, execution_id, description)
        self.replayed = 0  # values recorded after a resumed run's checkpoint, replaced
        self._held = sink.list_counts(execution_id)  # a continued run already holds these

    @property
    def description(self) -> str:
        """The store as it is now: a deleted store that could not be re-created moves elsewhere."""
        return f"local store {self.sink.path}"

    @description.setter
    def description(self, value: str) -> None:
        """Set by the base class; the store's path is what counts."""

    def take(self, new: Outbox) -> None:
        self.pending.absorb(new)
        if not self.pending:
            return
        self.sink.write(
            self.execution_id,
            lists=[(name, steps, values) for name, (steps, values) in self.pending.lists.items()],
            scalars=self.pending.scalars,
        )
        self.delivered_values += self.pending.list_values
        self.delivered_scalars += len(self.pending.scalars)
        self.pending = Outbox()
        self.progress += 1

    def send(self) -> None:
        """Nothing to send: :meth:`take` wrote everything."""

    def held(self, name: str) -> int | None:
        return self._held.get(name, 0)

    def resume_from(self, step: int) -> None:
        """Locally, the values the run recorded after the checkpoint are replaced by the resumed ones."""
        self.replayed = self.sink.forget_after(self.execution_id, step)
        self._held = self.sink.list_counts(self.execution_id)

    def record_hyperparameters(self, params: Mapping[str, Any]) -> None:
        self.sink.set_hyperparameters(self.execution_id, params)

    def set_status(self, status: str) -> None:
        self.sink.set_status(self.execution_id, status)
