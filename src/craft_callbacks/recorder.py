"""MetricRecorder: the one core object every adapter drives.

``log_step`` appends each numeric value to the list metric of its name,
``log_final`` sets scalar metrics, ``close`` turns the last value of every
list into a scalar and delivers everything. All the rules live here, once:
value coercion (:mod:`craft_callbacks.values`), the name policy
(:mod:`craft_callbacks.names`), the per-list cap
(:mod:`craft_callbacks.thinning`) and background delivery
(:mod:`craft_callbacks.delivery`). The caller's thread only converts and
appends in memory; it never does I/O and never sees an exception.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from craft_callbacks.delivery import DeliveryWorker, Destination, Outbox, Sink, StoreDestination
from craft_callbacks.exceptions import (
    CraftCallbacksWarning,
    DeliveryWarning,
    LocalStoreError,
    MetricLimitWarning,
    MetricNameWarning,
    NonFiniteMetricWarning,
    NonNumericMetricWarning,
)
from craft_callbacks.logs import visible_logger
from craft_callbacks.names import MAX_NAME_LENGTH, NameRegistry
from craft_callbacks.retry import retrying
from craft_callbacks.sinks.auto import platform_execution_id, resolve_auto_sink
from craft_callbacks.sinks.craft_ai import DEFAULT_REQUEST_TIMEOUT_S, PlatformDestination, is_craft_ai_sdk
from craft_callbacks.sinks.digitalhub import DigitalHubDestination, DigitalHubSink
from craft_callbacks.sinks.local_store import LocalStore, new_execution_id
from craft_callbacks.spool import Spool, default_spool_path
from craft_callbacks.spooled import SpooledDestination
from craft_callbacks.thinning import DEFAULT_MAX_LIST_VALUES, ListThinner, SharedCaps
from craft_callbacks.values import NON_FINITE, Number, Rejected, describe_type, to_number

DEFAULT_FLUSH_INTERVAL_S: Final = 2.0
DEFAULT_CLOSE_TIMEOUT_S: Final = 30.0
DEFAULT_FLUSH_EVENTS: Final = 4096
# The caller waits for the worker when this many flush wakes' worth of events are
# still in memory: it bounds the buffers when logging outpaces delivery.
BACKLOG_WAKES: Final = 4
# The longest such wait; after one in which the worker got nothing done (a stalled
# sink) the caller does not wait again until the worker moves on.
BACKLOG_WAIT_S: Final = 0.2

RUN_ID_ENV: Final = "CRAFT_CALLBACKS_RUN_ID"  # continue this local run
RUN_NAME_ENV: Final = "CRAFT_CALLBACKS_RUN_NAME"  # the run's name (its pipeline name)

_live: weakref.WeakSet[MetricRecorder] = weakref.WeakSet()
_shared_caps = SharedCaps()  # the recorders of this process that fill one execution's list at once
_hooks_installed = False


_Appenders = tuple[Callable[[Number], None], Callable[[int | None], None]]


class _Series:
    """One list metric of a run: its in-memory buffers and its thinning state.

    Values and steps live in two parallel lists of untracked objects (floats,
    ints): no allocation the garbage collector must walk. The caller appends
    the value first, then the step, so the first ``len(steps)`` entries of
    both are always complete pairs.
    """

    __slots__ = ("appenders", "held", "last", "last_step", "name", "steps", "thinner", "values")

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.values: list[Number] = []
        self.steps: list[int | None] = []
        self.appenders: _Appenders = (self.values.append, self.steps.append)
        self.thinner = ListThinner(cap)
        self.last: Number | None = None
        self.last_step: int | None = None
        self.held: int | None = None  # values the execution held before this run's (None: not known yet)

    def drain(self) -> tuple[list[int | None], list[Number]]:
        """Remove and return the complete pairs appended so far (worker thread)."""
        count = len(self.steps)
        steps = self.steps[:count]
        values = self.values[:count]
        del self.steps[:count]
        del self.values[:count]
        return steps, values


class MetricRecorder:
    """Record a training run's metrics into a sink, without slowing or breaking training.

    ``sink`` is ``"auto"`` (the platform inside a Craft AI execution, the local
    store anywhere else), a :class:`LocalStore`, or any object with the SDK's
    ``record_metric_value`` / ``record_list_metric_values`` (a ``CraftAiSdk``,
    a :class:`MemorySink`). Errors in the set-up (a bad store path, a sink
    without those methods) raise here; nothing raises once recording starts.

    Options: ``store_path`` (the local store's file), ``pipeline_name`` (the
    run's name; default ``$CRAFT_CALLBACKS_RUN_NAME``, else the script's name)
    and ``deployment_name`` (kept with a local run), ``run_id`` (continue that
    local run; default ``$CRAFT_CALLBACKS_RUN_ID``; ``execution_id`` is the
    same), ``hyperparameters``, ``max_list_values`` (the per-list cap, 50,000),
    ``expected_events`` (how many ``log_step`` calls the run will make, so long
    lists thin evenly), ``flush_interval`` (seconds between deliveries, 2),
    ``flush_events`` (deliver sooner once this many ``log_step`` calls are
    buffered, 4,096), ``close_timeout`` (how long ``close`` waits, 30 s) and
    ``request_timeout`` (each request to the platform, 30 s).
    """

    def __init__(
        self,
        sink: Any = "auto",
        *,
        store_path: str | os.PathLike[str] | None = None,
        pipeline_name: str | None = None,
        deployment_name: str | None = None,
        execution_id: str | None = None,
        run_id: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        max_list_values: int = DEFAULT_MAX_LIST_VALUES,
        expected_events: int | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
        flush_events: int = DEFAULT_FLUSH_EVENTS,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_S,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        if max_list_values < 1:
            raise ValueError(f"max_list_values must be at least 1, not {max_list_values}")
        if flush_events < 1:
            raise ValueError(f"flush_events must be at least 1, not {flush_events}")
        self._log = visible_logger()
        execution_id = run_id or execution_id or os.environ.get(RUN_ID_ENV) or None
        pipeline_name = pipeline_name or os.environ.get(RUN_NAME_ENV) or None
        resolved = resolve_sink(sink, store_path)
        self._destination = _destination_for(
            resolved,
            _RunSettings(
                store_path, request_timeout, pipeline_name, deployment_name, execution_id, hyperparameters
            ),
        )
        if isinstance(self._destination, SpooledDestination):
            self._destination.cap = int(max_list_values)
        self.max_list_values = int(max_list_values)
        self.close_timeout = float(close_timeout)
        self._expected_events = expected_events
        self._lock = threading.Lock()
        self._names = NameRegistry()
        self._series: dict[str, _Series] = {}
        self._appenders: dict[str, _Appenders] = {}
        self._appenders_of_other_keys: dict[tuple[type, Hashable], _Appenders] = {}
        self._scalar_names: set[str] = set()
        self._pending_scalars: dict[str, Number] = {}
        self._pending_hyperparameters: dict[str, Any] = {}
        self._events = 0
        self._flush_events = int(flush_events)
        self._wake_at = self._flush_events
        self._backlog_limit = BACKLOG_WAKES * self._flush_events
        self._collected_events = 0
        self._stalled_at: tuple[int, int] | None = None
        self._closed = False
        self._inert = False
        self._warned: set[tuple[str, str]] = set()
        self._dropped: dict[str, dict[str, int]] = {"non-numeric": {}, "non-finite": {}}
        self._whereabouts: str | None = None
        self._pid = os.getpid()
        self._resume_step: int | None = None
        self._deferred: list[tuple[type[CraftCallbacksWarning], str, str]] = []
        self._worker = DeliveryWorker(self._collect, self._destination, flush_interval)
        _shared_caps.open_run(self.execution_id, self)
        self._worker.start()
        _register(self)
        self._log.info(
            "craft_callbacks: recording run %s to %s", self.execution_id, self._destination.description
        )

    # -- public API --------------------------------------------------------------

    @property
    def execution_id(self) -> str:
        """The id of this run (the platform's execution id, or the local store's run id)."""
        return self._destination.execution_id

    @property
    def sink(self) -> Any:
        """The sink the metrics go to."""
        return self._destination.sink

    @property
    def closed(self) -> bool:
        return self._closed

    def expect_events(self, count: int | None) -> None:
        """Tell the recorder how many ``log_step`` calls the run will make, so long lists thin evenly."""
        self._expected_events = int(count) if count and count > 0 else None

    def resume_from(self, step: int) -> None:
        """The training resumes from a checkpoint taken at ``step``: each step is kept once.

        In the local store, the values this run recorded after ``step`` (before
        the crash) are replaced by the ones logged from now on. On the platform,
        whose lists only grow, values logged again for steps a list already
        holds are not sent again. Call it before logging the resumed steps.
        """
        self._resume_step = int(step)

    def log_step(self, metrics: Mapping[Any, Any], step: int | None = None) -> None:
        """Append each numeric value of ``metrics`` to the list metric of its name.

        ``step`` (the training step) is kept where the sink can keep it; by
        default the number of earlier ``log_step`` calls. Non-numeric and
        non-finite values are dropped with one warning per name.
        """
        try:
            if self._closed:
                self._log_step_after_close(metrics)
                return
            events = self._events
            self._events = events + 1
            if step is None:
                step = events
            appenders_of = self._appenders
            for key, value in metrics.items():
                appenders = appenders_of.get(key)
                if appenders is None:
                    appenders = self._new_series(key)
                append_value, append_step = appenders
                if type(value) is float and value - value == 0.0:
                    append_value(value)
                    append_step(step)
                    continue
                number = to_number(value)
                if isinstance(number, Rejected):
                    self._reject(key, value, number)
                else:
                    append_value(number)
                    append_step(step)
            if events >= self._wake_at:
                self._wake_at = events + self._flush_events
                self._worker.request_flush()
                if events - self._collected_events >= self._backlog_limit:
                    self._wait_for_worker()
            if self._deferred:
                self._emit_deferred()
        except Exception as error:  # never into the training loop
            self._failed("log_step", metrics, error)

    def log_final(self, metrics: Mapping[Any, Any]) -> None:
        """Set each numeric value of ``metrics`` as the scalar metric of its name (the last value wins).

        After :meth:`close`, the values are delivered before this call returns.
        """
        try:
            scalars = self._numbers(metrics)
            if not scalars:
                return
            with self._lock:
                self._scalar_names.update(scalars)
                if not self._closed:
                    self._pending_scalars.update(scalars)
                    return
            if self._inert:
                self._warn_forked()
            else:
                self._deliver_now(scalars)
        except Exception as error:
            self._failed("log_final", metrics, error)

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """Keep hyperparameters with the run (in the local store; the platform has no place for them)."""
        try:
            with self._lock:
                self._pending_hyperparameters.update({str(k): v for k, v in dict(params).items()})
            if self._closed and not self._inert:
                self._destination.record_hyperparameters(self._take_hyperparameters())
        except Exception as error:
            self._internal_error("log_hyperparams", error)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is delivered; False if ``timeout`` passed first."""
        if self._closed:
            return True
        return self._worker.flush(timeout)

    def close(self, status: str = "success") -> None:
        """End the run: last list values become scalars, everything is delivered (bounded wait).

        Idempotent. ``status`` is kept where the sink can keep it (the local store).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _live.discard(self)
        try:
            complete = self._worker.stop(self.close_timeout)
            self._emit_deferred()
            self._whereabouts = self._where_values_are(complete)
            if not complete:
                spool = self._destination.spool_path()
                how = f" Deliver the spooled ones with: craft-callbacks sync --spool {spool}" if spool else ""
                warnings.warn(
                    f"craft_callbacks: run {self.execution_id}: some values could not be delivered to "
                    f"{self._destination.description} within {self.close_timeout:g} s "
                    f"(last error: {self._worker.last_error}): {self._whereabouts}.{how}",
                    DeliveryWarning,
                    stacklevel=2,
                )
            if not self._worker.alive:  # else its values stay this process's until it exits
                self._destination.release()
            self._leave_shared_caps()
            self._destination.set_status(status)
            self._log.info("%s", self.summary())
        except Exception as error:
            self._internal_error("close", error)

    def _where_values_are(self, complete: bool) -> str:
        """Delivered, in the spool, lost: the run's values, counted, in words."""
        if self._worker.outbox:  # collected but never handed to the destination
            self._destination.pending.absorb(self._worker.outbox)
        if complete:
            why = "not delivered"
        elif self._worker.gave_up_locally:
            why = f"{self._destination.description} could not be written ({self._worker.last_error})"
        else:
            why = f"not accepted by {self._destination.description} within {self.close_timeout:g} s"
        account = self._destination.whereabouts(why)
        return account.words(self._destination.description, self._destination.spool_phrase())

    def summary(self) -> str:
        """One line: what was recorded, where, and what was dropped and why."""
        series = [s for s in self._series.values() if s.thinner.seen]
        kept = sum(s.thinner.kept for s in series)
        thinned = sum(s.thinner.thinned for s in series)
        parts = [
            f"craft_callbacks: run {self.execution_id} -> {self._destination.description}: "
            f"{len(series)} list metrics ({kept:,} values), {len(self._scalar_names)} scalars"
        ]
        dropped = []
        for why, per_name in self._dropped.items():
            if per_name:
                names = ", ".join(sorted(per_name)[:5]) + (", ..." if len(per_name) > 5 else "")
                dropped.append(f"{sum(per_name.values()):,} {why} ({names})")
        if thinned:
            dropped.append(f"{thinned:,} thinned to stay under {self.max_list_values:,} values per list")
        replayed = getattr(self._destination, "replayed", 0)
        if replayed:
            parts.append(f"; resumed: {replayed:,} values of steps recorded before the restart kept once")
        if self._destination.rejected:
            dropped.append(
                f"{self._destination.rejected_values:,} refused by the sink "
                f"({', '.join(sorted(self._destination.rejected))})"
            )
        parts.append("; dropped " + ", ".join(dropped) if dropped else "; nothing dropped")
        if self._whereabouts:
            parts.append(f"; {self._whereabouts}")
        return "".join(parts)

    def __enter__(self) -> MetricRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close("success")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("interrupted")
        else:
            self.close("failed")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"MetricRecorder(run={self.execution_id!r}, to={self._destination.description!r}, {state})"

    # -- caller-thread slow paths ------------------------------------------------

    def _name_for(self, key: Any) -> str:
        """The run's safe name for a metric key, warning once about anything surprising."""
        if isinstance(key, str):
            source = key
        else:
            source = _key_text(key)
            self._warn_once(
                MetricNameWarning,
                source,
                f"metric key of type {describe_type(key)} is not a string; recorded as {source!r}",
            )
        name, clash = self._names.resolve(source)
        if clash is not None:
            self._warn_once(
                MetricNameWarning,
                source,
                f"metric names {clash!r} and {source!r} both map to a safe name; "
                f"{source!r} is recorded as {name!r} to keep them apart",
            )
        elif not source:
            self._warn_once(MetricNameWarning, source, f"empty metric name recorded as {name!r}")
        elif len(source) > MAX_NAME_LENGTH:
            self._warn_once(
                MetricNameWarning,
                source,
                f"metric name of {len(source)} characters shortened to {name!r} (at most {MAX_NAME_LENGTH})",
            )
        elif name != source and ("renamed", name) not in self._warned:
            self._warned.add(("renamed", name))
            self._log.info("craft_callbacks: metric %r is recorded as %r", source, name)
        return name

    def _new_series(self, key: Any) -> _Appenders:
        """The appenders of a key seen for the first time (or of a non-string key, every time).

        Only string keys are cached where the hot path looks: ``1``, ``True``
        and ``1.0`` are one dict key in Python but three metric names here.
        """
        with self._lock:
            if isinstance(key, str):
                appenders = self._appenders.get(key)
            else:
                appenders = self._appenders_of_other_keys.get(_cache_key(key))
            if appenders is not None:
                return appenders
            name = self._name_for(key)
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = _Series(name, self.max_list_values)
            if isinstance(key, str):
                self._appenders[key] = series.appenders
            else:
                self._appenders_of_other_keys[_cache_key(key)] = series.appenders
            return series.appenders

    def _numbers(self, metrics: Mapping[Any, Any]) -> dict[str, Number]:
        """Coerced, named values of a mapping (the slow path, for scalars)."""
        numbers: dict[str, Number] = {}
        for key, value in metrics.items():
            number = to_number(value)
            if isinstance(number, Rejected):
                self._reject(key, value, number)
                continue
            with self._lock:
                numbers[self._name_for(key)] = number
        return numbers

    def _reject(self, key: Any, value: Any, rejected: Rejected) -> None:
        source = key if isinstance(key, str) else _key_text(key)
        per_name = self._dropped[rejected.kind]
        per_name[source] = per_name.get(source, 0) + 1
        if rejected.kind == NON_FINITE:
            category: type[CraftCallbacksWarning] = NonFiniteMetricWarning
            what = "a non-finite value"
        else:
            category = NonNumericMetricWarning
            what = "a non-numeric value"
        self._warn_once(
            category,
            source,
            f"metric {source!r} got {what} ({rejected.reason}); dropped. Later such values of "
            f"{source!r} in run {self.execution_id} are dropped without another warning",
        )

    def _warn_once(self, category: type[CraftCallbacksWarning], name: str, message: str) -> None:
        key = (category.__name__, name)
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(f"craft_callbacks: {message}", category, stacklevel=_outside_package())

    def _failed(self, where: str, metrics: Any, error: BaseException) -> None:
        """A call that failed: said plainly when it was given no mapping, else an internal error."""
        if isinstance(metrics, Mapping):
            self._internal_error(where, error)
            return
        self._warn_once(
            CraftCallbacksWarning,
            f"mapping:{where}",
            f"{where} takes a mapping of metric names to values, not {describe_type(metrics)}; "
            "nothing of such calls is recorded",
        )

    def _internal_error(self, where: str, error: BaseException) -> None:
        self._warn_once(
            CraftCallbacksWarning,
            f"internal:{where}",
            f"{where} failed ({type(error).__name__}: {error}); training goes on, "
            "some metrics of this call may be missing",
        )

    def _wait_for_worker(self) -> None:
        """Logging outpaces delivery: let the worker take the backlog, so memory stays bounded.

        Only a loop that logs faster than the sink can write ever gets here (a
        training step that computes anything is far slower). A stalled sink
        (a request hanging until its timeout) costs one short wait, not one per wake.
        """
        worker = self._worker
        before = (worker.rounds, self._destination.progress)
        if before == self._stalled_at:
            return
        if worker.wait_for_round(BACKLOG_WAIT_S):
            return
        if (worker.rounds, self._destination.progress) == before:
            self._stalled_at = before

    def _log_step_after_close(self, metrics: Mapping[Any, Any]) -> None:
        if self._inert:
            self._warn_forked()
            return
        self._warn_once(
            CraftCallbacksWarning,
            "closed:log_step",
            f"run {self.execution_id} is closed; values given to log_step now become scalars",
        )
        self.log_final(metrics)

    def _deliver_now(self, scalars: dict[str, Number]) -> None:
        """After close: deliver end-of-run scalars before returning (a blocking write is fine now)."""
        outbox = Outbox(scalars=dict(scalars))
        if self._worker.alive:  # still stuck in a request past close: never send beside it
            self._destination.take(outbox)  # a spooling destination keeps them there
            where = self._destination.whereabouts("delivery is still stuck")
            spool = self._destination.spool_path()
            warnings.warn(
                f"craft_callbacks: run {self.execution_id}: end-of-run values {sorted(scalars)} were not "
                f"sent: delivery to {self._destination.description} is still stuck; "
                + (
                    f"they are in the spool {spool} (craft-callbacks sync --spool {spool})"
                    if spool and where.spooled_scalars
                    else "they are lost"
                ),
                DeliveryWarning,
                stacklevel=3,
            )
            return
        deadline = time.monotonic() + self.close_timeout
        try:
            self._destination.take(outbox)
            retrying(self._destination.send, attempts=3, deadline=deadline)
        except Exception as error:
            spool = self._destination.spool_path()
            kept = self._destination.whereabouts("").spooled_scalars and spool
            warnings.warn(
                f"craft_callbacks: run {self.execution_id}: end-of-run values {sorted(scalars)} could not "
                f"be delivered to {self._destination.description} ({type(error).__name__}: {error}); "
                + (
                    f"they are in the spool {spool} (craft-callbacks sync --spool {spool})"
                    if kept
                    else "they are lost"
                ),
                DeliveryWarning,
                stacklevel=3,
            )

    def _take_hyperparameters(self) -> dict[str, Any]:
        with self._lock:
            params, self._pending_hyperparameters = self._pending_hyperparameters, {}
        return params

    # -- worker thread --------------------------------------------------------------

    def _collect(self, outbox: Outbox, final: bool) -> None:
        """Move new values into the outbox, thinning each list under its cap (worker thread)."""
        params = self._take_hyperparameters()
        if params:
            self._destination.record_hyperparameters(params)
        with self._lock:
            series_list = list(self._series.values())
            scalars, self._pending_scalars = self._pending_scalars, {}
        taken = [(series, *series.drain()) for series in series_list]
        # Read after draining: the caller sets it before logging the resumed steps, so either it
        # is seen now (and applied before what was drained is handed over), or nothing drained
        # now was logged after it (it is applied next round, before those values).
        resume, self._resume_step = self._resume_step, None
        if resume is not None:
            self._destination.resume_from(resume)
        # Read after taking: every value taken belongs to an event already counted, so a
        # list's rate (values per event) is never overestimated, however late this thread ran.
        events, expected = self._events, self._expected_events
        self._collected_events = events
        for series, steps, values in taken:
            if not values:
                continue
            if series.held is None:
                self._fit_what_is_left(series)
            series.last = values[-1]
            series.last_step = steps[-1]
            selection = series.thinner.select(len(values), events, expected)
            if selection.indices is not None:
                steps = [steps[index] for index in selection.indices]
                values = [values[index] for index in selection.indices]
            if selection.thinning_started:
                self._warn_thinning(series, expected)
            if values:
                outbox.add_list(series.name, steps, values)
        outbox.scalars.update(scalars)
        if final:
            with self._lock:
                for series in series_list:
                    if series.last is None:
                        continue
                    if series.thinner.keep_last():
                        outbox.add_list(series.name, [series.last_step], [series.last])
                    if series.name not in self._scalar_names:
                        self._scalar_names.add(series.name)
                        outbox.scalars[series.name] = series.last

    def _fit_what_is_left(self, series: _Series) -> None:
        """Before a list's first values are thinned: its cap is what the execution has left (worker).

        The cap is per list per execution: a second run in one execution fits
        into what the first left, and runs recording at once share it. Asked
        again next round while the remote does not answer.
        """
        held = self._destination.held(series.name)
        if held is None:
            return
        series.held = held
        _shared_caps.join((self.execution_id, series.name), series.thinner, held, self.max_list_values)
        left = series.thinner.cap
        if left == self.max_list_values:
            return
        self._log.info(
            "craft_callbacks: list metric %r of execution %s already holds %s values (a continued or "
            "earlier run), or another run records it at once; this run has %s of its cap of %s",
            series.name,
            self.execution_id,
            f"{held:,}",
            f"{left:,}",
            f"{self.max_list_values:,}",
        )
        if not left:
            self._defer(
                MetricLimitWarning,
                f"thin:{series.name}",
                f"list metric {series.name!r} already holds {held:,} values in execution "
                f"{self.execution_id} (an earlier run), the cap of {self.max_list_values:,}: this run's "
                "values of it are dropped",
            )

    def _leave_shared_caps(self) -> None:
        for series in self._series.values():
            if series.held is not None:
                _shared_caps.leave((self.execution_id, series.name), series.thinner, self.max_list_values)
        _shared_caps.close_run(self.execution_id, self, self.max_list_values)

    def _defer(self, category: type[CraftCallbacksWarning], key: str, message: str) -> None:
        """A warning found on the worker thread, emitted on the caller's next call (at its line)."""
        if (category.__name__, key) not in self._warned:
            self._deferred.append((category, key, message))

    def _emit_deferred(self) -> None:
        while self._deferred:
            category, key, message = self._deferred.pop(0)
            self._warn_once(category, key, message)

    def _warn_thinning(self, series: _Series, expected: int | None) -> None:
        cap = f"the cap of {self.max_list_values:,} values per list"
        if series.thinner.cap < self.max_list_values:
            cap = (
                f"its share of {cap}, {series.thinner.cap:,} values (execution {self.execution_id} "
                f"held {series.held:,} before this run, or other runs record it at once)"
            )
        if expected and self._events <= expected:
            why = (
                f"is on course to pass {cap}; it is thinned evenly over the {expected:,} expected "
                "logging events"
            )
        else:
            why = (
                f"passed half of {cap} and the run's length is unknown; it is thinned more and more "
                "sparsely so it spans the whole run"
            )
        self._defer(
            MetricLimitWarning,
            f"thin:{series.name}",
            f"list metric {series.name!r} {why} (its last value is always kept)",
        )

    def _warn_forked(self) -> None:
        self._warn_once(
            CraftCallbacksWarning,
            "forked",
            f"this process ({os.getpid()}) was forked from the one that created the recorder of run "
            f"{self.execution_id} (pid {self._pid}); values logged here are NOT recorded. Create a "
            "MetricRecorder in this process to record them (the parent's run records the parent's values)",
        )

    def _forget_after_fork(self) -> None:
        """In a forked child: never send the parent's values (the parent does)."""
        self._closed = True
        self._inert = True
        for series in self._series.values():
            series.values.clear()
            series.steps.clear()


def _cache_key(key: Any) -> tuple[type, Hashable]:
    """Where a non-string key's appenders are cached: a key unequal to itself (NaN) by its text."""
    try:
        same = bool(key == key)
    except Exception:
        same = False
    return (type(key), key) if same else (type(key), _key_text(key))


def _key_text(key: Any) -> str:
    """A non-string key as text: ``str(key)``, or its type when it cannot be printed."""
    try:
        return str(key)
    except Exception:  # an int beyond the str() digit limit, a broken __str__
        return f"{type(key).__name__}-key"


_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))


def _outside_package() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package."""
    frame = sys._getframe(2)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def resolve_sink(sink: Any, store_path: str | os.PathLike[str] | None) -> Any:
    """The concrete sink for ``sink`` ("auto", a LocalStore or an SDK-like object); raises on bad set-up."""
    if isinstance(sink, str):
        if sink != "auto":
            raise ValueError(
                f"sink must be 'auto', a LocalStore or an object with the SDK's methods, not {sink!r}"
            )
        return resolve_auto_sink(store_path)
    if isinstance(sink, (LocalStore, Sink)):
        return sink
    raise TypeError(
        f"sink {sink!r} has no record_metric_value / record_list_metric_values methods; "
        "give a CraftAiSdk, a LocalStore, a MemorySink or 'auto'"
    )


@dataclass(frozen=True)
class _RunSettings:
    """What the recorder was told about the run, for choosing and opening its destination."""

    store_path: str | os.PathLike[str] | None
    request_timeout: float
    pipeline_name: str | None
    deployment_name: str | None
    execution_id: str | None
    hyperparameters: Mapping[str, Any] | None


def _destination_for(sink: Any, run: _RunSettings) -> Destination:
    if isinstance(sink, LocalStore):
        local_run = sink.start_execution(
            run.pipeline_name, run.deployment_name, run.hyperparameters, run.execution_id
        )
        return StoreDestination(sink, local_run, f"local store {sink.path}")
    if is_craft_ai_sdk(sink):
        platform_run = platform_execution_id()  # the SDK writes only to its own execution
        if not platform_run:
            warnings.warn(
                "craft_callbacks: a CraftAiSdk was given but this process is not inside a Craft AI "
                "execution, where the platform records nothing; the metrics go to the local store "
                "instead (sink='auto' chooses for you)",
                DeliveryWarning,
                stacklevel=4,
            )
            return _destination_for(LocalStore(run.store_path), run)
        platform = PlatformDestination(sink, platform_run, None, run.request_timeout)
        _open_spool(platform, run.store_path)
        destination: Destination = platform
    elif isinstance(sink, DigitalHubSink):
        digitalhub = DigitalHubDestination(sink, None)
        _open_spool(digitalhub, run.store_path)
        destination = digitalhub
    else:
        destination = Destination(
            sink,
            run.execution_id or getattr(sink, "execution_id", None) or new_execution_id(),
            getattr(sink, "description", None) or type(sink).__name__,
        )
    if run.hyperparameters:
        destination.record_hyperparameters(dict(run.hyperparameters))
    return destination


def _open_spool(destination: SpooledDestination, store_path: str | os.PathLike[str] | None) -> None:
    """Give a remote destination the durable spool beside the store; one warning when it cannot.

    Delivery to a reachable remote goes on without it: an unusable spool
    costs durability, never the metrics.
    """
    try:
        destination.spool = Spool(default_spool_path(store_path))
    except LocalStoreError as error:
        destination.spool_error = str(error)
        warnings.warn(
            f"craft_callbacks: {error}; metrics go to {destination.description} without a durable copy: "
            "values it has not accepted are lost if this process dies or it stays down past close",
            DeliveryWarning,
            stacklevel=5,
        )


def _register(recorder: MetricRecorder) -> None:
    global _hooks_installed
    _live.add(recorder)
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_close_all)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_all() -> None:
    """At interpreter exit: close every open recorder (bounded), so nothing recorded is lost.

    The status ``exited`` tells these runs apart from those closed by their code.
    """
    for recorder in list(_live):
        recorder.close("exited")


def _after_fork_in_child() -> None:
    for recorder in list(_live):
        recorder._forget_after_fork()
    _live.clear()


__all__ = ["MetricRecorder"]
