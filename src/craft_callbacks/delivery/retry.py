"""The one retry policy: which failures are retried, which refused, which may have landed.

Every caller that talks to a remote sink uses this module: the delivery
worker (between rounds), ``craft-callbacks sync`` and the end-of-run
delivery after ``close``. Three questions, one answer each:

* :func:`is_permanent`: a refusal that retrying cannot change (a 4xx other
  than 401, 408 and 429, or a :class:`~craft_callbacks.exceptions.PermanentError`).
  The metric is dropped with one warning; the others keep flowing.
* :func:`may_have_landed`: only an answer that proves the request was refused
  *before* it was stored (a 4xx, or a sink that said it sent nothing) is
  certain. Any other failure (a 5xx, a gateway's HTML 502/504, a 2xx whose
  body cannot be read, a timeout, a dropped connection) may have been stored:
  the remote's count is read before that list is sent again.
* :class:`Backoff`: exponential delays with jitter, from 0.5 s up to 30 s.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from craft_callbacks.exceptions import NotSentError, PermanentError

RETRYABLE_CLIENT_ERRORS: Final = frozenset({401, 408, 429})

T = TypeVar("T")


def http_status(error: BaseException) -> int | None:
    """The HTTP status an error carries (the SDK's ``status_code``, or its response's), or None."""
    for holder in (error, getattr(error, "response", None)):
        status = getattr(holder, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def is_permanent(error: BaseException) -> bool:
    """Whether a sink error is a refusal that retrying cannot change."""
    if isinstance(error, PermanentError):
        return True
    status = http_status(error)
    return status is not None and 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS


def may_have_landed(error: BaseException) -> bool:
    """Whether a failed write may still have been stored by the remote (only a 4xx proves it was not)."""
    if isinstance(error, (PermanentError, NotSentError)):
        return False
    status = http_status(error)
    return status is None or not 400 <= status < 500


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``first * 2**(n-1)`` seconds, at most ``longest``."""

    first: float = 0.5
    longest: float = 30.0

    def delay(self, failures: int) -> float:
        """How long to wait after the ``failures``-th failure in a row (1 for the first)."""
        base = min(self.longest, self.first * 2.0 ** max(0, failures - 1))
        jitter: float = random.uniform(0.5, 1.0)
        return base * jitter


BACKOFF: Final = Backoff()
SYNC_ATTEMPTS: Final = 4  # craft-callbacks sync: tries per list or scalar before reporting it


def retrying(
    call: Callable[[], T],
    attempts: int,
    backoff: Backoff = BACKOFF,
    deadline: float | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """Call ``call()`` until it succeeds, at most ``attempts`` times, waiting ``backoff`` between.

    A permanent error is raised at once; the last transient one is raised
    after the last attempt, or as soon as the next wait would pass
    ``deadline`` (a ``time.monotonic()`` value).
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as error:
            if is_permanent(error) or attempt == attempts:
                raise
            wait = backoff.delay(attempt)
            if deadline is not None and time.monotonic() + wait > deadline:
                raise
            sleep(wait)
    raise ValueError(f"attempts must be at least 1, not {attempts}")
