"""MemorySink: keeps what it receives in Python objects, for tests and notebooks."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from craft_callbacks.values import Number


class MemorySink:
    """A sink with the SDK's two recording methods that keeps everything in memory.

    ``lists`` maps each list metric to its values in order, ``scalars`` each
    scalar metric to its last value, ``calls`` every call received, in order.
    """

    def __init__(self) -> None:
        self.lists: dict[str, list[Number]] = {}
        self.scalars: dict[str, Number] = {}
        self.hyperparameters: dict[str, Any] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()

    def record_metric_value(self, name: str, value: Number) -> None:
        """Set the scalar metric ``name`` (the last value wins)."""
        with self._lock:
            self.scalars[name] = value
            self.calls.append(("record_metric_value", name, value))

    def record_list_metric_values(self, name: str, values: Number | list[Number]) -> None:
        """Append one value or a list of values to the list metric ``name``."""
        batch = list(values) if isinstance(values, list) else [values]
        with self._lock:
            self.lists.setdefault(name, []).extend(batch)
            self.calls.append(("record_list_metric_values", name, batch))

    def record_hyperparameters(self, params: Mapping[str, Any]) -> None:
        """Merge ``params`` into the hyperparameters of the run."""
        with self._lock:
            self.hyperparameters.update(params)

    def __repr__(self) -> str:
        return f"MemorySink({len(self.lists)} lists, {len(self.scalars)} scalars)"
