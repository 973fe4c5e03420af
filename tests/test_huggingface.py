"""The HuggingFace adapter with a real transformers.Trainer and a tiny model built in code."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from craft_callbacks import (
    CraftCallbacksWarning,
    LocalStore,
    MetricLimitWarning,
    MetricRecorder,
    NonNumericMetricWarning,
    safe_name,
)
from craft_callbacks.huggingface import CraftAiCallback

SUMMARY = "train_runtime"


class TinyDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 64, (size, 8), generator=generator)
        self.labels = (self.ids[:, 0] > 32).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def tiny_model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def arguments(tmp_path: Path, **overrides: Any) -> TrainingArguments:
    options: dict[str, Any] = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 12,
        "logging_steps": 1,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-3,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "seed": 0,
    }
    options.update(overrides)
    return TrainingArguments(**options)


def trainer_with(callback: TrainerCallback, tmp_path: Path, **overrides: Any) -> Trainer:
    return Trainer(
        model=tiny_model(),
        args=arguments(tmp_path, **overrides),
        train_dataset=TinyDataset(64),
        eval_dataset=TinyDataset(16, seed=1),
        callbacks=[callback],
    )


def expected_lists(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """What the lists must hold: every training log entry, key by key, in order."""
    lists: dict[str, list[float]] = {}
    for entry in history:
        if SUMMARY in entry:
            break
        for key, value in entry.items():
            if key != "step":
                lists.setdefault(safe_name(key), []).append(value)
    return lists


def lists_of(store: LocalStore, execution_id: str) -> dict[str, list[float]]:
    return {row["name"]: row["values"] for row in store.get_list_metrics(execution_id=execution_id)}


def scalars_of(store: LocalStore, execution_id: str) -> dict[str, float]:
    return {row["name"]: row["value"] for row in store.get_metrics(execution_id=execution_id)}


def test_lists_equal_log_history_and_summary_values_are_scalars(store: LocalStore, tmp_path: Path) -> None:
    callback = CraftAiCallback(sink=store)
    trainer = trainer_with(callback, tmp_path)
    trainer.train()
    assert callback.recorder is not None and callback.recorder.closed
    run = callback.recorder.execution_id
    history = trainer.state.log_history
    lists = lists_of(store, run)
    assert lists == expected_lists(history)
    assert len(lists["loss"]) == 12
    steps = [step for step, _ in store.list_series(run, "loss")]
    assert steps == [entry["step"] for entry in history if "loss" in entry]
    summary = history[-1]
    assert SUMMARY in summary
    scalars = scalars_of(store, run)
    for key in (
        "train_runtime",
        "train_loss",
        "train_samples_per_second",
        "train_steps_per_second",
        "total_flos",
    ):
        assert scalars[key] == summary[key]
    for name, values in lists.items():
        if name not in summary:
            assert scalars[name] == values[-1], name  # the last value of each list is a scalar
    assert scalars["epoch"] == summary["epoch"]


def test_periodic_evaluation_goes_to_lists_and_evaluate_after_training_to_scalars(
    store: LocalStore, tmp_path: Path
) -> None:
    callback = CraftAiCallback(sink=store)
    trainer = trainer_with(callback, tmp_path, eval_strategy="steps", eval_steps=4)
    trainer.train()
    assert callback.recorder is not None
    run = callback.recorder.execution_id
    lists = lists_of(store, run)
    assert lists == expected_lists(trainer.state.log_history)
    assert len(lists["eval_loss"]) == 3
    assert [step for step, _ in store.list_series(run, "eval_loss")] == [4, 8, 12]
    metrics = trainer.evaluate()
    scalars = scalars_of(store, run)  # delivered before evaluate() returned
    assert scalars["eval_loss"] == metrics["eval_loss"]
    assert scalars["eval_runtime"] == metrics["eval_runtime"]
    assert len(lists_of(store, run)["eval_loss"]) == 3  # the lists did not grow
    predictions = trainer.predict(TinyDataset(8, seed=2))
    assert scalars_of(store, run)["test_loss"] == predictions.metrics["test_loss"]


def test_gradient_accumulation_and_max_steps(store: LocalStore, tmp_path: Path) -> None:
    callback = CraftAiCallback(sink=store)
    trainer = trainer_with(callback, tmp_path, max_steps=6, gradient_accumulation_steps=3, logging_steps=2)
    trainer.train()
    assert callback.recorder is not None
    lists = lists_of(store, callback.recorder.execution_id)
    assert lists == expected_lists(trainer.state.log_history)
    assert [step for step, _ in store.list_series(callback.recorder.execution_id, "loss")] == [2, 4, 6]


def test_a_second_train_is_a_new_run(store: LocalStore, tmp_path: Path) -> None:
    callback = CraftAiCallback(sink=store)
    trainer = trainer_with(callback, tmp_path, max_steps=4)
    trainer.train()
    assert callback.recorder is not None
    first = callback.recorder.execution_id
    trainer.train()
    second = callback.recorder.execution_id
    assert first != second
    assert len(lists_of(store, first)["loss"]) == 4
    assert len(lists_of(store, second)["loss"]) == 4
    assert {run["status"] for run in store.executions()} == {"success"}


def test_hyperparameters_come_from_the_arguments_and_the_model_config(
    store: LocalStore, tmp_path: Path
) -> None:
    callback = CraftAiCallback(sink=store)
    trainer_with(callback, tmp_path, max_steps=2).train()
    params = store.executions()[0]["hyperparameters"]
    assert params["args/learning_rate"] == 1e-3
    assert params["args/per_device_train_batch_size"] == 4
    assert params["args/max_steps"] == 2
    assert params["model/hidden_size"] == 16
    assert params["model/num_hidden_layers"] == 1
    assert all(isinstance(value, (int, float, str, bool, list, type(None))) for value in params.values())


class Keeper(TrainerCallback):
    """Another callback: sees every log dict after ours, and pops a key like some integrations do."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Any = None,
        **_: Any,
    ) -> None:
        self.seen.append(dict(logs))
        logs.pop("grad_norm", None)


def test_the_shared_logs_dict_is_not_changed(store: LocalStore, tmp_path: Path) -> None:
    keeper = Keeper()
    callback = CraftAiCallback(sink=store)
    trainer = Trainer(
        model=tiny_model(),
        args=arguments(tmp_path, max_steps=5),
        train_dataset=TinyDataset(32),
        callbacks=[callback, keeper],
    )
    trainer.train()
    assert callback.recorder is not None
    assert [
        {k: v for k, v in entry.items() if k != "step"} for entry in trainer.state.log_history
    ] == keeper.seen
    assert len(lists_of(store, callback.recorder.execution_id)["grad_norm"]) == 5


def test_non_numeric_metrics_are_dropped_and_training_goes_on(store: LocalStore, tmp_path: Path) -> None:
    def compute_metrics(prediction: Any) -> dict[str, Any]:
        accuracy = float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())
        return {"accuracy": accuracy, "report": "fine", "confusion": np.zeros((2, 2)), "nan": math.nan}

    callback = CraftAiCallback(sink=store)
    trainer = trainer_with(callback, tmp_path, eval_strategy="steps", eval_steps=3, max_steps=6)
    trainer.compute_metrics = compute_metrics
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert trainer.state.global_step == 6
    assert callback.recorder is not None
    lists = lists_of(store, callback.recorder.execution_id)
    assert len(lists["eval_accuracy"]) == 2
    assert "eval_report" not in lists and "eval_confusion" not in lists and "eval_nan" not in lists
    ours = [str(w.message) for w in caught if "craft_callbacks" in str(w.message)]
    assert sum("'eval_report'" in message for message in ours) == 1
    assert sum("'eval_confusion'" in message for message in ours) == 1
    assert sum("'eval_nan'" in message for message in ours) == 1
    assert issubclass(
        next(w for w in caught if "'eval_report'" in str(w.message)).category, NonNumericMetricWarning
    )


def test_prefix_and_a_recorder_of_your_own(tmp_path: Path, store: LocalStore) -> None:
    with MetricRecorder(store) as recorder:
        callback = CraftAiCallback(recorder, prefix="hf/")
        trainer_with(callback, tmp_path, max_steps=3).train()
        assert not recorder.closed  # yours to close
        recorder.log_final({"custom": 1})
    lists = lists_of(store, recorder.execution_id)
    assert len(lists["hf_loss"]) == 3
    assert scalars_of(store, recorder.execution_id)["custom"] == 1


def test_evaluate_without_training_records_scalars(store: LocalStore, tmp_path: Path) -> None:
    callback = CraftAiCallback(sink=store)
    trainer = trainer_with(callback, tmp_path)
    metrics = trainer.evaluate()
    assert callback.recorder is not None
    scalars = scalars_of(store, callback.recorder.execution_id)
    assert scalars["eval_loss"] == metrics["eval_loss"]
    assert lists_of(store, callback.recorder.execution_id) == {}


def test_disabled_by_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRAFT_CALLBACKS_DISABLED", "1")
    callback = CraftAiCallback(store_path=tmp_path / "never.db")
    trainer_with(callback, tmp_path, max_steps=2).train()
    assert callback.recorder is None
    assert not (tmp_path / "never.db").exists()


def test_a_bad_store_path_fails_when_the_callback_is_built(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    from craft_callbacks import LocalStoreError

    with pytest.raises(LocalStoreError):
        CraftAiCallback(store_path=tmp_path / "file" / "metrics.db")


def test_60000_logging_steps_stay_under_the_cap_evenly(tmp_path: Path) -> None:
    """A direct replay of a 60,000-step run through the callback's real API."""
    store = LocalStore(tmp_path / "long.db")
    callback = CraftAiCallback(sink=store, flush_interval=0.5)
    args = arguments(tmp_path, max_steps=60_000, logging_steps=1)
    state = TrainerState()
    state.max_steps, state.logging_steps, state.eval_steps = 60_000, 1, 500
    control = TrainerControl()
    with pytest.warns(MetricLimitWarning) as thinning:
        callback.on_train_begin(args, state, control, model=tiny_model())
        for step in range(1, 60_001):
            state.global_step = step
            logs = {"loss": 1 / step, "learning_rate": 1e-3, "epoch": step / 1e3}
            callback.on_log(args, state, control, logs=logs)
        callback.on_log(args, state, control, logs={"train_runtime": 12.5, "train_loss": 0.1, "epoch": 60.0})
        callback.on_train_end(args, state, control)
    assert sorted(str(w.message).split("'")[1] for w in thinning) == ["epoch", "learning_rate", "loss"]
    assert callback.recorder is not None
    run = callback.recorder.execution_id
    for name in ("loss", "learning_rate", "epoch"):
        steps = [step for step, _ in store.list_series(run, name)]
        assert 40_000 <= len(steps) <= 50_000
        assert steps[0] == 1 and steps[-1] == 60_000
        assert max(b - a for a, b in itertools.pairwise(steps)) <= 2
    assert scalars_of(store, run)["train_runtime"] == 12.5


def test_the_same_run_lands_on_the_platform_unchanged(platform: Any, tmp_path: Path) -> None:
    callback = CraftAiCallback()  # sink="auto": inside the execution, the platform
    trainer = trainer_with(callback, tmp_path, eval_strategy="steps", eval_steps=4)
    trainer.train()
    metrics = trainer.evaluate()
    execution = "exec-test-1"
    on_platform = {name: values for (run, name), values in platform.store.lists.items() if run == execution}
    assert on_platform == expected_lists(trainer.state.log_history)
    scalars = {name: value for (run, name), value in platform.store.scalars.items() if run == execution}
    summary = next(entry for entry in trainer.state.log_history if SUMMARY in entry)
    assert scalars["train_runtime"] == summary["train_runtime"]
    assert scalars["eval_loss"] == metrics["eval_loss"]
    assert scalars["loss"] == on_platform["loss"][-1]
    assert not Path("craft_metrics/metrics.db").exists()


class OddLogsTrainer(Trainer):
    """A Trainer whose ``log`` also hands the callbacks ``logs`` that are not a mapping, as a
    subclass or another library calling ``callback_handler.on_log`` may."""

    odd: Any = None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(logs, start_time)
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, self.odd)


@pytest.mark.parametrize(
    "odd",
    [0.5, "loss=0.5", [("loss", 0.5)], np.array([0.5, 0.25]), torch.tensor([0.5])],
    ids=["float", "str", "list-of-pairs", "numpy-array", "tensor"],
)
def test_logs_that_are_not_a_mapping_warn_once_and_training_goes_on(
    odd: Any, store: LocalStore, tmp_path: Path
) -> None:
    callback = CraftAiCallback(sink=store)
    trainer = OddLogsTrainer(
        model=tiny_model(),
        args=arguments(tmp_path, max_steps=4),
        train_dataset=TinyDataset(32),
        eval_dataset=TinyDataset(8, seed=1),
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # HF's own printer takes only dicts; this test is about ours
    trainer.odd = odd
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
        metrics = trainer.evaluate()  # after training too: the odd logs come after the evaluation's
    assert trainer.state.global_step == 4
    ours = [w for w in caught if "craft_callbacks" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert issubclass(ours[0].category, CraftCallbacksWarning)
    assert "not a mapping" in str(ours[0].message) and type(odd).__name__ in str(ours[0].message)
    assert callback.recorder is not None
    run = callback.recorder.execution_id
    assert lists_of(store, run) == expected_lists(trainer.state.log_history)  # the real logs, unchanged
    assert len(lists_of(store, run)["loss"]) == 4
    assert scalars_of(store, run)["eval_loss"] == metrics["eval_loss"]


class TrialKeeper(TrainerCallback):
    """What each training of a search saw: its trial's parameters, arguments, log history, evaluation."""

    def __init__(self) -> None:
        self.trials: list[dict[str, Any]] = []

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self.trials.append({"params": dict(state.trial_params or {}), "learning_rate": args.learning_rate})

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self.trials[-1]["history"] = [dict(entry) for entry in state.log_history]

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Any = None,
        **_: Any,
    ) -> None:
        self.trials[-1]["evaluation"] = dict(metrics)


def hp_space(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
    }


@pytest.mark.parametrize("named", [False, True], ids=["default-names", "hp_name"])
def test_each_hyperparameter_search_trial_is_a_run(named: bool, store: LocalStore, tmp_path: Path) -> None:
    import optuna  # noqa: F401  (the test extra: the search backend)

    callback, keeper = CraftAiCallback(sink=store), TrialKeeper()
    trainer = Trainer(
        model_init=tiny_model,
        args=arguments(tmp_path, max_steps=4),
        train_dataset=TinyDataset(32),
        eval_dataset=TinyDataset(8, seed=1),
        callbacks=[callback, keeper],
    )
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        backend="optuna",
        n_trials=2,
        direction="minimize",
        hp_name=(lambda trial: f"lr-search-{trial.number}") if named else None,
    )
    assert len(keeper.trials) == 2
    executions = store.executions()
    assert len(executions) == 2 and {e["status"] for e in executions} == {"success"}
    by_number = {e["hyperparameters"]["trial/number"]: e for e in executions}
    assert sorted(by_number) == [0, 1]
    for number, trial in enumerate(keeper.trials):
        execution = by_number[number]
        run, params = execution["execution_id"], execution["hyperparameters"]
        assert {key: value for key, value in params.items() if key.startswith("trial/params/")} == {
            f"trial/params/{key}": value for key, value in trial["params"].items()
        }
        assert params["args/learning_rate"] == trial["learning_rate"] == trial["params"]["learning_rate"]
        if named:
            assert params["trial/name"] == f"lr-search-{number}"
        else:
            assert "trial/name" not in params
        assert lists_of(store, run) == expected_lists(trial["history"])  # what this trial logged
        assert len(lists_of(store, run)["loss"]) == 4
        assert scalars_of(store, run)["eval_loss"] == trial["evaluation"]["eval_loss"]  # the objective
    best_run = by_number[int(best.run_id)]
    assert scalars_of(store, best_run["execution_id"])["eval_loss"] == best.objective
    assert {
        key.removeprefix("trial/params/"): value
        for key, value in best_run["hyperparameters"].items()
        if key.startswith("trial/params/")
    } == best.hyperparameters
