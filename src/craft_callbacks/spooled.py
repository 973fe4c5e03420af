"""SpooledDestination: a remote sink reached through the durable spool, each value once.

Every round of the delivery worker:

1. spools the new values (SQLite, beside the local store) *before* sending;
2. sends each list's pending values in requests of at most 10,000 values,
   then scalars;
3. records in the spool what the remote accepted.

A request whose fate is unknown (connection dropped, timeout) is checked
against the count of values the remote reports before anything is sent again,
so a lost answer never duplicates values. A subclass says how to read that
count (``remote_count``) and under which key its run is spooled
(``spool_key``: ``craft-callbacks sync`` finds the remote from it).
"""

from __future__ import annotations

import warnings
from typing import Any

from craft_callbacks.delivery import Destination, Outbox
from craft_callbacks.exceptions import DeliveryWarning
from craft_callbacks.spool import UNVERIFIABLE, Spool
from craft_callbacks.values import Number


def is_uncertain(error: BaseException) -> bool:
    """A failure after which the request may or may not have reached the remote (no HTTP status)."""
    return getattr(error, "status_code", None) is None


class SpooledDestination(Destination):
    """A remote run: spooled first, chunked, retried, and reconciled by the remote's count."""

    def __init__(self, sink: Any, execution_id: str, description: str, spool: Spool, spool_key: str) -> None:
        super().__init__(sink, execution_id, description)
        self.spool = spool
        self.spool_key = spool_key
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
            lists = {}
            for name, (_, values) in new.lists.items():
                lists[name] = (self._spooled.get(name, 0), values)
            self.spool.add(self.spool_key, lists, dict(new.scalars))
            for name, (first, values) in lists.items():
                self._spooled[name] = first + len(values)
            self.progress += 1
        super().deliver(new)

    def _before_list(self, name: str) -> None:
        if name not in self._base:
            base = self._base[name] = self.remote_count(name)
            self.spool.set_base(self.spool_key, name, UNVERIFIABLE if base is None else base)
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
        self.spool.mark_accepted(self.spool_key, name, accepted)

    def _after_scalar_accepted(self, name: str, value: Number) -> None:
        self.spool.scalar_done(self.spool_key, name, value)

    def _after_failure(self, name: str, error: BaseException) -> None:
        if is_uncertain(error):
            self._uncertain.add(name)

    def _refuse(self, kind: str, name: str, error: BaseException, count: int) -> None:
        super()._refuse(kind, name, error, count)
        if kind == "list":
            self.spool.mark_refused(self.spool_key, name, str(error))
        else:
            self.spool.scalar_done(self.spool_key, name, self.pending.scalars[name])

    def release(self) -> None:
        self.spool.release(self.spool_key)

    def how_to_deliver_later(self) -> str:
        return (
            f" They are kept in the spool {self.spool.path}; deliver them with: "
            f"craft-callbacks sync --spool {self.spool.path}"
        )
