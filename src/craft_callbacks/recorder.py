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

import os
import threading
import warnings
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

from craft_callbacks import process_hooks
from craft_callbacks.defaults import (
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_FLUSH_EVENTS,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_LIST_VALUES,
    DEFAULT_REQUEST_TIMEOUT_S,
    RUN_ID_ENV,
    RUN_NAME_ENV,
)
from craft_callbacks.delivery.destination import Outbox
from craft_callbacks.delivery.factory import RunSettings, destination_for, resolve_sink
from craft_callbacks.delivery.worker import DeliveryWorker
from craft_callbacks.exceptions import (
    CraftCallbacksWarning,
    DeliveryWarning,
    MetricLimitWarning,
)
from craft_callbacks.logs import visible_logger
from craft_callbacks.names import KeyNames, key_text
from craft_callbacks.notices import Notices
from craft_callbacks.run_summary import summary_line
from craft_callbacks.series import Appenders, RunLists, Series
from craft_callbacks.thinning import SharedCaps
from craft_callbacks.values import Number, Rejected, to_number

# The caller waits for the worker when this many flush wakes' worth of events are
# still in memory: it bounds the buffers when logging outpaces delivery.
BACKLOG_WAKES: Final = 4

_shared_caps = SharedCaps()  # the recorders of this process that fill one execution's list at once


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
        run = RunSettings(
            store_path,
            request_timeout,
            pipeline_name,
            deployment_name,
            execution_id,
            hyperparameters,
            int(max_list_values),
        )
        self._destination = destination_for(resolve_sink(sink, store_path), run)
        self.max_list_values = int(max_list_values)
        self.close_timeout = float(close_timeout)
        self._expected_events = expected_events
        self._lock = threading.Lock()
        self._notices = Notices()
        self._names = KeyNames(self._notices, self._log)
        self._lists = RunLists(self._names, self.max_list_values)
        self._scalar_names: set[str] = set()
        self._pending_scalars: dict[str, Number] = {}
        self._pending_hyperparameters: dict[str, Any] = {}
        self._events = 0
        self._flush_events = int(flush_events)
        self._wake_at = self._flush_events
        self._backlog_limit = BACKLOG_WAKES * self._flush_events
        self._collected_events = 0
        self._closed = False
        self._inert = False
        self._whereabouts: str | None = None
        self._pid = os.getpid()
        self._resume_step: int | None = None
        self._worker = DeliveryWorker(self._collect, self._destination, flush_interval)
        _shared_caps.open_run(self.execution_id, self)
        self._worker.start()
        process_hooks.track(self)
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
            appenders_of = self._lists.appenders
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
                    self._reject(key, number)
                else:
                    append_value(number)
                    append_step(step)
            if events >= self._wake_at:
                self._wake_at = events + self._flush_events
                self._worker.request_flush()
                if events - self._collected_events >= self._backlog_limit:
                    self._worker.wait_for_backlog()
            if self._notices.deferred:
                self._notices.say_deferred()
        except Exception as error:  # never into the training loop
            self._notices.failed("log_step", metrics, error)

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
                return
            trouble = self._destination.deliver_after_close(scalars, self._worker.alive, self.close_timeout)
            if trouble:
                self._warn_delivery(trouble)
        except Exception as error:
            self._notices.failed("log_final", metrics, error)

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """Keep hyperparameters with the run (in the local store; the platform has no place for them)."""
        try:
            with self._lock:
                self._pending_hyperparameters.update({str(k): v for k, v in dict(params).items()})
            if self._closed and not self._inert:
                self._destination.record_hyperparameters(self._take_hyperparameters())
        except Exception as error:
            self._notices.internal_error("log_hyperparams", error)

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
        process_hooks.untrack(self)
        try:
            complete = self._worker.stop(self.close_timeout)
            self._notices.say_deferred()
            self._whereabouts = self._worker.account(complete, self.close_timeout)
            if not complete:
                trouble = self._worker.undelivered(self.close_timeout, self._whereabouts)
                self._warn_delivery(trouble)
            if not self._worker.alive:  # else its values stay this process's until it exits
                self._destination.release()
            self._leave_shared_caps()
            self._destination.set_status(status)
            self._log.info("%s", self.summary())
        except Exception as error:
            self._notices.internal_error("close", error)

    def summary(self) -> str:
        """One line: what was recorded, where, and what was dropped and why."""
        scalars, cap = len(self._scalar_names), self.max_list_values
        series, dropped = list(self._lists), self._notices.dropped
        return summary_line(self._destination, series, scalars, dropped, cap, self._whereabouts)

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

    def _new_series(self, key: Any) -> Appenders:
        with self._lock:
            return self._lists.appenders_for(key)

    def _numbers(self, metrics: Mapping[Any, Any]) -> dict[str, Number]:
        """Coerced, named values of a mapping (the slow path, for scalars)."""
        numbers: dict[str, Number] = {}
        for key, value in metrics.items():
            number = to_number(value)
            if isinstance(number, Rejected):
                self._reject(key, number)
                continue
            with self._lock:
                numbers[self._names.name_for(key)] = number
        return numbers

    def _reject(self, key: Any, rejected: Rejected) -> None:
        self._notices.drop(key if isinstance(key, str) else key_text(key), rejected, self.execution_id)

    def _warn_delivery(self, trouble: str) -> None:
        """A delivery problem found in a call of the user's: said at their line (stacklevel 3)."""
        warnings.warn(f"craft_callbacks: run {self.execution_id}: {trouble}", DeliveryWarning, stacklevel=3)

    def _log_step_after_close(self, metrics: Mapping[Any, Any]) -> None:
        if self._inert:
            self._warn_forked()
            return
        self._notices.once(
            CraftCallbacksWarning,
            "closed:log_step",
            f"run {self.execution_id} is closed; values given to log_step now become scalars",
        )
        self.log_final(metrics)

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
            series_list = list(self._lists)
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
            steps, values, started = series.thin(steps, values, events, expected)
            if started:
                message = series.thinning_message(self.execution_id, self.max_list_values, events, expected)
                self._notices.defer(MetricLimitWarning, f"thin:{series.name}", message)
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

    def _fit_what_is_left(self, series: Series) -> None:
        """The list's cap is what its execution has left (worker); asked again next round while
        the remote does not answer."""
        held = self._destination.held(series.name)
        if held is not None:
            series.fit_share(
                _shared_caps, self.execution_id, held, self.max_list_values, self._log, self._notices
            )

    def _leave_shared_caps(self) -> None:
        for series in self._lists:
            series.leave_share(_shared_caps, self.execution_id, self.max_list_values)
        _shared_caps.close_run(self.execution_id, self, self.max_list_values)

    def _warn_forked(self) -> None:
        self._notices.forked(self.execution_id, self._pid)

    def forget_after_fork(self) -> None:
        """In a forked child: never send the parent's values (the parent does)."""
        self._closed = True
        self._inert = True
        for series in self._lists:
            series.forget()


__all__ = ["MetricRecorder"]
