"""Lightning adapter: ``L.Trainer(..., logger=CraftAiLogger())``, alone or among other loggers.

A thin translation of the Logger interface into recorder calls:

* ``log_metrics(metrics, step)`` during ``fit`` -> ``log_step`` at that step,
  names as the user logged them (then the name policy);
* metrics of ``validate()`` / ``test()`` outside ``fit`` -> scalars of the
  last run, delivered before the call returns;
* ``log_hyperparams`` (``save_hyperparameters``, dicts, Namespaces, nested)
  -> hyperparameters;
* ``finalize(status)`` after ``fit`` -> the run closes (last values become
  scalars) and keeps its status (success, failed, interrupted);
* ``save()`` costs nothing: delivery is the recorder's background worker;
* ``after_save_checkpoint`` -> what was logged before the checkpoint is
  delivered (a wait of at most ``CHECKPOINT_FLUSH_S``), so that a training
  killed later and resumed from it keeps it (see Resume);
* ``save_dir`` / ``log_dir``: the run's folder, ``<store folder>/<run id>``,
  where Lightning writes its own files (``LightningCLI``'s ``config.yaml``,
  checkpoints), one folder per run as with Lightning's own loggers.

Lightning Fabric (``Fabric(loggers=[CraftAiLogger()])``) only calls
``log_metrics`` (``fabric.log``, ``fabric.log_dict``): its values are one run,
ended by ``fabric.logger.finalize(status)`` or, failing that, when the script
ends, with the status of how it ended (``success``; ``failed`` or
``interrupted`` when an exception ends it).

Lightning hands a logger no trainer. At the start of each stage it calls
``log_graph(model)``; the model's public ``trainer`` tells the stage and the
expected number of logging events. With ``enable_autolog_hparams=False``
(no ``log_graph``), the first stage seen is taken as ``fit`` and what comes
after its ``finalize`` as end-of-run values. Only the global rank 0 records.

Resume. ``fit(model, ckpt_path=...)`` continues a run, each step kept once.

* Which run: ``run_id=`` or ``$CRAFT_CALLBACKS_RUN_ID`` (on the platform,
  the execution). Lightning gives a logger no legitimate way to carry its id
  with the checkpoint. Only callbacks and the module write into it
  (``state_dict``, ``on_save_checkpoint``); ``after_save_checkpoint`` comes
  once the file is written. The checkpoint's path does lie in its run's
  folder (``<root_dir>/<run id>/...`` with ``ModelCheckpoint``'s default
  ``dirpath``), but Lightning asks the logger for the folder (``save_dir``,
  ``version``: ``ModelCheckpoint``'s ``dirpath``, ``LightningCLI``'s
  ``config.yaml``) in ``setup``, before it loads the checkpoint and before
  the logger sees the trainer (``log_graph``): a run adopted then would have
  its new files in another folder than its own. So, as with
  ``WandbLogger(id=...)`` and ``MLFlowLogger(run_id=...)``, the id is given.
  A fit that resumes from a checkpoint in the folder of another run of the
  store, and so records a new run, says which id to give (one warning).
* From which step: the trainer's public ``ckpt_path``, read in
  ``log_graph``, tells that the fit resumes. Lightning logs at steps that
  never go back, and the resumed fit repeats what the crashed one did after
  the checkpoint, so its first ``log_metrics`` step ``S`` is where the replay
  starts: ``resume_from(S - 1)`` before recording it keeps what was logged
  before the checkpoint and replaces what was logged after it (on the
  platform, whose lists only grow, that is not sent again). ``S`` is in the
  units of the steps Lightning hands loggers, which the checkpoint's
  ``global_step`` is not (it counts the steps of every optimizer). For a
  checkpoint saved at the end of a batch, Lightning logs that batch's values
  right after saving, and the resumed fit does not log them again: a
  process killed within ``flush_interval`` of such a checkpoint loses them.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from craft_callbacks.defaults import (
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_FLUSH_EVENTS,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_LIST_VALUES,
    DEFAULT_REQUEST_TIMEOUT_S,
)
from craft_callbacks.exceptions import CraftCallbacksWarning
from craft_callbacks.hyperparameters import flatten
from craft_callbacks.recorder import MetricRecorder
from craft_callbacks.runs import AdapterRuns, DisabledRuns, disabled_by_environment
from craft_callbacks.sinks.local_store import LocalStore, new_execution_id
from craft_callbacks.sqlite_files import default_store_path

__all__ = ["CraftAiLogger"]

_FIT = "fit"
CHECKPOINT_FLUSH_S = 2.0  # at most this long a checkpoint waits for the metrics logged before it
_LIGHTNING_JOIN = "-"  # Lightning's loggers join a prefix to names with "-"


def _expected_events(trainer: Any) -> int | None:
    """Training logs every ``log_every_n_steps`` optimizer steps, plus epoch-end logs.

    Read from plain trainer attributes once the training data is set up: the
    ``estimated_stepping_batches`` property may run a collective operation,
    which a rank-zero-only logger must never start.
    """
    try:
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        if trainer.max_steps and trainer.max_steps > 0:
            steps = int(trainer.max_steps)
        else:
            batches = float(trainer.num_training_batches)
            if not math.isfinite(batches):
                return None
            steps = int(batches * epochs) // max(int(trainer.accumulate_grad_batches), 1)
        every = max(int(trainer.log_every_n_steps), 1)
    except Exception:  # an attribute this Lightning version does not have
        return None
    return steps // every + 2 * epochs


class CraftAiLogger(Logger):
    """Record a Lightning run on the Craft AI platform (or the local store).

    ``recorder``: a :class:`~craft_callbacks.MetricRecorder` to use for every
    ``fit`` (closing it is then yours); otherwise each ``fit`` records a new
    run to ``sink`` (``"auto"``: the platform inside an execution, the local
    store elsewhere). ``name`` names local runs (their pipeline); ``prefix``
    is put before every metric name as Lightning's loggers do
    (``prefix="exp"`` records ``exp-train_loss``). ``run_id`` (default
    ``$CRAFT_CALLBACKS_RUN_ID``) continues that local run: with
    ``fit(ckpt_path=...)``, from the checkpoint's step, each step kept once.
    The other arguments are the recorder's options. Every argument can be
    given from ``LightningCLI``.
    """

    def __init__(
        self,
        recorder: MetricRecorder | None = None,
        *,
        sink: Any = "auto",
        name: str | None = None,
        prefix: str = "",
        run_id: str | None = None,
        store_path: str | None = None,
        deployment_name: str | None = None,
        max_list_values: int = DEFAULT_MAX_LIST_VALUES,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_S,
        flush_events: int = DEFAULT_FLUSH_EVENTS,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_S,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self._name = name
        self._prefix = prefix
        self._options: dict[str, Any] = {
            "run_id": run_id,
            "store_path": store_path,
            "deployment_name": deployment_name,
            "max_list_values": max_list_values,
            "flush_interval": flush_interval,
            "flush_events": flush_events,
            "close_timeout": close_timeout,
            "request_timeout": request_timeout,
        }
        self._recorder = recorder
        self._sink = sink
        self._stage: str | None = None
        self._trainer: Any = None
        self._resuming = False  # this fit resumes from a checkpoint: its first step says from where
        self._pending_hyperparameters: dict[str, Any] = {}
        self._store_in_use: Path | None = None
        self._disabled_version = f"disabled-{new_execution_id()}"  # turned off: its folder's name
        self._runs = self._make_runs()

    def _make_runs(self) -> AdapterRuns:
        """The runs of this logger; the sink is chosen (and a bad store refused) here, at construction.

        Fabric may never call ``finalize``: a run still open when the script
        ends ends then, with the status of how the script ended.
        """
        if disabled_by_environment():
            return DisabledRuns(self._disabled_version)
        runs = AdapterRuns(
            self._recorder,
            self._sink,
            prefix=self._prefix,
            joiner=_LIGHTNING_JOIN,
            end_at_exit=True,
            **self._options,
        )
        # The default store may be elsewhere than asked (beside a damaged one, in a temporary folder).
        self._store_in_use = runs.sink.path if isinstance(runs.sink, LocalStore) else None
        return runs

    # -- what Lightning asks of a logger ---------------------------------------------

    @property
    def name(self) -> str:
        return self._name or "craft_callbacks"

    @property
    def root_dir(self) -> str:
        """The store's folder (``./craft_metrics`` by default): each run's folder is in it."""
        if self._store_in_use is not None:
            return str(self._store_in_use.parent)
        store_path = self._options["store_path"]
        return str((Path(store_path) if store_path else default_store_path()).parent)

    @property
    def log_dir(self) -> str:
        """The folder of the current (or next) run: ``<root_dir>/<run id>``, one per run."""
        return os.path.join(self.root_dir, self.version)

    @property
    def save_dir(self) -> str:
        """Where Lightning writes its own files for this run: the run's folder (:attr:`log_dir`).

        Lightning takes the first logger's ``save_dir`` as ``trainer.log_dir``
        (``LightningCLI`` saves its ``config.yaml`` there) and puts
        ``ModelCheckpoint``'s files in ``<save_dir>/<name>/<version>/checkpoints``:
        both land in the run's folder, so two runs never share one.
        """
        return self.log_dir

    @property
    def version(self) -> str:
        """The id of the current (or next) run (turned off: an id of this logger's own, for its folder)."""
        return self._runs.current.execution_id if self._runs.current else self._runs.next_execution_id

    @property
    @rank_zero_experiment
    def experiment(self) -> MetricRecorder | None:
        """The recorder of the current run (for ``self.logger.experiment.log_final(...)``)."""
        return self._runs.current

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Called at the start of every stage: the model's trainer tells which one."""
        trainer = getattr(model, "_trainer", None)
        if trainer is None or not self._runs.enabled:
            return
        stage = getattr(trainer.state.fn, "value", None)
        self._stage = stage
        if stage == _FIT:
            self._start_run()
            self._trainer = trainer  # its training data is set up by the first log_metrics
            checkpoint = getattr(trainer, "ckpt_path", None)
            self._resuming = bool(checkpoint) and self._runs.recording
            if self._resuming:
                self._check_the_run_of(checkpoint)
        elif self._pending_hyperparameters:  # validate/test/predict: they belong to the last run
            if self._runs.current is None:
                self._start_run()
                self._runs.end("success")
            else:
                self._runs.current.log_hyperparams(self._pending_hyperparameters)
            self._pending_hyperparameters = {}

    def _check_the_run_of(self, checkpoint: Any) -> None:
        """One warning when the checkpoint lies in the folder of another run of the store than this one."""
        try:
            recorder = self._runs.current
            if recorder is None or not isinstance(recorder.sink, LocalStore):
                return
            root = Path(self.root_dir).resolve()
            folder = Path(os.fspath(checkpoint)).resolve().relative_to(root).parts[0]
            if folder == recorder.execution_id or not (root / folder).is_dir():
                return
            if not any(run["execution_id"] == folder for run in recorder.sink.executions()):
                return
        except Exception:  # a URL, a path outside the store's folder: nothing to say
            return
        warnings.warn(
            f"craft_callbacks: this fit resumes from a checkpoint of run {folder} but records a new run, "
            f"{recorder.execution_id}; to continue run {folder}, pass CraftAiLogger(run_id={folder!r}) "
            f"or set CRAFT_CALLBACKS_RUN_ID={folder}",
            CraftCallbacksWarning,
            stacklevel=3,
        )

    def _start_run(self) -> None:
        self._runs.start(None, self._pending_hyperparameters, pipeline_name=self._name)
        self._pending_hyperparameters = {}

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if not self._runs.enabled:  # turned off: nothing of the call is looked at
            return
        flat = flatten(params)
        recorder = self._runs.open_run
        if self._stage == _FIT and recorder is not None:
            recorder.log_hyperparams(flat)
        else:  # a stage is starting: log_graph, called next, says which run they belong to
            self._pending_hyperparameters.update(flat)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self._runs.enabled:
            return
        if self._stage is None and self._runs.current is None:
            self._stage = _FIT  # no log_graph: the first stage is taken as fit
            self._start_run()
        recorder = self._runs.open_run if self._stage == _FIT else None
        if recorder is not None:
            if self._trainer is not None:
                trainer, self._trainer = self._trainer, None
                recorder.expect_events(_expected_events(trainer))
            if self._resuming and step is not None:  # the resumed fit's first step: the replay starts here
                self._resuming = False
                with contextlib.suppress(Exception):  # a step that is no number: the recorder deals with it
                    recorder.resume_from(int(step) - 1)
            self._runs.log_step(metrics, step)
        else:
            self._runs.log_final(metrics)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """A checkpoint was saved: what was logged before it is delivered too (a bounded wait), so a
        training killed later and resumed from it keeps it."""
        if self._stage == _FIT:
            self._runs.flush(CHECKPOINT_FLUSH_S)  # never into training

    def save(self) -> None:
        """Nothing to do: the recorder's background worker delivers (Lightning calls this every step)."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._stage == _FIT and self._runs.recording:
            if status == "failed" and isinstance(sys.exc_info()[1], KeyboardInterrupt):
                status = "interrupted"
            self._runs.end(status)
        self._stage = "ended"
        self._resuming = False

    # -- ddp_spawn pickles the trainer and its loggers into each process -------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_runs"] = None
        state["_recorder"] = None
        state["_trainer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runs = self._make_runs()
