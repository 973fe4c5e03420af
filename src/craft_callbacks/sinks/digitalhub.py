"""DigitalHubSink: a DigitalHub run or model entity as a sink, through the ``digitalhub`` package.

The entity's ``log_metric`` reads the entity's metrics, merges on the client
and writes the metric's whole value back (a GET and a PUT). The recorder
batches, so each list costs one such call per flush, not one per value.

DigitalHub keeps one value *or* one series per name, so a scalar never
overwrites a series: the end-of-run scalar the recorder derives from a
list's last value is already the series' last value and is not written; a
single value that differs (an ``evaluate()`` after ``fit``) is written as
``<name>.final``, with one warning.

Delivery goes through the spool like the Craft AI platform's
(:class:`craft_callbacks.delivery.digitalhub.DigitalHubDestination`): values are spooled
before they are sent, a failed call is checked against the series' length on
the entity before anything is sent again, and ``craft-callbacks sync``
delivers what a crash or an outage left, to the entity it was recorded for.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any, Final

from craft_callbacks.exceptions import MetricNameWarning, PermanentError
from craft_callbacks.values import Number

LIST_UNLIMITED: Final = 1 << 62
FINAL_SUFFIX: Final = ".final"  # a single value whose name is a series on the entity
_NOTHING: Final = object()


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
        self.list_request_limit = LIST_UNLIMITED  # the SDK writes the whole series each call anyway
        self._last: dict[str, Number] = {}  # the last value this sink appended to each series
        self._renamed: set[str] = set()
        self._lock = threading.Lock()

    @property
    def execution_id(self) -> str:
        """The entity's id: the run's id in the recorder's summary and the adapters."""
        return str(getattr(self.entity, "id", None) or getattr(self.entity, "name", "digitalhub"))

    @property
    def key(self) -> str:
        """The entity's ``store://`` key, which finds it again (``craft-callbacks sync``)."""
        return str(getattr(self.entity, "key", None) or self.execution_id)

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
        if batch:
            with self._lock:
                self._call(name, batch)
                self._last[name] = batch[-1]

    def record_metric_value(self, name: str, value: Number) -> None:
        """Set the single value ``name`` of the entity (the last value wins)."""
        with self._lock:
            if self._last.get(name, _NOTHING) == value:
                return  # the series already ends with it
            held = self._metrics().get(name)
            if isinstance(held, list):
                if held and held[-1] == value:
                    return
                if name not in self._renamed:
                    self._renamed.add(name)
                    warnings.warn(
                        f"craft_callbacks: DigitalHub keeps one value or one series per name and {name!r} "
                        f"is a series on {self.description}; its single value is recorded as "
                        f"{name + FINAL_SUFFIX!r}",
                        MetricNameWarning,
                        stacklevel=2,
                    )
                name += FINAL_SUFFIX
            self._call(name, value, single_value=True, overwrite=True)

    def list_count(self, name: str) -> int:
        """How many values the entity holds in series ``name`` (refused if it holds a single value)."""
        held = self._metrics().get(name)
        if held is None:
            return 0
        if not isinstance(held, list):
            raise PermanentError(
                f"{name!r} holds a single value on {self.description}; a series cannot be appended to it"
            )
        return len(held)

    def _call(self, name: str, value: Number | list[Number], **options: bool) -> None:
        try:
            self.entity.log_metric(name, value, **options)
        except Exception as error:
            self._forget_cached_metrics()
            if isinstance(error, (*_refusals(), ValueError, TypeError, AttributeError)):
                # the backend's 400/403/404, or the SDK refusing the value on this side
                raise PermanentError(f"{type(error).__name__}: {error}") from error
            raise

    def _metrics(self) -> dict[str, Any]:
        """The entity's metrics as the backend holds them now (never the entity's cached copy)."""
        read = getattr(self.entity, "_read_metrics", None)  # the property may answer from a cache
        if callable(read):
            metrics = read()
        else:
            self._forget_cached_metrics()
            metrics = self.entity.metrics
        return dict(metrics or {})

    def _forget_cached_metrics(self) -> None:
        """Make the entity read its metrics from the backend again.

        The entity caches whether it has metrics at its first read. After a
        write whose answer was lost, that cache still says "none": the next
        ``log_metric`` would then write the new values as the whole series
        (losing the stored ones) and ``metrics`` would answer ``{}``.
        """
        if hasattr(self.entity, "_entity_has_metrics"):
            self.entity._entity_has_metrics = None


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
