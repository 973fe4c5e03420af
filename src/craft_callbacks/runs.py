"""What every adapter shares to turn framework events into recorder runs.

An adapter is built once and may see several runs (``trainer.train()``
twice, ``fit`` then ``fit``). :class:`AdapterRuns` starts a fresh
:class:`~craft_callbacks.recorder.MetricRecorder` for each, with the user's
options, and keeps the rules the adapters share in one place:

* ``sink="auto"`` is resolved when the adapter is built, so a bad store path
  is a clear error before training starts, and every run of the adapter goes
  to the same place;
* a recorder the user passed is theirs: it is used for every run, flushed at
  the end of each, and closed only by them;
* once training is running nothing raises: a run that cannot start is one
  warning, and training goes on unrecorded;
* per-step values take one path, :attr:`AdapterRuns.log_step`, which is the
  open recorder's own ``log_step``: an adapter's hot path costs what the
  recorder's does;
* the adapter's ``prefix`` is put before every metric name by
  :func:`prefixed`, with the joiner of the framework's own loggers;
* end-of-run values with no run open (``evaluate()`` after training, or with
  no training at all) are scalars of the last run, delivered before the call
  returns;
* a training resumed from a checkpoint continues the run the checkpoint names
  (``start(run_id=...)``), unless ``run_id=`` or ``$CRAFT_CALLBACKS_RUN_ID``
  names another;
* for a framework that may never say that a run ended (Lightning Fabric), the
  run ends when the interpreter exits, with the status of how it exits
  (``end_at_exit=True``);
* ``CRAFT_CALLBACKS_DISABLED=1`` gives an adapter :class:`DisabledRuns`: the
  same interface, and nothing is ever recorded, so an adapter never asks
  whether it is turned off.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from craft_callbacks import process_hooks
from craft_callbacks.defaults import DISABLE_ENV, RUN_ID_ENV, RUN_NAME_ENV
from craft_callbacks.delivery.factory import resolve_sink
from craft_callbacks.exceptions import CraftCallbacksWarning
from craft_callbacks.logs import visible_logger
from craft_callbacks.recorder import MetricRecorder
from craft_callbacks.sinks.auto import platform_execution_id
from craft_callbacks.sinks.craft_ai import is_craft_ai_sdk
from craft_callbacks.sinks.local_store import new_execution_id

__all__ = [
    "AdapterRuns",
    "DisabledRuns",
    "adapter_runs",
    "disabled_by_environment",
    "prefixed",
]

LogStep = Callable[[Mapping[Any, Any], int | None], None]


def prefixed(metrics: Mapping[Any, Any], prefix: str, joiner: str = "") -> Mapping[Any, Any]:
    """``metrics`` with ``prefix`` and ``joiner`` put before every name; ``metrics`` itself (no copy)
    when there is no prefix.

    The joiner is the framework's own: HuggingFace's integrations put the
    prefix right before the name (``hf/`` + ``loss``), Lightning's loggers
    join them with ``-`` (``exp-train_loss``).
    """
    if not prefix:
        return metrics
    start = f"{prefix}{joiner}"
    return {f"{start}{key}": value for key, value in metrics.items()}


def _no_run(metrics: Mapping[Any, Any], step: int | None) -> None:
    """:attr:`AdapterRuns.log_step` while no run is open: the values are not recorded."""


class AdapterRuns:
    """The recorder runs of one adapter instance: a :class:`MetricRecorder` for each run it sees.

    ``recorder``: the user's recorder, used for every run; otherwise each run
    is a new recorder to ``sink`` with ``options`` (the recorder's). ``prefix``
    and ``joiner``: put before every metric name (see :func:`prefixed`).
    ``end_at_exit``: a run still open when the interpreter exits ends with the
    status of how it exits (:func:`craft_callbacks.process_hooks.exit_status`),
    for frameworks that may never say that a run ended.
    """

    enabled: ClassVar[bool] = True

    log_step: LogStep
    """Per-step values of the open run (none open: not recorded); the adapters' hot path.

    It is the open recorder's own ``log_step`` (wrapped to put the prefix
    before each name when there is one), so a call costs what the recorder's
    does; :meth:`start` and a failed start set it.
    """

    def __init__(
        self,
        recorder: MetricRecorder | None = None,
        sink: Any = "auto",
        *,
        prefix: str = "",
        joiner: str = "",
        end_at_exit: bool = False,
        **options: Any,
    ) -> None:
        self._given = recorder
        self._options = options
        self._prefix = prefix
        self._joiner = joiner
        self._end_at_exit = end_at_exit
        self._exit_pid: int | None = None  # the process whose exit ends the open run
        self._sink = None if recorder is not None else resolve_sink(sink, options.get("store_path"))
        self.current: MetricRecorder | None = None  # the recorder of the current (or last) run
        self._set_current(recorder)
        self.next_execution_id = self._new_id()
        # a run named by run_id= or $CRAFT_CALLBACKS_RUN_ID wins over one a checkpoint saved
        self._explicit_run_id = bool(options.get("run_id") or os.environ.get(RUN_ID_ENV))
        self._warned = False

    def _new_id(self) -> str:
        """The id the next run will have: the platform's execution, the run named by
        ``run_id=`` or ``$CRAFT_CALLBACKS_RUN_ID`` (continued), or a new local run id."""
        if is_craft_ai_sdk(self._sink):
            return platform_execution_id() or new_execution_id()
        return self._options.get("run_id") or os.environ.get(RUN_ID_ENV) or new_execution_id()

    def _set_current(self, recorder: MetricRecorder | None) -> None:
        """``recorder`` is the current run's: :attr:`log_step` goes to it."""
        self.current = recorder
        if recorder is None:
            self.log_step = _no_run
        elif not self._prefix:
            self.log_step = recorder.log_step
        else:
            log_step, start = recorder.log_step, f"{self._prefix}{self._joiner}"

            def log_named_step(metrics: Mapping[Any, Any], step: int | None) -> None:
                # prefixed(metrics, start), inlined: a call fewer on the hot path (measured: 5 to 15%)
                log_step({f"{start}{key}": value for key, value in metrics.items()}, step)

            self.log_step = log_named_step

    @property
    def sink(self) -> Any:
        """Where the runs go: the sink resolved when the adapter was built, or the given recorder's."""
        return self._given.sink if self._given is not None else self._sink

    @property
    def open_run(self) -> MetricRecorder | None:
        """The recorder of the run that is open and taking per-step values, if any."""
        recorder = self.current
        return recorder if recorder is not None and not recorder.closed else None

    @property
    def recording(self) -> bool:
        """Whether a run is open and taking per-step values."""
        return self.open_run is not None

    def start(
        self,
        expected_events: int | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        pipeline_name: str | None = None,
        resume_step: int | None = None,
        *,
        run_id: str | None = None,
        run_id_wins: bool = False,
    ) -> MetricRecorder | None:
        """Open the recorder of a new run (the user's recorder, or a fresh one); never raises.

        ``resume_step``: the training resumes from a checkpoint taken at that step
        (see :meth:`MetricRecorder.resume_from`). ``run_id``: the run that
        checkpoint was taken in, which this one continues, unless ``run_id=`` or
        ``$CRAFT_CALLBACKS_RUN_ID`` names another; ``run_id_wins``: even then (the
        checkpoint holds that run's steps). A recorder the user passed stays theirs.
        """
        try:
            if self._given is None:
                self.end("interrupted")
                execution_id = self.next_execution_id
                if run_id and (run_id_wins or not self._explicit_run_id):
                    execution_id = run_id
                options = dict(self._options)
                options.pop("run_id", None)
                options.setdefault("pipeline_name", os.environ.get(RUN_NAME_ENV) or pipeline_name)
                options.setdefault("execution_id", execution_id)
                self._set_current(MetricRecorder(self._sink, **options))
                self.next_execution_id = self._new_id()
            recorder = self.current
            if recorder is None:  # the user's recorder, after a start that failed (said then)
                return None
            recorder.expect_events(expected_events)
            if resume_step is not None:
                recorder.resume_from(resume_step)
            if hyperparameters:
                recorder.log_hyperparams(hyperparameters)
            if self._end_at_exit:
                self._exit_pid = os.getpid()
                process_hooks.end_at_exit(self)
            return recorder
        except Exception as error:
            self._warn(
                f"the run could not start ({type(error).__name__}: {error}); training goes on unrecorded"
            )
            self._set_current(None)
            return None

    def log_final(self, metrics: Mapping[Any, Any]) -> None:
        """End-of-run values: scalars of the open run, else of the last one, else of a new run."""
        recorder = self.current
        if recorder is None:
            recorder = self.start()
            if recorder is None:
                return
            self.end("success")
        recorder.log_final(prefixed(metrics, self._prefix, self._joiner))

    def flush(self, timeout: float) -> None:
        """What the open run was given is delivered (a wait of at most ``timeout``); never raises.

        For a checkpoint: a training killed later and resumed from it keeps
        what was logged before it.
        """
        recorder = self.open_run
        if recorder is not None:
            with contextlib.suppress(Exception):  # never into training
                recorder.flush(timeout=timeout)

    def end(self, status: str = "success") -> None:
        """Close the run (a recorder the user passed is only flushed: closing it is theirs)."""
        recorder = self.current
        if recorder is None or recorder.closed:
            return
        if recorder is self._given:
            recorder.flush(timeout=recorder.close_timeout)
        else:
            recorder.close(status)

    def end_as_the_process_exits(self, status: str) -> None:
        """The interpreter exits with this run still open: it ends with ``status`` (never raises)."""
        try:
            if self.recording and self._exit_pid == os.getpid():
                self.end(status)
        except Exception:  # never a traceback at exit: the recorder's own hook closes what is left
            pass

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"craft_callbacks: {message}", CraftCallbacksWarning, stacklevel=3)


class DisabledRuns(AdapterRuns):
    """The runs of an adapter turned off by ``CRAFT_CALLBACKS_DISABLED``: the interface of
    :class:`AdapterRuns`, and every call does nothing.

    No sink is resolved and no run ever opens (:attr:`current` stays ``None``).
    ``next_execution_id``: an id that no run has, for an adapter that names a
    folder after its next run (Lightning's ``version``); a new one by default.
    """

    enabled: ClassVar[bool] = False

    def __init__(self, next_execution_id: str | None = None) -> None:  # no sink, no recorder: nothing to set
        self.current = None
        self.log_step = _no_run
        self.next_execution_id = next_execution_id or new_execution_id()

    @property
    def sink(self) -> Any:
        return None

    def start(self, *args: Any, **kwargs: Any) -> None:
        """No run ever opens (whatever :meth:`AdapterRuns.start` would be given)."""
        return None

    def log_final(self, metrics: Mapping[Any, Any]) -> None:
        return None

    def flush(self, timeout: float) -> None:
        return None

    def end(self, status: str = "success") -> None:
        return None


def adapter_runs(recorder: MetricRecorder | None = None, sink: Any = "auto", **options: Any) -> AdapterRuns:
    """The runs of a new adapter: :class:`DisabledRuns` when ``CRAFT_CALLBACKS_DISABLED`` is set,
    else :class:`AdapterRuns` (the arguments are its own)."""
    if disabled_by_environment():
        return DisabledRuns()
    return AdapterRuns(recorder, sink, **options)


_said_disabled = False


def disabled_by_environment() -> bool:
    """``CRAFT_CALLBACKS_DISABLED=1`` (or true/yes) turns every adapter off, as HF's integrations allow.

    Said once per process in a log line, so a run that records nothing is never a mystery.
    """
    global _said_disabled
    disabled = os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if disabled and not _said_disabled:
        _said_disabled = True
        visible_logger().info(
            f"craft_callbacks: {DISABLE_ENV} is set: the adapters record nothing in this process"
        )
    return disabled
