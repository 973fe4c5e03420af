"""DigitalHubSink: a DigitalHub run or model entity as a sink, through the ``digitalhub`` package.

The entity's ``log_metric`` reads the entity's metrics, merges on the client
and writes the metric's whole value back (a GET and a PUT). The recorder
batches, so each list costs one such call per flush, not one per value.

DigitalHub keeps one value *or* one series per name, so a scalar never
overwrites a series: the end-of-run scalar the recorder derives from a
list's last value is already the series' last value and is not written; an
explicit scalar that differs is refused with one warning.

Exactly once: the sink knows how many values each series holds on the
entity. After any failed call it reads the count back before sending again,
and sends only what did not land.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache
from typing import Any

from craft_callbacks.exceptions import PermanentError
from craft_callbacks.values import Number


class DigitalHubSink:
    """Record metrics into a DigitalHub entity: ``CraftAiCallback(sink=DigitalHubSink(run))``.

    ``entity`` is a run or a model of the ``digitalhub`` package (anything
    with its ``log_metric`` and ``metrics``). Lists append with
    ``log_metric(name, values)``; scalars use ``log_metric(name, value,
    single_value=True, overwrite=True)``, so the last value wins.
    """

    def __init__(self, entity: Any) -> None:
        if not callable(getattr(entity, "log_metric", None)) or not hasattr(type(entity), "metrics"):
            raise TypeError(
                f"DigitalHubSink needs a DigitalHub run or model entity (with log_metric and metrics), "
                f"not {type(entity).__name__}"
            )
        self.entity = entity
        self._held: dict[str, int] = {}  # values each series holds on the entity
        self._last: dict[str, Number] = {}  # the last value this sink appended to each series
        self._unsure: set[str] = set()  # series whose last call failed: it may have landed
        self._lock = threading.Lock()

    @property
    def execution_id(self) -> str:
        """The entity's id: the run's id in the recorder's summary and the adapters."""
        return str(getattr(self.entity, "id", None) or getattr(self.entity, "name", "digitalhub"))

    @property
    def description(self) -> str:
        kind = getattr(self.entity, "ENTITY_TYPE", None) or type(self.entity).__name__.lower()
        project = getattr(self.entity, "project", None)
        return f"DigitalHub {kind} {self.execution_id}" + (f" (project {project})" if project else "")

    def __repr__(self) -> str:
        return f"DigitalHubSink({self.description})"

    def record_list_metric_values(self, name: str, values: Number | Sequence[Number]) -> None:
        """Append values to the series ``name`` of the entity (one GET and one PUT)."""
        batch: list[Number] = list(values) if isinstance(values, Sequence) else [values]
        with self._lock:
            held = self._held.get(name)
            if held is None or name in self._unsure:
                on_entity = self._series_length(name)
                if held is not None:  # the failed call's values are the head of this batch
                    batch = batch[min(max(0, on_entity - held), len(batch)) :]
                held = self._held[name] = on_entity
                self._unsure.discard(name)
            if not batch:
                return
            self._call(name, batch)
            self._held[name] = held + len(batch)
            self._last[name] = batch[-1]

    def record_metric_value(self, name: str, value: Number) -> None:
        """Set the single value ``name`` of the entity (the last value wins)."""
        with self._lock:
            if name in self._held:
                if self._last.get(name) == value:
                    return  # the series already ends with it
                raise PermanentError(
                    f"DigitalHub keeps one value or one series per name and {name!r} is a series "
                    f"on {self.description}; the single value {value!r} would replace it"
                )
            self._call(name, value, single_value=True, overwrite=True)

    def _call(self, name: str, value: Number | list[Number], **options: bool) -> None:
        try:
            self.entity.log_metric(name, value, **options)
        except Exception as error:
            if isinstance(error, _refusals()):
                raise PermanentError(f"{type(error).__name__}: {error}") from error
            self._unsure.add(name)
            raise

    def _series_length(self, name: str) -> int:
        """How many values the entity holds under ``name`` (refused if it holds a single value)."""
        held = self.entity.metrics.get(name)
        if held is None:
            return 0
        if not isinstance(held, list):
            raise PermanentError(
                f"{name!r} holds a single value on {self.description}; a series cannot be appended to it"
            )
        return len(held)


@cache
def _refusals() -> tuple[type[BaseException], ...]:
    """The ``digitalhub`` errors that retrying cannot change (400, 403, a missing entity)."""
    try:
        from digitalhub.utils import exceptions
    except ImportError:
        return ()
    return (
        exceptions.BadRequestError,
        exceptions.ForbiddenError,
        exceptions.EntityNotExistsError,
        exceptions.MissingSpecError,
    )
