"""Accelerate adapter: ``Accelerator(log_with=[CraftAiTracker()])``.

A thin translation of Accelerate's tracker interface into recorder calls:

* ``accelerator.init_trackers(project, config)`` -> a new run; ``config``
  (flattened, ``{"optim": {"lr": 1e-3}}`` -> ``optim/lr``) -> hyperparameters;
* ``accelerator.log(values, step=...)`` -> ``log_step`` at that step (by
  default the number of earlier ``log`` calls);
* ``accelerator.end_training()`` -> the run closes (status ``success``; the
  last value of every list becomes a scalar);
* ``accelerator.log(...)`` after ``end_training()`` -> end-of-run values
  (scalars of the run), delivered before the call returns.

Accelerate hands a tracker instance the config, not the project name: the
run's name is ``pipeline_name=``, else ``$CRAFT_CALLBACKS_RUN_NAME``, else the
script's name. Only the main process (global rank 0) records, whether the call
comes through the ``Accelerator`` or straight to the tracker.
``CRAFT_CALLBACKS_DISABLED=1`` turns the tracker off.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch.distributed as dist
from accelerate.state import PartialState  # type: ignore[import-untyped]
from accelerate.tracking import GeneralTracker  # type: ignore[import-untyped]

from craft_callbacks.exceptions import CraftCallbacksWarning
from craft_callbacks.hyperparameters import flatten
from craft_callbacks.recorder import MetricRecorder
from craft_callbacks.runs import adapter_runs

__all__ = ["CraftAiTracker"]


class CraftAiTracker(GeneralTracker):  # type: ignore[misc]  # accelerate is untyped
    """Record an Accelerate training loop on the Craft AI platform (or the local store).

    ``recorder``: a :class:`~craft_callbacks.MetricRecorder` to use for every
    run (closing it is then yours); otherwise each ``init_trackers`` records a
    new run to ``sink`` (``"auto"``: the platform inside an execution, the
    local store elsewhere). ``pipeline_name`` names the run. ``expected_events``:
    how many ``accelerator.log`` calls a run makes, when you know it (long
    lists then thin evenly under the platform's cap). Other keyword arguments go
    to ``MetricRecorder`` (``store_path``, ``max_list_values``, ``flush_interval``...).

    On the main process, ``accelerator.get_tracker("craft_ai", unwrap=True)``
    is the run's recorder (``.log_final({...})`` for scalars of your own).
    """

    name = "craft_ai"
    requires_logging_directory = False
    main_process_only = True

    def __init__(
        self,
        recorder: MetricRecorder | None = None,
        *,
        sink: Any = "auto",
        pipeline_name: str | None = None,
        expected_events: int | None = None,
        **recorder_options: Any,
    ) -> None:
        super().__init__()
        if pipeline_name is not None:
            recorder_options["pipeline_name"] = pipeline_name
        self.expected_events = expected_events
        # The sink is chosen (and a bad store refused) here, before training, on every process.
        self.runs = adapter_runs(recorder, sink, **recorder_options)
        self._warned: set[str] = set()
        self._main: bool | None = None

    @property
    def tracker(self) -> MetricRecorder | None:
        """The recorder of the current (or last) run; ``None`` before the first on this process."""
        return self.runs.current

    @property
    def recorder(self) -> MetricRecorder | None:
        """The recorder of the current (or last) run (the same as :attr:`tracker`)."""
        return self.tracker

    # -- what Accelerate asks of a tracker ---------------------------------------------

    def start(self) -> None:
        """Called by ``init_trackers``: a new run."""
        if self._main_process():
            self.runs.start(self.expected_events)

    def store_init_configuration(self, values: Any) -> None:
        """The ``config`` of ``init_trackers``: the run's hyperparameters."""
        if values is None or not self._main_process():
            return
        if not isinstance(values, Mapping):
            self._not_a_mapping("store_init_configuration", values)
            return
        recorder = self._open_run()
        if recorder is not None:
            recorder.log_hyperparams(flatten(values))

    def log(self, values: Any, step: int | None = None, **kwargs: Any) -> None:
        """``accelerator.log``: one value per list metric; after ``end_training``, scalars."""
        if values is None or not (self._main or self._main_process()):
            return
        if type(values) is not dict and not isinstance(values, Mapping):
            self._not_a_mapping("log", values)
            return
        recorder = self.runs.current
        if recorder is None:  # log() with no init_trackers() (an Accelerate older than start())
            recorder = self._open_run()
            if recorder is None:
                return
        if recorder.closed:
            self.runs.log_final(values)
        else:
            self.runs.log_step(values, step)

    def finish(self) -> None:
        """``accelerator.end_training()``: the run closes."""
        if self._main_process():
            self.runs.end("success")

    # -- helpers -------------------------------------------------------------------------

    def _main_process(self) -> bool:
        """Whether this process records: the main process (global rank 0), asked once.

        Asked at the first call, not when the tracker is built: Accelerate sets its
        process state up after the trackers are made. Accelerate's answer, and
        torch's global rank when a process group is up: launched with
        ``--multi_gpu`` on a machine without a GPU and an ``Accelerator()``
        without ``cpu=True``, Accelerate calls every process the main one.
        None records when the tracker is turned off (``CRAFT_CALLBACKS_DISABLED``).
        """
        if self._main is None:
            main = self.runs.enabled and bool(PartialState().is_main_process)
            if main and dist.is_available() and dist.is_initialized():
                main = dist.get_rank() == 0
            self._main = main
        return self._main

    def _open_run(self) -> MetricRecorder | None:
        if self.runs.current is None:
            return self.runs.start(self.expected_events)
        return self.runs.current

    def _not_a_mapping(self, method: str, values: Any) -> None:
        """Values that are not a mapping of names to values: not recorded, one warning."""
        if method in self._warned:
            return
        self._warned.add(method)
        warnings.warn(
            f"craft_callbacks: CraftAiTracker.{method} was given values of type {type(values).__name__}, "
            "not a mapping of names to values; they are not recorded (this warning is shown once)",
            CraftCallbacksWarning,
            stacklevel=4,
        )
