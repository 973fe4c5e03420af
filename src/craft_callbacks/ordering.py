"""Put per-step events that arrive out of order (from a thread pool) back in step order.

Keras dispatches the batch hooks of an ``async_safe`` callback to a thread
pool, so the logs of batch 8 may reach the callback before those of batch 7.
The steps an adapter logs are known in advance (every ``stride``-th step), so
:class:`InOrder` holds an early event until the ones before it arrive and
releases everything in step order: lists stay exact. ``drain`` releases what
is held once the framework has run every hook of the period (an epoch).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Mapping
from typing import Any


class InOrder:
    """Release ``(step, metrics)`` events to ``emit`` in step order, each once.

    Expected steps are ``next``, ``next + stride``, ``next + 2 * stride``...;
    an event for a later step waits until the earlier ones were released.
    """

    def __init__(self, emit: Callable[[Mapping[str, Any], int], None], stride: int) -> None:
        self._emit = emit
        self._stride = max(1, stride)
        self._lock = threading.Lock()
        self._held: list[tuple[int, Mapping[str, Any]]] = []
        self._next: int | None = None

    def expect(self, step: int) -> None:
        """The first step expected from now on (everything before it has arrived)."""
        with self._lock:
            self._next = step

    def add(self, step: int, metrics: Mapping[str, Any]) -> None:
        with self._lock:
            heapq.heappush(self._held, (step, metrics))
            while self._held and (self._next is None or self._held[0][0] <= self._next):
                ready, ready_metrics = heapq.heappop(self._held)
                self._emit(ready_metrics, ready)
                self._next = ready + self._stride

    def drain(self) -> None:
        """Release everything held, in step order."""
        with self._lock:
            while self._held:
                ready, ready_metrics = heapq.heappop(self._held)
                self._emit(ready_metrics, ready)
            self._next = None
