"""Runs: what every adapter needs to turn framework events into recorder runs.

An adapter is built once and may see several runs (``trainer.train()``
twice, ``fit`` then ``fit``). :class:`Runs` starts a fresh
:class:`~craft_callbacks.recorder.MetricRecorder` for each, with the user's
options, and keeps the rules the adapters share in one place:

* ``sink="auto"`` is resolved when the adapter is built, so a bad store path
  is a clear error before training starts, and every run of the adapter goes
  to the same place;
* a recorder the user passed is theirs: it is used for every run, flushed at
  the end of each, and closed only by them;
* once training is running nothing raises: a run that cannot start is one
  warning, and training goes on unrecorded;
* end-of-run values with no run open (``evaluate()`` after training, or with
  no training at all) are scalars of the last run, delivered before the call
  returns.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from craft_callbacks.exceptions import CraftCallbacksWarning
from craft_callbacks.logs import visible_logger
from craft_callbacks.recorder import RUN_ID_ENV, RUN_NAME_ENV, MetricRecorder, resolve_sink
from craft_callbacks.sinks.auto import platform_execution_id
from craft_callbacks.sinks.craft_ai import is_craft_ai_sdk
from craft_callbacks.sinks.local_store import new_execution_id


class Runs:
    """The recorder runs of one adapter instance."""

    def __init__(self, recorder: MetricRecorder | None = None, sink: Any = "auto", **options: Any) -> None:
        self._given = recorder
        self._options = options
        self._sink = None if recorder is not None else resolve_sink(sink, options.get("store_path"))
        self.current: MetricRecorder | None = recorder
        self.next_execution_id = self._new_id()
        # a run named by run_id= or $CRAFT_CALLBACKS_RUN_ID wins over one a checkpoint saved
        self.explicit_run_id = bool(options.get("run_id") or os.environ.get(RUN_ID_ENV))
        self._warned = False

    def _new_id(self) -> str:
        """The id the next run will have: the platform's execution, the run named by
        ``run_id=`` or ``$CRAFT_CALLBACKS_RUN_ID`` (continued), or a new local run id."""
        if is_craft_ai_sdk(self._sink):
            return platform_execution_id() or new_execution_id()
        return self._options.get("run_id") or os.environ.get(RUN_ID_ENV) or new_execution_id()

    @property
    def recording(self) -> bool:
        """Whether a run is open and taking per-step values."""
        return self.current is not None and not self.current.closed

    def start(
        self,
        expected_events: int | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        pipeline_name: str | None = None,
        resume_step: int | None = None,
    ) -> MetricRecorder | None:
        """Open the recorder of a new run (the user's recorder, or a fresh one); never raises.

        ``resume_step``: the training resumes from a checkpoint taken at that step
        (see :meth:`MetricRecorder.resume_from`).
        """
        try:
            if self._given is None:
                self.end("interrupted")
                options = dict(self._options)
                options.pop("run_id", None)
                options.setdefault("pipeline_name", os.environ.get(RUN_NAME_ENV) or pipeline_name)
                options.setdefault("execution_id", self.next_execution_id)
                self.current = MetricRecorder(self._sink, **options)
                self.next_execution_id = self._new_id()
            recorder = self.current
            assert recorder is not None
            recorder.expect_events(expected_events)
            if resume_step is not None:
                recorder.resume_from(resume_step)
            if hyperparameters:
                recorder.log_hyperparams(hyperparameters)
            return recorder
        except Exception as error:
            self._warn(
                f"the run could not start ({type(error).__name__}: {error}); training goes on unrecorded"
            )
            self.current = None
            return None

    def log_step(self, metrics: Mapping[Any, Any], step: int | None) -> None:
        """Per-step values of the open run (ignored when no run is open)."""
        if self.current is not None:
            self.current.log_step(metrics, step)

    def log_final(self, metrics: Mapping[Any, Any]) -> None:
        """End-of-run values: scalars of the open run, else of the last one, else of a new run."""
        if self.current is None:
            if self.start() is None:
                return
            self.end("success")
        assert self.current is not None
        self.current.log_final(metrics)

    def end(self, status: str = "success") -> None:
        """Close the run (a recorder the user passed is only flushed: closing it is theirs)."""
        recorder = self.current
        if recorder is None or recorder.closed:
            return
        if recorder is self._given:
            recorder.flush(timeout=recorder.close_timeout)
        else:
            recorder.close(status)

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"craft_callbacks: {message}", CraftCallbacksWarning, stacklevel=3)


_said_disabled = False


def disabled_by_environment() -> bool:
    """``CRAFT_CALLBACKS_DISABLED=1`` (or true/yes) turns every adapter off, as HF's integrations allow.

    Said once per process in a log line, so a run that records nothing is never a mystery.
    """
    global _said_disabled
    disabled = os.environ.get("CRAFT_CALLBACKS_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")
    if disabled and not _said_disabled:
        _said_disabled = True
        visible_logger().info(
            "craft_callbacks: CRAFT_CALLBACKS_DISABLED is set: the adapters record nothing in this process"
        )
    return disabled
