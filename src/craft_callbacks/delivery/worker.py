"""The delivery worker: the daemon thread that moves collected values to a destination.

The training thread only appends to in-memory buffers. The worker wakes every
``flush_interval`` seconds (or sooner when asked), collects the new values,
and gives each list metric's new values to the destination in one call per
round. A failing sink is retried with exponential backoff and jitter, and
nothing it raises reaches the training thread.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Final

from craft_callbacks.delivery.destination import Destination, Outbox
from craft_callbacks.delivery.retry import BACKOFF
from craft_callbacks.exceptions import DeliveryWarning, LocalStoreError

logger = logging.getLogger("craft_callbacks")

# At close, a local fault (the store cannot be written) is tried this many more rounds, not
# for the whole close timeout: waiting does not mend a full disk or a damaged file.
LOCAL_TRIES_AT_CLOSE: Final = 2
# The longest the caller waits for the worker when logging outpaces delivery; after one in
# which the worker got nothing done (a stalled sink) it does not wait again until the worker moves on.
BACKLOG_WAIT_S: Final = 0.2


class DeliveryWorker:
    """The daemon thread that moves collected values to a destination.

    Every ``flush_interval`` (or sooner when asked) it collects the new
    values and gives them to the destination's ``take`` (a spooling
    destination writes its spool there), so the spool keeps pace with
    training whatever the remote does. It sends when no retry backoff is
    running; after a failure the next send waits per :data:`~craft_callbacks.delivery.retry.BACKOFF`.

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
        self._local_failures = 0
        self._next_send = 0.0
        self._last_error: str | None = None
        self._warned: set[str] = set()
        self.gave_up_locally = False
        self._stalled_at: tuple[int, int] | None = None
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

    def wait_for_backlog(self) -> None:
        """Logging outpaces delivery: let the worker take the backlog, so memory stays bounded.

        Only a loop that logs faster than the sink can write ever gets here (a
        training step that computes anything is far slower). A stalled sink
        (a request hanging until its timeout) costs one short wait, not one per wake.
        """
        before = (self.rounds, self.destination.progress)
        if before == self._stalled_at:
            return
        if self.wait_for_round(BACKLOG_WAIT_S):
            return
        if (self.rounds, self.destination.progress) == before:
            self._stalled_at = before

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything collected before this call is delivered; False on timeout."""
        with self._state:
            self._requested += 1
            target = self._requested
            self._next_send = 0.0  # an explicit flush tries at once
        self._wake.set()
        with self._state:
            return self._state.wait_for(lambda: self._done >= target or not self.alive, timeout)

    def stop(self, timeout: float) -> bool:
        """Deliver everything (a last collect included) and end the thread; False if it ran out of time."""
        with self._state:
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._next_send = 0.0
        self._wake.set()
        self._thread.join(timeout + 1.0)
        return not self._thread.is_alive() and not self.outbox and not self.destination.pending

    def account(self, complete: bool, close_timeout: float) -> str:
        """After :meth:`stop`: where the run's values are (delivered, in the spool, lost), in words."""
        if self.outbox:  # collected but never handed to the destination
            self.destination.pending.absorb(self.outbox)
        if complete:
            why = "not delivered"
        elif self.gave_up_locally:
            why = f"{self.destination.description} could not be written ({self.last_error})"
        else:
            why = f"not accepted by {self.destination.description} within {close_timeout:g} s"
        account = self.destination.whereabouts(why)
        return account.words(self.destination.description, self.destination.spool_phrase())

    def undelivered(self, close_timeout: float, whereabouts: str) -> str:
        """What :meth:`stop` left undelivered, in words, with how to deliver what is in the spool."""
        spool = self.destination.spool_path()
        how = f" Deliver the spooled ones with: craft-callbacks sync --spool {spool}" if spool else ""
        return (
            f"some values could not be delivered to {self.destination.description} within "
            f"{close_timeout:g} s (last error: {self.last_error}): {whereabouts}.{how}"
        )

    def _run(self) -> None:
        delay = self._interval
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            with self._state:
                stopping = self._stopping
                target = self._requested
            taken = self._take(final=stopping)
            now = time.monotonic()
            delivered = False
            if now >= self._next_send:
                delivered = self._send() and taken
                if delivered:
                    with self._state:
                        self._done = max(self._done, target)
                        self._state.notify_all()
            delay = self._interval
            if self._failures:
                delay = max(0.0, min(delay, self._next_send - now))
            if stopping:
                over = now + min(delay, 1.0) >= self._deadline
                if self._local_failures > LOCAL_TRIES_AT_CLOSE:
                    self.gave_up_locally = True
                if delivered or over or self.gave_up_locally:
                    with self._state:
                        self._state.notify_all()
                    return
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))

    def _take(self, final: bool) -> bool:
        """Collect the new values and hand them to the destination (its spool); False on a failure."""
        try:
            self._collect(self.outbox, final)
            with self._state:
                self.rounds += 1
                self._state.notify_all()
            self.destination.take(self.outbox)
        except Exception as error:
            if isinstance(error, LocalStoreError):
                self._local_failures += 1
            self._note_failure("writing", error)
            return False
        self._local_failures = 0
        return True

    def _send(self) -> bool:
        """Send what the destination holds; False (and a backoff) on a failure."""
        try:
            if self.destination.pending:
                self.destination.send()
        except Exception as error:
            self._failures += 1
            self._next_send = time.monotonic() + BACKOFF.delay(self._failures)
            self._note_failure("delivering", error)
            return False
        if self._failures:
            logger.info(
                "craft_callbacks: delivery to %s recovered after %d failed attempts",
                self.destination.description,
                self._failures,
            )
        self._failures = 0
        self._next_send = 0.0
        return True

    def _note_failure(self, doing: str, error: BaseException) -> None:
        self._last_error = f"{type(error).__name__}: {error}"
        if doing in self._warned:
            return
        self._warned.add(doing)
        spool = self.destination.spool_path()
        kept = (
            f"values not yet accepted are kept in the spool {spool}"
            if spool and doing == "delivering"
            else "values not yet written are kept in memory"
        )
        warnings.warn(
            f"craft_callbacks: {doing} metrics to {self.destination.description} failed "
            f"({self._last_error}); retrying in the background, training goes on ({kept})",
            DeliveryWarning,
            stacklevel=2,
        )

    @property
    def last_error(self) -> str | None:
        return self._last_error
