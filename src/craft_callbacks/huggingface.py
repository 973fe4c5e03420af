"""HuggingFace ``transformers.Trainer`` adapter: ``Trainer(..., callbacks=[CraftAiCallback()])``.

A thin translation of the Trainer's events into recorder calls:

* each ``on_log`` during training -> ``log_step`` at ``state.global_step``
  (loss, grad_norm, learning_rate, epoch, and eval_* of periodic evaluation);
* the train summary the Trainer logs at the end (train_runtime, train_loss,
  train_samples_per_second, total_flos...) -> scalars;
* ``on_train_end`` -> the run closes (last list values become scalars);
* ``evaluate()`` / ``predict()`` metrics outside training -> scalars of the
  last run, delivered before the call returns;
* ``TrainingArguments`` and model config numbers -> hyperparameters;
* each trial of ``hyperparameter_search`` is a run: ``trial/number``,
  ``trial/name`` (``hp_name``) and ``trial/params/...`` join its hyperparameters;
* ``train(resume_from_checkpoint=...)`` continues the run the checkpoint was
  taken in, each step once: the callback is one of the Trainer's stateful
  callbacks (``ExportableState``), so its run id is saved in each checkpoint's
  ``trainer_state.json`` and read back when the Trainer resumes.

Works with TRL's trainers (``SFTTrainer``...), which are Trainers.

Only the world process zero records. ``CRAFT_CALLBACKS_DISABLED=1`` turns the
callback off, like HF's own ``DISABLE_MLFLOW_INTEGRATION``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Final

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

try:  # transformers >= 4.41: callbacks whose state is saved in each checkpoint
    from transformers.trainer_callback import ExportableState
except ImportError:  # pragma: no cover - older transformers: no resume of the run id

    class ExportableState:  # type: ignore[no-redef]
        """Stands in where transformers saves no callback state."""


from craft_callbacks.exceptions import CraftCallbacksWarning
from craft_callbacks.hyperparameters import flatten
from craft_callbacks.recorder import MetricRecorder
from craft_callbacks.runs import adapter_runs

SUMMARY_KEY: Final = "train_runtime"  # in every train summary the Trainer logs (speed_metrics)
CHECKPOINT_FLUSH_S: Final = 2.0  # at most this long a checkpoint waits for the metrics logged before it

__all__ = ["CraftAiCallback"]


def _strategy(value: Any) -> str:
    return str(getattr(value, "value", value))


def expected_log_events(args: TrainingArguments, state: TrainerState) -> int | None:
    """How many ``on_log`` calls a training will make (logging plus periodic evaluations)."""
    steps = state.max_steps
    if not steps:
        return None
    epochs = math.ceil(args.num_train_epochs) if args.max_steps <= 0 else None
    events = 0
    for strategy, every in (
        (_strategy(args.logging_strategy), state.logging_steps),
        (_strategy(args.eval_strategy), state.eval_steps),
    ):
        if strategy == "steps" and every:
            events += steps // int(every) if every >= 1 else steps
        elif strategy == "epoch":
            events += epochs or 1
    if getattr(args, "logging_first_step", False):
        events += 1
    return events or None


def hyperparameters(args: TrainingArguments, model: Any) -> dict[str, Any]:
    """The simple fields of the training arguments and of the model's config."""
    params = flatten(args.to_dict(), "args")  # type: ignore[no-untyped-call]
    config: Any = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        params.update(flatten(config.to_dict(), "model"))
    return params


def _plain(value: Any) -> bool:
    """Whether an argument can be saved in a checkpoint's JSON (a sink object cannot)."""
    return value is None or isinstance(value, (str, int, float, bool))


def _saved_run_id(state: TrainerState) -> str | None:
    """The run id a checkpoint's state saved for this callback, if any."""
    saved: Any = (getattr(state, "stateful_callbacks", None) or {}).get("CraftAiCallback")
    if isinstance(saved, list):
        saved = saved[0] if saved else None
    run_id = (saved or {}).get("attributes", {}).get("run_id") if isinstance(saved, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


def trial_hyperparameters(state: TrainerState, number: int) -> dict[str, Any]:
    """A hyperparameter-search trial: ``trial/number``, ``trial/name`` (``hp_name``), ``trial/params/...``."""
    trial: dict[str, Any] = {"number": number}
    if getattr(state, "trial_name", None) is not None:
        trial["name"] = state.trial_name
    trial["params"] = dict(state.trial_params or {})
    return flatten(trial, "trial")


class CraftAiCallback(TrainerCallback, ExportableState):
    """Record a ``transformers.Trainer`` run on the Craft AI platform (or the local store).

    ``recorder``: a :class:`~craft_callbacks.MetricRecorder` to use for every
    run (closing it is then yours); otherwise each ``train()`` records a new
    run to ``sink`` (``"auto"``: the platform inside an execution, the local
    store elsewhere). ``prefix`` is put before every metric name
    (``prefix="hf/"`` records ``hf/loss``, then the name policy applies).
    Other keyword arguments go to ``MetricRecorder`` (``store_path``,
    ``max_list_values``, ``flush_interval``...).
    """

    def __init__(
        self,
        recorder: MetricRecorder | None = None,
        *,
        sink: Any = "auto",
        prefix: str = "",
        log_hyperparameters: bool = True,
        **recorder_options: Any,
    ) -> None:
        self._arguments = {
            "prefix": prefix,
            "log_hyperparameters": log_hyperparameters,
            **{key: value for key, value in recorder_options.items() if _plain(value)},
        }
        self.run_id: str | None = None  # the run being recorded: saved in each checkpoint
        self.prefix = prefix
        self.log_hyperparameters = log_hyperparameters
        self.runs = adapter_runs(recorder, sink, prefix=prefix, **recorder_options)
        self.enabled = self.runs.enabled  # False: CRAFT_CALLBACKS_DISABLED is set
        self._training = False
        self._training_chief = False
        self._warned: set[str] = set()
        self._trials = 0  # trainings of the current hyperparameter search seen so far

    @property
    def recorder(self) -> MetricRecorder | None:
        """The recorder of the current (or last) run."""
        return self.runs.current

    def _chief(self, args: TrainingArguments, state: TrainerState) -> bool:
        """Whether this process records; decided once per training (``args.process_index`` is costly)."""
        if self._training:
            return self._training_chief
        return self.runs.enabled and state.is_world_process_zero and args.process_index == 0

    def _next_trial(self, state: TrainerState) -> int | None:
        """The number of this training's trial in a hyperparameter search (None: not a trial).

        Trials are numbered in the order they run, from 0, as a search that starts a
        new study numbers them (the Trainer hands callbacks a trial's parameters, not
        its number); a training that is no trial starts the count again.
        """
        if getattr(state, "trial_params", None) is None:
            self._trials = 0
            return None
        number, self._trials = self._trials, self._trials + 1
        return number

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"craft_callbacks: {message}", CraftCallbacksWarning, stacklevel=3)

    def _not_a_mapping(self, event: str, what: str, value: Any) -> None:
        """An event's values are not a mapping of names to values: not recorded, one warning."""
        self._warn_once(
            f"mapping:{event}",
            f"{event} was given {what} of type {type(value).__name__}, not a mapping of metric names "
            "to values; they are not recorded (this warning is shown once)",
        )

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._training_chief = self._chief(args, state)
        self._training = True
        trial = self._next_trial(state)
        if not self._training_chief:
            return
        params = hyperparameters(args, kwargs.get("model")) if self.log_hyperparameters else None
        if params is not None and trial is not None:
            params.update(trial_hyperparameters(state, trial))
        resumed = state.global_step > 0  # train(resume_from_checkpoint=...) loaded a checkpoint
        recorder = self.runs.start(
            expected_log_events(args, state),
            params,
            pipeline_name=args.run_name or None,
            resume_step=state.global_step if resumed else None,
            run_id=_saved_run_id(state) if resumed else None,  # the checkpoint's run, continued
        )
        self.run_id = recorder.execution_id if recorder is not None else None

    def state(self) -> dict[str, Any]:
        """What each checkpoint keeps of this callback: its run id (and its plain arguments)."""
        return {"args": dict(self._arguments), "attributes": {"run_id": self.run_id}}

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Any = None,
        **kwargs: Any,
    ) -> None:
        if logs is None or not self._chief(args, state):
            return
        if type(logs) is not dict and not isinstance(logs, Mapping):
            self._not_a_mapping("on_log", "logs", logs)
            return
        if not logs:
            return
        if self._training and SUMMARY_KEY not in logs:
            self.runs.log_step(logs, state.global_step)  # the hot path: the recorder's own log_step
        else:
            self.runs.log_final(logs)

    def on_predict(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Any = None,
        **kwargs: Any,
    ) -> None:
        if metrics is None or not self._chief(args, state):
            return
        if not isinstance(metrics, Mapping):
            self._not_a_mapping("on_predict", "metrics", metrics)
            return
        if metrics:
            self.runs.log_final(metrics)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """A checkpoint was saved: what was logged up to it is delivered too (bounded wait), so a
        training killed later and resumed from it misses no step."""
        if self._training and self._training_chief:
            self.runs.flush(CHECKPOINT_FLUSH_S)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        chief = self._chief(args, state)
        self._training = False
        self._training_chief = False
        if not chief:
            return
        self.runs.end("success")
