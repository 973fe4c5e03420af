"""SpooledDestination: a remote sink reached through the durable spool, each value once.

Every round of the delivery worker:

1. spools the new values (SQLite, beside the local store) *before* sending;
2. sends each list's pending values in requests of at most 10,000 values,
   then scalars;
3. records in the spool what the remote accepted.

A request whose fate is unknown (connection dropped, timeout) is checked
against the count of values the remote reports before anything is sent again,
so a lost answer never duplicates values. A subclass says how to read that
count (``remote_count``) and which remote run it writes to (``run_key``:
``craft-callbacks sync`` finds the remote from it).

A list of a run is one stream in the spool, whichever recorder writes it: a
recorder that meets a list left undelivered by a finished one (a first
``fit`` during an outage, a killed process) takes it over, counts and values,
and delivers those values before its own. Only while another live recorder
owns the list does a recorder spool it under a key of its own
(``<run_key>#<token>``).
"""

from __future__ import annotations

import secrets
import warnings
from typing import Any, Final

from craft_callbacks.delivery import Destination, Outbox
from craft_callbacks.exceptions import DeliveryWarning
from craft_callbacks.spool import UNVERIFIABLE, Spool
from craft_callbacks.values import Number

_RECORDER_MARK: Final = "#"


def run_of(spool_key: str) -> str:
    """The remote run a spool key belongs to (the key without its recorder part)."""
    return spool_key.partition(_RECORDER_MARK)[0]


def is_uncertain(error: BaseException) -> bool:
    """A failure after which the request may or may not have reached the remote (no HTTP status)."""
    return getattr(error, "status_code", None) is None


class SpooledDestination(Destination):
    """A remote run: spooled first, chunked, retried, and reconciled by the remote's count."""

    def __init__(self, sink: Any, execution_id: str, description: str, spool: Spool, run_key: str) -> None:
        super().__init__(sink, execution_id, description)
        self.spool = spool
        self.spool_key = run_key
        self._own_key = f"{run_key}{_RECORDER_MARK}{secrets.token_hex(6)}"
        self._key_of: dict[str, str] = {}  # each list's spool key
        self._spooled: dict[str, int] = {}
        self._accepted: dict[str, int] = {}
        self._base: dict[str, int | None] = {}
        self._uncertain: set[str] = set()
        self._warned_unverifiable = False

    def remote_count(self, name: str) -> int | None:
        """How many values the remote holds in list ``name``; None when it will not tell."""
        raise NotImplementedError

    def deliver(self, new: Outbox) -> None:
        if new:
            by_key: dict[str, dict[str, tuple[int, list[Number]]]] = {}
            for name, (_, values) in new.lists.items():
                if f"list {name}" not in self.rejected:  # a refused list is not kept for later
                    if name not in self._key_of:
                        self._take_over(name)
                    by_key.setdefault(self._key_of[name], {})[name] = (self._spooled.get(name, 0), values)
            for key, lists in by_key.items():
                self.spool.add(key, lists, {})
                for name, (first, values) in lists.items():
                    self._spooled[name] = first + len(values)
            if new.scalars:
                self.spool.add(self.spool_key, {}, dict(new.scalars))
            self.progress += 1
        super().deliver(new)

    def _take_over(self, name: str) -> None:
        """Continue the run's spooled list ``name``: its counts, and first the values it still holds."""
        left = self.spool.take_over(self.spool_key, name)
        if left is None:  # a live recorder owns it
            self._key_of[name] = self._own_key
            return
        self._key_of[name] = self.spool_key
        self._accepted[name] = left.accepted
        self._spooled[name] = left.spooled
        if left.values:
            self.pending.add_list(name, [None] * len(left.values), left.values)
        if left.base is not None:  # something was sent: a request may have landed untold
            self._base[name] = None if left.base == UNVERIFIABLE else left.base
            if left.values:
                self._uncertain.add(name)

    def _before_list(self, name: str) -> None:
        if name not in self._base:
            base = self._base[name] = self.remote_count(name)
            key = self._key_of.get(name, self.spool_key)
            self.spool.set_base(key, name, UNVERIFIABLE if base is None else base)
        if name in self._uncertain:
            self._reconcile(name)

    def _reconcile(self, name: str) -> None:
        """After an uncertain failure: drop what the remote already holds from what is pending."""
        base = self._base.get(name)
        steps, values = self.pending.lists[name]
        count = None if base is None else self.remote_count(name)
        if base is None or count is None:
            if not self._warned_unverifiable:
                self._warned_unverifiable = True
                warnings.warn(
                    f"craft_callbacks: a request for metric {name!r} may or may not have reached "
                    f"{self.description}, which does not let this process read its metrics back; it "
                    "is sent again and a few values may appear twice",
                    DeliveryWarning,
                    stacklevel=2,
                )
            self._uncertain.discard(name)
            return
        held = count - base
        arrived = min(max(held - self._accepted.get(name, 0), 0), len(values))
        if arrived:
            del steps[:arrived]
            del values[:arrived]
            self._after_list_accepted(name, arrived)
        self._uncertain.discard(name)

    def _after_list_accepted(self, name: str, count: int) -> None:
        accepted = self._accepted[name] = self._accepted.get(name, 0) + count
        self.spool.mark_accepted(self._key_of.get(name, self.spool_key), name, accepted)

    def _after_scalar_accepted(self, name: str, value: Number) -> None:
        self.spool.scalar_done(self.spool_key, name, value)

    def _after_failure(self, name: str, error: BaseException) -> None:
        if is_uncertain(error):
            self._uncertain.add(name)

    def _refuse(self, kind: str, name: str, error: BaseException, count: int) -> None:
        super()._refuse(kind, name, error, count)
        if kind == "list":
            self.spool.mark_refused(self._key_of.get(name, self.spool_key), name, str(error))
        else:
            self.spool.scalar_done(self.spool_key, name, self.pending.scalars[name])

    def keep_for_later(self, outbox: Outbox) -> bool:
        self.spool.add(self.spool_key, {}, dict(outbox.scalars))
        return True

    def release(self) -> None:
        for key in {self.spool_key, *self._key_of.values()}:
            self.spool.release(key)

    def how_to_deliver_later(self) -> str:
        return (
            f" They are kept in the spool {self.spool.path}; deliver them with: "
            f"craft-callbacks sync --spool {self.spool.path}"
        )
