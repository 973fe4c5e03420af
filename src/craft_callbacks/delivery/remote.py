"""RemoteDestination: a remote sink reached through the durable spool, each value once.

Every round of the delivery worker:

1. ``take``: the new values are written to the spool (SQLite, beside the
   local store), whether the remote is up, down or in a retry backoff, so a
   killed process loses at most the values of the last ``flush_interval``;
2. ``send`` (when no backoff runs): each list's pending values go in requests
   of at most 10,000 values, then scalars, and the spool records what the
   remote accepted.

Exactly once: only a 4xx proves a request was refused before it was
stored. After any other failure the list is *uncertain*: before it is sent
again, the remote's count for it is read and only what it lacks is sent. For
that, each list's ``base`` (the remote's count before the stream's first
value) is read before its first send and written to the spool before any of
its spooled values leave, so ``craft-callbacks sync`` can reconcile too.

The cap: before a list's first values are thinned, the remote's count says
how much of the per-execution cap earlier runs used (:meth:`held`); a last
guard before each send keeps any request from crossing the cap.

An unusable spool (full disk, unwritable folder) does not stop delivery: one
warning says values are sent without a durable copy, the spool is tried again
each round, and every count of what is where stays true.

A list of a run is one stream in the spool, whichever recorder writes it: a
recorder that meets a list left undelivered by a finished one (a first
``fit`` during an outage, a killed process) takes it over, counts and values,
and delivers those values before its own. Only while another live recorder
owns the list does a recorder spool it under a key of its own
(``<run_key>#<token>``).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import warnings
from dataclasses import dataclass, field
from typing import Any, Final

from craft_callbacks.delivery.destination import Destination, Outbox, Whereabouts
from craft_callbacks.delivery.retry import may_have_landed
from craft_callbacks.delivery.spool import UNVERIFIABLE, Spool
from craft_callbacks.exceptions import DeliveryWarning, LocalStoreError
from craft_callbacks.values import Number

logger = logging.getLogger("craft_callbacks")

_RECORDER_MARK: Final = "#"
_SPOOL_ERRORS: Final = (OSError, sqlite3.Error, LocalStoreError)


def run_of(spool_key: str) -> str:
    """The remote run a spool key belongs to (the key without its recorder part)."""
    return spool_key.partition(_RECORDER_MARK)[0]


class SpoolNotWritable(Exception):
    """A list's spooled values cannot leave before its base is in the spool (sync would resend them)."""


@dataclass
class _SpoolWrite:
    """What one transaction writes to the spool for one spool key."""

    lists: dict[str, tuple[int, list[Number]]] = field(default_factory=dict)
    last_steps: dict[str, int] = field(default_factory=dict)
    bases: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    scalars: dict[str, Number] = field(default_factory=dict)


class _Stream:
    """One list of the run, as a stream of sequence numbers shared with the spool.

    Pending values (in the destination's outbox) are the sequence numbers
    ``accepted`` to ``next_seq``; those below ``durable`` are in the spool.
    """

    __slots__ = (
        "accepted",
        "acked",
        "base",
        "base_durable",
        "durable",
        "inherited",
        "key",
        "last_step",
        "next_seq",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.accepted = 0  # values the remote accepted
        self.acked = 0  # of those, how many the spool knows
        self.next_seq = 0
        self.durable = 0
        self.inherited = 0  # values of an earlier recorder of this run, taken over
        self.base: int | None = None  # the remote's count before the stream; None: not read yet
        self.base_durable = False
        self.last_step: int | None = None  # the step of the stream's last value


class RemoteDestination(Destination):
    """A remote run: spooled first, chunked, retried, and reconciled by the remote's count."""

    def __init__(
        self, sink: Any, execution_id: str, description: str, spool: Spool | None, run_key: str
    ) -> None:
        super().__init__(sink, execution_id, description)
        self.spool = spool
        self.spool_key = run_key
        self.cap: int | None = None  # the remote's per-list cap, when it has one
        self._own_key = f"{run_key}{_RECORDER_MARK}{secrets.token_hex(6)}"
        self._streams: dict[str, _Stream] = {}
        self._uncertain: set[str] = set()
        self._unspooled_scalars: dict[str, Number] = {}
        self._spooled_scalars: dict[str, Number] = {}
        self.spool_error: str | None = None
        self._warned: set[str] = set()
        self._resumed = False
        self.replayed = 0  # values a resumed run logged again for steps the list already had

    def remote_count(self, name: str) -> int | None:
        """How many values the remote holds in list ``name``; None when it will not tell."""
        raise NotImplementedError

    # -- the worker's round ---------------------------------------------------------

    def resume_from(self, step: int) -> None:
        """The run resumes from a checkpoint: the remote's lists only grow, so values logged again
        for steps a list already has (sent or spooled before the restart) are not sent twice."""
        self._resumed = True

    def take(self, new: Outbox) -> None:
        for name, (steps, values) in new.lists.items():
            if f"list {name}" in self.rejected:  # a refused list is not kept for later
                self.rejected_values += len(values)
                continue
            stream = self._stream(name)
            if self._resumed and stream.last_step is not None:
                steps, values = self._not_replayed(stream.last_step, steps, values)
            if not values:
                continue
            stream.next_seq += len(values)
            if steps[-1] is not None:
                stream.last_step = steps[-1]
            self.pending.add_list(name, steps, values)
        self.pending.scalars.update(new.scalars)
        self._unspooled_scalars.update(new.scalars)
        new.lists, new.scalars = {}, {}
        self._write_spool()
        if self.pending:
            self.progress += 1

    def _not_replayed(
        self, last: int, steps: list[int | None], values: list[Number]
    ) -> tuple[list[int | None], list[Number]]:
        """Drop the values of steps up to ``last``: the list has them from before the resume."""
        keep = [index for index, at in enumerate(steps) if at is None or at > last]
        self.replayed += len(values) - len(keep)
        if len(keep) == len(values):
            return steps, values
        return [steps[index] for index in keep], [values[index] for index in keep]

    def held(self, name: str) -> int | None:
        stream = self._stream(name)
        if stream.base is None:
            try:
                self._learn_base(name, stream)
            except Exception:
                return None  # the remote does not answer yet: asked again next round
        base = 0 if stream.base is None or stream.base == UNVERIFIABLE else stream.base
        return base + stream.inherited

    def _before_list(self, name: str) -> None:
        stream = self._streams[name]
        if stream.base is None:
            self._learn_base(name, stream)
        if stream.durable > stream.accepted and not stream.base_durable:
            self._write_spool()
            if not stream.base_durable:
                raise SpoolNotWritable(
                    f"the spool {self._spool_label()} cannot record where list {name!r} starts on "
                    f"{self.description}; its spooled values wait until it can"
                )
        if name in self._uncertain:
            self._reconcile(name, stream)
        self._keep_under_cap(name, stream)

    def _learn_base(self, name: str, stream: _Stream) -> None:
        count = self.remote_count(name)
        stream.base = UNVERIFIABLE if count is None else count
        stream.base_durable = False

    def _reconcile(self, name: str, stream: _Stream) -> None:
        """After a failure that may have landed: drop what the remote already holds from what is pending."""
        steps, values = self.pending.lists[name]
        count = None if stream.base == UNVERIFIABLE else self.remote_count(name)
        self._uncertain.discard(name)
        if stream.base is None or count is None:
            self._warn_once(
                "unverifiable",
                f"a request for metric {name!r} may or may not have reached {self.description}, which "
                "does not let this process read its metrics back; it is sent again and a few values "
                "may appear twice",
            )
            return
        arrived = min(max(count - stream.base - stream.accepted, 0), len(values))
        if arrived:
            del steps[:arrived]
            del values[:arrived]
            self.delivered_values += arrived
            self._after_list_accepted(name, arrived)

    def _keep_under_cap(self, name: str, stream: _Stream) -> None:
        """The last guard: no request may cross the remote's per-list cap (it would be refused whole)."""
        if self.cap is None or stream.base is None or stream.base == UNVERIFIABLE:
            return
        steps, values = self.pending.lists[name]
        room = max(0, self.cap - stream.base - stream.accepted)
        excess = len(values) - room
        if excess <= 0:
            return
        keep = [*range(room - 1), len(values) - 1] if room else []
        self.pending.lists[name] = ([steps[i] for i in keep], [values[i] for i in keep])
        stream.next_seq = stream.accepted + len(keep)
        why = f"over the cap of {self.cap:,} values per list of the execution"
        self.lost[why] = self.lost.get(why, 0) + excess
        self._warn_once(
            f"cap:{name}",
            f"list metric {name!r} would pass the cap of {self.cap:,} values per list on "
            f"{self.description}, which already held {stream.base:,}; {excess:,} values that could not "
            "be thinned in time are dropped (the last value is kept)",
        )
        if self.spool is not None:
            try:
                self.spool.replace_pending(stream.key, name, stream.accepted, self.pending.lists[name][1])
            except _SPOOL_ERRORS as error:
                self._spool_failed(error)
                stream.durable = stream.accepted
                return
            stream.durable = stream.next_seq
            stream.acked = stream.accepted

    def _after_list_accepted(self, name: str, count: int) -> None:
        stream = self._streams[name]
        stream.accepted += count
        if self.spool is None or self.spool_error is not None:
            return  # the next successful spool write records it
        try:
            self.spool.mark_accepted(stream.key, name, stream.accepted)
        except _SPOOL_ERRORS as error:
            self._spool_failed(error)
        else:
            stream.acked = stream.accepted

    def _after_scalar_accepted(self, name: str, value: Number) -> None:
        if self._unspooled_scalars.get(name) == value:
            del self._unspooled_scalars[name]
        if self.spool is None or self._spooled_scalars.get(name) != value:
            return
        try:
            self.spool.scalar_done(self.spool_key, name, value)
        except _SPOOL_ERRORS as error:
            self._spool_failed(error)
        else:
            del self._spooled_scalars[name]

    def _after_failure(self, name: str, error: BaseException) -> None:
        if may_have_landed(error):
            self._uncertain.add(name)

    def _refuse(self, kind: str, name: str, error: BaseException, count: int) -> None:
        super()._refuse(kind, name, error, count)
        if self.spool is None:
            return
        try:
            if kind == "list":
                self.spool.mark_refused(self._streams[name].key, name, str(error))
            elif name in self._spooled_scalars:
                self.spool.scalar_done(self.spool_key, name, self._spooled_scalars.pop(name))
        except _SPOOL_ERRORS as error:
            self._spool_failed(error)

    # -- the spool ------------------------------------------------------------------

    def _stream(self, name: str) -> _Stream:
        """The list's stream; at first sight, what an earlier recorder of the run left is taken over."""
        stream = self._streams.get(name)
        if stream is not None:
            return stream
        try:
            left = self.spool.take_over(self.spool_key, name) if self.spool is not None else None
        except _SPOOL_ERRORS as error:
            self._spool_failed(error)
            left = None
        else:
            if left is None and self.spool is not None:  # a live recorder owns it
                stream = self._streams[name] = _Stream(self._own_key)
                return stream
        stream = self._streams[name] = _Stream(self.spool_key)
        if left is None:
            return stream
        stream.accepted = stream.acked = left.accepted
        stream.next_seq = stream.durable = stream.inherited = left.accepted + len(left.values)
        stream.last_step = left.last_step
        if left.values:
            self.pending.add_list(name, [None] * len(left.values), left.values)
        if left.base is not None:  # something was sent: a request may have landed untold
            stream.base, stream.base_durable = left.base, True
            if left.values:
                self._uncertain.add(name)
        return stream

    def _write_spool(self) -> None:
        """Make every pending value, base and accepted count durable: one transaction per spool key."""
        if self.spool is None:
            return
        writes: dict[str, _SpoolWrite] = {}
        for name, stream in self._streams.items():
            write = writes.setdefault(stream.key, _SpoolWrite())
            first = max(stream.durable, stream.accepted)
            if stream.next_seq > first and name in self.pending.lists:
                write.lists[name] = (first, self.pending.lists[name][1][first - stream.accepted :])
                if stream.last_step is not None:
                    write.last_steps[name] = stream.last_step
            if stream.base is not None and not stream.base_durable:
                write.bases[name] = stream.base
            if stream.acked < stream.accepted:
                write.accepted[name] = stream.accepted
        if self._unspooled_scalars:
            writes.setdefault(self.spool_key, _SpoolWrite()).scalars = dict(self._unspooled_scalars)
        try:
            for key, write in writes.items():
                if write.lists or write.bases or write.accepted or write.scalars:
                    self.spool.add(
                        key,
                        write.lists,
                        write.scalars,
                        bases=write.bases,
                        accepted=write.accepted,
                        last_steps=write.last_steps,
                    )
                    self._written(write)
        except _SPOOL_ERRORS as error:
            self._spool_failed(error)
            return
        self._spool_recovered()

    def _written(self, write: _SpoolWrite) -> None:
        """What one spool write made durable."""
        for name in write.lists:
            stream = self._streams[name]
            stream.durable = stream.next_seq
        for name in write.bases:
            self._streams[name].base_durable = True
        for name, accepted in write.accepted.items():
            self._streams[name].acked = accepted
        for name, value in write.scalars.items():
            self._spooled_scalars[name] = value
            if self._unspooled_scalars.get(name) == value:
                del self._unspooled_scalars[name]

    def _spool_failed(self, error: BaseException) -> None:
        first = self.spool_error is None
        self.spool_error = f"{type(error).__name__}: {error}"
        if first:
            self._warn_once(
                "spool",
                f"the spool {self._spool_label()} cannot be written ({self.spool_error}); metrics keep "
                f"going to {self.description} without a durable copy: values not yet accepted there are "
                "lost if this process dies. The spool is tried again every round",
            )

    def _spool_recovered(self) -> None:
        if self.spool_error is not None:
            self.spool_error = None
            logger.info("craft_callbacks: the spool %s can be written again", self._spool_label())

    def _spool_label(self) -> str:
        return str(self.spool.path) if self.spool is not None else "(none)"

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"craft_callbacks: {message}", DeliveryWarning, stacklevel=3)

    # -- the run's end ---------------------------------------------------------------

    def whereabouts(self, why_undelivered: str) -> Whereabouts:
        account = Whereabouts(self.delivered_values, self.delivered_scalars, lost=dict(self.lost))
        if self.rejected_values:
            account.lost["refused by the platform"] = self.rejected_values
        unkept = 0
        for name, (_, values) in self.pending.lists.items():
            stream = self._streams[name]
            in_spool = max(0, min(stream.durable, stream.next_seq) - stream.accepted)
            account.spooled_values += in_spool
            unkept += len(values) - in_spool
        for name, value in self.pending.scalars.items():
            if self._spooled_scalars.get(name) == value:
                account.spooled_scalars += 1
            else:
                unkept += 1
        if unkept:
            why = f"{why_undelivered}, and " + (
                f"the spool could not be written ({self.spool_error})"
                if self.spool is not None
                else "there is no spool"
            )
            account.lost[why] = account.lost.get(why, 0) + unkept
        return account

    def spool_path(self) -> str | None:
        if self.spool is None or self.spool_error is not None:
            return None
        return str(self.spool.path)

    def spool_phrase(self) -> str:
        if self.spool is None:
            return f"a spool (there is none: {self.spool_error})"
        if self.spool_error is not None:
            return f"the spool {self.spool.path} (it cannot be written: {self.spool_error})"
        return f"the spool {self.spool.path}"

    def release(self) -> None:
        if self.spool is None:
            return
        try:
            for key in {self.spool_key, *(stream.key for stream in self._streams.values())}:
                self.spool.release(key)
        except _SPOOL_ERRORS as error:
            self._spool_failed(error)
