"""Keras 3 adapter: ``model.fit(..., callbacks=[CraftAiKerasCallback()])``, on any backend.

A thin translation of Keras's callback events into recorder calls:

* every ``on_epoch_end`` -> ``log_step`` with Keras's own names (``loss``,
  compiled metrics, ``val_*``): the lists equal ``History.history``;
* every ``log_every_n_steps`` batches -> ``log_step`` under ``batch_``
  names (``batch_loss``, ``batch_accuracy``: Keras's running means since the
  start of the epoch), at the batch count, a global step that keeps counting
  across epochs. With ``steps_per_execution=k`` (JAX, TensorFlow) Keras calls
  the batch hook once every ``k`` batches, with the last batch's index: each
  multiple of ``log_every_n_steps`` is then recorded once, at the first hook
  that reaches it, at that hook's real batch count;
* ``on_train_end`` -> the run closes (last values become scalars);
* ``model.evaluate(..., callbacks=[callback])`` outside ``fit`` -> scalars of
  the last run under ``eval_`` names (``eval_loss``, ``eval_accuracy``), so
  that they never replace the training's ``loss`` (nor ``val_*``);
* ``params``, the optimizer's config and ``hyperparameters=`` -> hyperparameters.

Resume. A ``fit`` that starts past epoch 0 (``keras.callbacks.BackupAndRestore``
restored a backup, or ``fit(initial_epoch=...)``) goes on counting steps from
that epoch's first batch, and the recorder resumes from that step
(``resume_from``): each step of the run is kept once. Which run it continues:

* ``backup_dir=`` (the ``BackupAndRestore`` of the same ``fit``, or its
  folder): the callback writes its run id, with the step each epoch ended
  at, into that folder (``craft_callbacks_run.json``), and a ``fit`` that
  finds the file there continues that run. The id travels with the
  checkpoint: copy the folder and the run goes with it; ``BackupAndRestore``
  deletes the folder when ``fit`` ends, and the callback its file, so a
  later ``fit`` is a new run. The folder is named on the callback because
  Keras gives a callback only its model and ``params``, never the other
  callbacks of the ``fit``; finding ``BackupAndRestore`` by walking the
  caller's stack or the garbage collector would break with any Keras
  release. The file has a name of its own, so it never collides with
  Keras's ``latest.weights.h5`` and ``training_metadata.json``. The resume
  point is the epoch Keras passes to the first ``on_epoch_begin``, after
  every ``on_train_begin`` has run: the order of the callbacks in the list
  does not matter, and what Keras restores (``training_metadata.json``'s
  ``epoch``) is what the run resumes from. So the run opens there, at the
  first epoch, not at ``on_train_begin``. The backup's run id comes before
  ``run_id=``: the steps it holds are that run's. The folder is a local
  path (written with ``open``); a file that cannot be written or read is one
  warning, and the fit is then a new run;
* else ``run_id=`` or ``$CRAFT_CALLBACKS_RUN_ID`` (the core's options), with
  ``fit(initial_epoch=...)`` after restoring your own checkpoint.

The callback is ``async_safe``: Keras may run its batch hooks on a thread
pool instead of blocking the training loop, and they never touch
``self.model`` (on JAX that would force a device sync). Batch logs that
arrive out of order are put back in step order. Only the chief records.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping
from contextlib import suppress
from typing import Any, Final

import keras

from craft_callbacks.exceptions import CraftCallbacksWarning
from craft_callbacks.hyperparameters import flatten
from craft_callbacks.ordering import InOrder
from craft_callbacks.recorder import MetricRecorder
from craft_callbacks.runs import adapter_runs, prefixed

__all__ = ["BATCH_PREFIX", "EVAL_PREFIX", "RUN_FILE", "CraftAiKerasCallback"]

BATCH_PREFIX: Final = "batch_"
EVAL_PREFIX: Final = "eval_"  # evaluate() after fit: HF's names; Keras's own are loss, <metric>, val_*
DEFAULT_LOG_EVERY_N_STEPS: Final = 50
RUN_FILE: Final = "craft_callbacks_run.json"  # in the BackupAndRestore folder: the run it continues


def is_chief() -> bool:
    """Whether this process records under multi-worker training (TF_CONFIG, RANK, JAX processes)."""
    raw = os.environ.get("TF_CONFIG")
    if raw:
        try:
            config = json.loads(raw)
            task = config.get("task", {})
            kind, index = task.get("type"), int(task.get("index", 0))
        except (ValueError, TypeError, AttributeError):
            return True
        if kind in ("chief", "master"):
            return True
        if kind == "worker":
            return "chief" not in config.get("cluster", {}) and index == 0
        if kind:
            return False
    rank = os.environ.get("RANK")
    if rank is not None and rank.strip().isdigit() and int(rank) != 0:
        return False
    jax = sys.modules.get("jax")
    if jax is not None and keras.backend.backend() == "jax":
        try:
            return int(jax.process_index()) == 0
        except Exception:
            return True
    return True


def steps_per_execution(model: Any) -> int:
    """The number of batches Keras runs between two batch hooks (1 when it cannot be read)."""
    try:
        return max(1, int(getattr(model, "steps_per_execution", 1) or 1))
    except Exception:
        return 1


def backup_folder(backup_dir: Any) -> str | None:
    """The folder of ``backup_dir=``: a ``BackupAndRestore`` callback's, or a path."""
    if backup_dir is None:
        return None
    if isinstance(backup_dir, keras.callbacks.BackupAndRestore):
        return str(backup_dir.backup_dir)
    if isinstance(backup_dir, (str, os.PathLike)) and os.fspath(backup_dir):
        return str(os.fspath(backup_dir))
    raise TypeError(
        "backup_dir must be the keras.callbacks.BackupAndRestore of the fit or its backup folder, "
        f"not {backup_dir!r}"
    )


class CraftAiKerasCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Record a Keras ``fit`` on the Craft AI platform (or the local store).

    ``log_every_n_steps``: batch logs every that many batches (0 turns them
    off). ``recorder``: a :class:`~craft_callbacks.MetricRecorder` to use for
    every ``fit`` (closing it is then yours); otherwise each ``fit`` records a
    new run to ``sink`` (``"auto"``: the platform inside an execution, the
    local store elsewhere). ``hyperparameters`` are kept with each run. Other
    keyword arguments go to ``MetricRecorder`` (``run_id=`` continues a run).

    ``backup_dir``: the ``keras.callbacks.BackupAndRestore`` of the same
    ``fit`` (or its ``backup_dir``): the run id is kept with its backup, and a
    ``fit`` it restores continues that run, each step once (see the module's
    docstring).

    ``model.evaluate()`` after ``fit`` is recorded only when the callback is
    passed to it (``callbacks=[callback]``): scalars named ``eval_loss``,
    ``eval_<metric>``.
    """

    async_safe = True

    def __init__(
        self,
        recorder: MetricRecorder | None = None,
        *,
        sink: Any = "auto",
        log_every_n_steps: int = DEFAULT_LOG_EVERY_N_STEPS,
        hyperparameters: Mapping[str, Any] | None = None,
        backup_dir: Any = None,
        **recorder_options: Any,
    ) -> None:
        super().__init__()
        if log_every_n_steps < 0:
            raise ValueError(f"log_every_n_steps must be 0 (off) or more, not {log_every_n_steps}")
        self.log_every_n_steps = int(log_every_n_steps)
        self.backup_dir = backup_folder(backup_dir)
        self.hyperparameters = dict(hyperparameters or {})
        self.runs = adapter_runs(recorder, sink, **recorder_options)
        self._chief = True
        self._training = False
        self._epoch_start = 0
        self._batches = 0
        self._steps_per_epoch: int | None = None
        self._group = 1  # steps_per_execution: batches between two batch hooks
        self._seen: list[int] = []
        # Batch logs are put in order by a key that goes up by one from each logged hook to the
        # next (see on_train_batch_end); the step each is recorded at waits here.
        self._batch_steps: dict[int, int] = {}
        self._batch_logs = InOrder(self._log_batch, 1)
        self._starting = False  # the run starts at the fit's first epoch, where Keras says which
        self._backup: dict[str, Any] | None = None  # the run file found in backup_dir
        self._epoch_steps: dict[int, int] = {}  # epochs done -> the step the last one ended at
        self._warned = False

    @property
    def recorder(self) -> MetricRecorder | None:
        """The recorder of the current (or last) run."""
        return self.runs.current

    def _log_batch(self, metrics: Mapping[str, Any], key: int) -> None:
        step = self._batch_steps.pop(key, None)
        if step is not None:
            self.runs.log_step(metrics, step)

    def _expected_events(self) -> int | None:
        params = self.params or {}
        epochs, steps = params.get("epochs"), params.get("steps")
        if not epochs:
            return None
        batches = int(epochs) * int(steps) if steps else 0  # the batch count goes on across epochs
        return int(epochs) + (batches // self.log_every_n_steps if self.log_every_n_steps else 0)

    def _run_hyperparameters(self) -> dict[str, Any]:
        params = flatten(self.params or {}, "params")
        optimizer = getattr(self.model, "optimizer", None)
        get_config = getattr(optimizer, "get_config", None)
        if callable(get_config):
            with suppress(Exception):  # an optimizer whose config cannot be read
                params.update(flatten(get_config(), "optimizer"))
        params.update(flatten(self.hyperparameters))
        return params

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._chief = self.runs.enabled and is_chief()  # whether this process records
        if not self._chief:
            return
        self._training = True
        self._epoch_start = self._batches = 0
        self._seen = []
        self._batch_steps.clear()
        self._group = steps_per_execution(self.model)
        steps = (self.params or {}).get("steps")
        self._steps_per_epoch = int(steps) if steps else None
        self._backup = self._read_run_file()
        self._epoch_steps = {}
        if self._backup:
            self._epoch_steps = dict(self._backup["epoch_steps"])
        self._starting = True

    def _start(self, epoch: int) -> None:
        """Open the run at the fit's first epoch: ``epoch`` is where Keras starts (after a restore)."""
        start = self._step_of_epoch(epoch)
        self._epoch_start = start or 0
        resume = start if epoch > 0 or self._backup else None
        self.runs.start(
            self._expected_events(),
            self._run_hyperparameters(),
            resume_step=resume,
            run_id=self._backup["run_id"] if self._backup else None,  # the run the backup was taken in
            run_id_wins=True,  # over run_id=: the backup holds that run's steps
        )
        self._write_run_file()

    def _step_of_epoch(self, epoch: int) -> int | None:
        """The step the run is at when ``epoch`` begins (None when it cannot be told)."""
        if epoch <= 0:
            return 0
        if self._steps_per_epoch is not None:
            return epoch * self._steps_per_epoch
        step = self._epoch_steps.get(epoch)
        if step is None:
            self._warn(
                f"fit starts at epoch {epoch} of a dataset of unknown length and no backup tells the "
                "step that epoch began at: its steps are counted from 0, and the run does not resume"
            )
        return step

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._starting:
            self._starting = False
            self._batches = 0
            self._start(epoch)
        else:
            self._epoch_start += self._batches
            self._batches = 0
        every = self.log_every_n_steps
        self._batch_logs.expect(0 if not every or self._group >= every else self._epoch_start // every + 1)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._steps_per_epoch is None:  # a dataset of unknown length: its end tells
            self._seen.append(batch)  # atomic, whichever thread Keras runs this on
        every = self.log_every_n_steps
        if not (every and logs and self._training):
            return
        # Keras ran the batches after ``batch + 1 - group`` up to ``batch`` (an index past the
        # epoch's end for a short last group) since the hook before: the run's batch count went
        # from ``begin`` to ``end``. Record when that passed a multiple of ``every``, at ``end``.
        done = batch + 1 if self._steps_per_epoch is None else min(batch + 1, self._steps_per_epoch)
        end = self._epoch_start + done
        begin = self._epoch_start + max(0, batch + 1 - self._group)
        if end // every == begin // every:
            return
        # The hooks that record are consecutive multiples (group < every: one multiple each) or
        # every group of the epoch (group >= every): either numbers them one after the other.
        key = batch // self._group if self._group >= every else end // every
        if self._batch_steps.setdefault(key, end) != end:
            return  # this multiple was recorded already (atomic, whichever thread)
        self._batch_logs.add(key, prefixed(logs, BATCH_PREFIX))

    def _count_batches(self) -> None:
        """The epoch's batches, once Keras has run all its batch hooks (async ones included)."""
        if self._steps_per_epoch is not None:
            self._batches = self._steps_per_epoch
        elif self._seen:
            self._batches = max(self._seen) + 1
            self._seen = []

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._count_batches()
        if not self._training:
            return
        self._batch_logs.drain()
        end = self._epoch_start + self._batches
        if logs:
            self.runs.log_step(logs, end)
        self._epoch_steps[epoch + 1] = end
        self._write_run_file()

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._training or not logs or not is_chief():
            return  # validation inside fit arrives with the epoch logs (val_*)
        # evaluate() after fit, on other data: its own names, never the training's loss or val_*
        self.runs.log_final(prefixed(logs, EVAL_PREFIX))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._training:
            return
        self._batch_logs.drain()
        self._training = self._starting = False
        self.runs.end("success")
        self._remove_run_file()  # the fit ended: a later one is a new run

    # -- the run file in the backup folder -------------------------------------------------

    def _run_file(self) -> str | None:
        return os.path.join(self.backup_dir, RUN_FILE) if self.backup_dir else None

    def _read_run_file(self) -> dict[str, Any] | None:
        """The run a backup was taken in: ``{"run_id", "epoch_steps"}``, or None (never raises)."""
        path = self._run_file()
        if path is None or not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as file:
                found = json.load(file)
            run_id = found["run_id"]
            if not isinstance(run_id, str) or not run_id:
                raise ValueError(f"run_id {run_id!r}")
            epoch_steps = {int(epoch): int(step) for epoch, step in found.get("epoch_steps", {}).items()}
        except Exception as error:
            self._warn(f"{path} cannot be read ({type(error).__name__}: {error}); this fit is a new run")
            return None
        return {"run_id": run_id, "epoch_steps": epoch_steps}

    def _write_run_file(self) -> None:
        """Keep the run's id and the step each epoch ended at with the backup (never raises)."""
        path = self._run_file()
        recorder = self.recorder
        if path is None or recorder is None or recorder.closed:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            steps = {str(epoch): step for epoch, step in sorted(self._epoch_steps.items())}
            temporary = f"{path}.{os.getpid()}.tmp"
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump({"run_id": recorder.execution_id, "epoch_steps": steps}, file)
            os.replace(temporary, path)  # a crash while writing leaves the previous file whole
        except Exception as error:
            self._warn(
                f"the run id cannot be kept in {path} ({type(error).__name__}: {error}); a fit "
                "restored from this backup will be a new run"
            )

    def _remove_run_file(self) -> None:
        path = self._run_file()
        if path is None:
            return
        with suppress(OSError):
            os.remove(path)
        with suppress(OSError):  # a folder only the file was in (BackupAndRestore removes its own)
            os.rmdir(os.path.dirname(path))

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"craft_callbacks: {message}", CraftCallbacksWarning, stacklevel=2)
