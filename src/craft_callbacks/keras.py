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

The callback is ``async_safe``: Keras may run its batch hooks on a thread
pool instead of blocking the training loop, and they never touch
``self.model`` (on JAX that would force a device sync). Batch logs that
arrive out of order are put back in step order. Only the chief records.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from contextlib import suppress
from typing import Any, Final

import keras

from craft_callbacks.hyperparameters import flatten
from craft_callbacks.ordering import InOrder
from craft_callbacks.recorder import MetricRecorder
from craft_callbacks.runs import Runs, disabled_by_environment

__all__ = ["BATCH_PREFIX", "EVAL_PREFIX", "CraftAiKerasCallback"]

BATCH_PREFIX: Final = "batch_"
EVAL_PREFIX: Final = "eval_"  # evaluate() after fit: HF's names; Keras's own are loss, <metric>, val_*
DEFAULT_LOG_EVERY_N_STEPS: Final = 50


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


class CraftAiKerasCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Record a Keras ``fit`` on the Craft AI platform (or the local store).

    ``log_every_n_steps``: batch logs every that many batches (0 turns them
    off). ``recorder``: a :class:`~craft_callbacks.MetricRecorder` to use for
    every ``fit`` (closing it is then yours); otherwise each ``fit`` records a
    new run to ``sink`` (``"auto"``: the platform inside an execution, the
    local store elsewhere). ``hyperparameters`` are kept with each run. Other
    keyword arguments go to ``MetricRecorder``.

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
        **recorder_options: Any,
    ) -> None:
        super().__init__()
        if log_every_n_steps < 0:
            raise ValueError(f"log_every_n_steps must be 0 (off) or more, not {log_every_n_steps}")
        self.log_every_n_steps = int(log_every_n_steps)
        self.hyperparameters = dict(hyperparameters or {})
        self.runs = Runs(recorder, sink, **recorder_options) if not disabled_by_environment() else None
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

    @property
    def recorder(self) -> MetricRecorder | None:
        """The recorder of the current (or last) run."""
        return self.runs.current if self.runs else None

    def _log_batch(self, metrics: Mapping[str, Any], key: int) -> None:
        step = self._batch_steps.pop(key, None)
        if self.runs is not None and step is not None:
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
        self._chief = is_chief()
        if self.runs is None or not self._chief:
            return
        self._training = True
        self._epoch_start = self._batches = 0
        self._seen = []
        self._batch_steps.clear()
        self._group = steps_per_execution(self.model)
        steps = (self.params or {}).get("steps")
        self._steps_per_epoch = int(steps) if steps else None
        self.runs.start(self._expected_events(), self._run_hyperparameters())

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
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
        self._batch_logs.add(key, {f"{BATCH_PREFIX}{name}": value for name, value in logs.items()})

    def _count_batches(self) -> None:
        """The epoch's batches, once Keras has run all its batch hooks (async ones included)."""
        if self._steps_per_epoch is not None:
            self._batches = self._steps_per_epoch
        elif self._seen:
            self._batches = max(self._seen) + 1
            self._seen = []

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._count_batches()
        if self.runs is None or not self._training:
            return
        self._batch_logs.drain()
        if logs:
            self.runs.log_step(logs, self._epoch_start + self._batches)

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.runs is None or self._training or not logs or not is_chief():
            return  # validation inside fit arrives with the epoch logs (val_*)
        # evaluate() after fit, on other data: its own names, never the training's loss or val_*
        self.runs.log_final({f"{EVAL_PREFIX}{key}": value for key, value in logs.items()})

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.runs is None or not self._training:
            return
        self._batch_logs.drain()
        self._training = False
        self.runs.end("success")
