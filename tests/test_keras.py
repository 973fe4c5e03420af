"""The Keras adapter with real Keras models and fit() on the torch backend (the default run)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import keras
import numpy as np
import pytest

from craft_callbacks import LocalStore, MetricRecorder, NonFiniteMetricWarning, NonNumericMetricWarning
from craft_callbacks.keras import CraftAiKerasCallback

BATCHES_PER_EPOCH = 8


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCHES_PER_EPOCH * 8, 4)).astype("float32")
    return x, (x.sum(axis=1) > 0).astype("float32")


def model(metrics: list[Any] | None = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    built = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    built.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=metrics if metrics is not None else ["binary_accuracy"],
    )
    return built


def lists_of(store: LocalStore, run: str) -> dict[str, list[float]]:
    return {row["name"]: row["values"] for row in store.get_list_metrics(execution_id=run)}


def scalars_of(store: LocalStore, run: str) -> dict[str, float]:
    return {row["name"]: row["value"] for row in store.get_metrics(execution_id=run)}


def test_epoch_lists_equal_history_and_batch_lists_have_their_length(store: LocalStore) -> None:
    assert keras.backend.backend() == "torch"
    callback = CraftAiKerasCallback(sink=store, log_every_n_steps=3)
    x, y = data()
    history = model().fit(
        x, y, batch_size=8, epochs=3, validation_split=0.25, callbacks=[callback], verbose=0
    )
    assert callback.recorder is not None and callback.recorder.closed
    run = callback.recorder.execution_id
    lists = lists_of(store, run)
    for key, values in history.history.items():
        assert lists[key] == pytest.approx(values, rel=1e-6), key
    steps_per_epoch = 6  # 48 training samples of 64 after the validation split, batches of 8
    assert [step for step, _ in store.list_series(run, "loss")] == [6, 12, 18]
    batch_steps = [step for step, _ in store.list_series(run, "batch_loss")]
    assert batch_steps == list(range(3, 3 * steps_per_epoch + 1, 3))  # the step counts across epochs
    assert set(lists) >= {"batch_loss", "batch_binary_accuracy", "val_loss", "val_binary_accuracy"}
    scalars = scalars_of(store, run)
    assert scalars["val_loss"] == pytest.approx(history.history["val_loss"][-1])
    assert scalars["batch_loss"] == lists["batch_loss"][-1]


def test_evaluate_after_fit_keeps_the_training_scalars_and_records_eval_names(store: LocalStore) -> None:
    callback = CraftAiKerasCallback(sink=store, log_every_n_steps=0)
    trained = model()
    x, y = data()
    history = trained.fit(
        x, y, batch_size=8, epochs=2, validation_split=0.25, callbacks=[callback], verbose=0
    )
    assert callback.recorder is not None
    first = callback.recorder.execution_id
    assert not any(name.startswith("batch_") for name in lists_of(store, first))  # 0 turns them off
    trained_scalars = scalars_of(store, first)
    assert trained_scalars["loss"] == pytest.approx(history.history["loss"][-1], rel=1e-6)
    assert trained_scalars["val_loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)

    results = trained.evaluate(*data(1), batch_size=8, callbacks=[callback], return_dict=True, verbose=0)
    assert results["loss"] != pytest.approx(history.history["loss"][-1])  # other data, another loss
    scalars = scalars_of(store, first)  # delivered before evaluate() returned
    assert {
        name: scalars[name] for name in trained_scalars
    } == trained_scalars  # the training's, as they were
    evaluation = {name: value for name, value in scalars.items() if name not in trained_scalars}
    assert evaluation == pytest.approx({f"eval_{key}": value for key, value in results.items()})
    assert set(evaluation) == {"eval_loss", "eval_binary_accuracy"}
    assert not set(evaluation) & set(history.history)  # never one of fit's names (loss, val_*)
    assert len(lists_of(store, first)["loss"]) == 2  # the list did not grow

    again = trained.evaluate(*data(2), batch_size=8, callbacks=[callback], return_dict=True, verbose=0)
    scalars = scalars_of(store, first)
    assert scalars["eval_loss"] == pytest.approx(again["loss"]) != results["loss"]  # the latest one
    assert {name: scalars[name] for name in trained_scalars} == trained_scalars
    trained.fit(x, y, batch_size=8, epochs=1, callbacks=[callback], verbose=0)
    assert callback.recorder.execution_id != first
    assert len(store.executions()) == 2


def test_evaluate_without_fit_is_a_run_of_eval_scalars(store: LocalStore) -> None:
    callback = CraftAiKerasCallback(sink=store)
    results = model().evaluate(*data(1), batch_size=8, callbacks=[callback], return_dict=True, verbose=0)
    (run,) = store.executions()
    assert scalars_of(store, run["execution_id"]) == pytest.approx(
        {"eval_loss": results["loss"], "eval_binary_accuracy": results["binary_accuracy"]}
    )
    assert lists_of(store, run["execution_id"]) == {}


def test_hyperparameters_from_params_optimizer_and_user(store: LocalStore) -> None:
    callback = CraftAiKerasCallback(sink=store, hyperparameters={"dataset": "toy", "layers": 2})
    model().fit(*data(), batch_size=8, epochs=1, callbacks=[callback], verbose=0)
    params = store.executions()[0]["hyperparameters"]
    assert params["params/epochs"] == 1 and params["params/steps"] == BATCHES_PER_EPOCH
    assert params["optimizer/learning_rate"] == pytest.approx(0.05)
    assert params["dataset"] == "toy" and params["layers"] == 2


class AddsAString(keras.callbacks.Callback):  # type: ignore[misc]
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["note"] = "a string in the logs"


def always_nan(y_true: Any, y_pred: Any) -> Any:
    return keras.ops.mean(y_pred) * math.nan


def test_non_numeric_and_non_finite_values_are_dropped_and_training_goes_on(store: LocalStore) -> None:
    callback = CraftAiKerasCallback(sink=store, log_every_n_steps=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model(metrics=["binary_accuracy", always_nan]).fit(
            *data(), batch_size=8, epochs=2, callbacks=[AddsAString(), callback], verbose=0
        )
    assert len(history.history["loss"]) == 2
    assert callback.recorder is not None
    lists = lists_of(store, callback.recorder.execution_id)
    assert len(lists["loss"]) == 2 and "note" not in lists and "always_nan" not in lists
    assert "batch_always_nan" not in lists
    non_numeric = [str(w.message) for w in caught if issubclass(w.category, NonNumericMetricWarning)]
    non_finite = [str(w.message) for w in caught if issubclass(w.category, NonFiniteMetricWarning)]
    assert sum("'note'" in message for message in non_numeric) == 1
    assert sum("'always_nan'" in message for message in non_finite) == 1
    assert sum("'batch_always_nan'" in message for message in non_finite) == 1


def test_early_stopping_closes_the_run_with_what_was_recorded(store: LocalStore) -> None:
    callback = CraftAiKerasCallback(sink=store, log_every_n_steps=2)
    stopper = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    history = model().fit(*data(), batch_size=8, epochs=20, callbacks=[stopper, callback], verbose=0)
    epochs = len(history.history["loss"])
    assert epochs < 20
    assert callback.recorder is not None and callback.recorder.closed
    run = store.executions()[0]
    assert run["status"] == "success"
    lists = lists_of(store, run["execution_id"])
    assert lists["loss"] == pytest.approx(history.history["loss"])
    assert len(lists["batch_loss"]) == epochs * BATCHES_PER_EPOCH // 2


def test_out_of_order_batch_hooks_are_recorded_in_step_order(store: LocalStore) -> None:
    """Keras may run async_safe batch hooks on a thread pool: arrival order is not step order."""
    callback = CraftAiKerasCallback(sink=store, log_every_n_steps=1)
    callback.set_params({"epochs": 1, "steps": 6, "verbose": 0})
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    for batch in (1, 0, 3, 2, 5, 4):
        callback.on_train_batch_end(batch, {"loss": float(batch)})
    callback.on_epoch_end(0, {"loss": 9.0})
    callback.on_train_end()
    assert callback.recorder is not None
    assert store.list_series(callback.recorder.execution_id, "batch_loss") == [
        (step + 1, float(step)) for step in range(6)
    ]
    assert store.list_series(callback.recorder.execution_id, "loss") == [(6, 9.0)]


def grouped_model(steps_per_execution: int) -> keras.Model:
    """A compiled model whose fit() would run batches in groups (JAX, TensorFlow; torch refuses it)."""
    built = model()
    built.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
    )
    return built


@pytest.mark.parametrize(
    ("every", "order", "expected"),
    [
        # groups of 4 in epochs of 10 batches: the hook fires at batches 3, 7 and 11 (the last
        # group holds 2 batches), once a group; the value is the loss the hook got (100 * epoch + batch)
        (5, (7, 3, 11), [(8, 7.0), (10, 11.0), (18, 107.0), (20, 111.0)]),  # first group end past 5, 10...
        (3, (11, 7, 3), [(4, 3.0), (8, 7.0), (10, 11.0), (14, 103.0), (18, 107.0)]),  # not (18, 20]
        (50, (3, 7, 11), []),  # 20 batches: no multiple of 50 reached
    ],
)
def test_grouped_batch_hooks_record_each_multiple_once_at_the_real_batch_count(
    store: LocalStore, every: int, order: tuple[int, ...], expected: list[tuple[int, float]]
) -> None:
    """``steps_per_execution=4``: Keras calls the batch hook once a group, with its last batch index."""
    callback = CraftAiKerasCallback(sink=store, log_every_n_steps=every)
    callback.set_model(grouped_model(4))
    callback.set_params({"epochs": 2, "steps": 10, "verbose": 0})
    callback.on_train_begin()
    for epoch in range(2):
        callback.on_epoch_begin(epoch)
        for batch in order:  # out of order, as from Keras's thread pool
            callback.on_train_batch_end(batch, {"loss": 100.0 * epoch + batch})
        callback.on_epoch_end(epoch, {"loss": float(epoch)})
    callback.on_train_end()
    assert callback.recorder is not None
    run = callback.recorder.execution_id
    assert store.list_series(run, "loss") == [(10, 0.0), (20, 1.0)]
    assert store.list_series(run, "batch_loss") == expected


class CountingRecorder(MetricRecorder):
    """A recorder that keeps the number of events it was told to expect and the ones it got."""

    expected: int | None = None
    calls = 0

    def expect_events(self, count: int | None) -> None:
        self.expected = count
        super().expect_events(count)

    def log_step(self, metrics: Any, step: int | None = None) -> None:
        self.calls += 1
        super().log_step(metrics, step)


def test_the_expected_number_of_events_is_the_number_of_log_step_calls(store: LocalStore) -> None:
    recorder = CountingRecorder(store)
    callback = CraftAiKerasCallback(recorder, log_every_n_steps=3)  # 8 batches an epoch: 24 in all
    model().fit(*data(), batch_size=8, epochs=3, callbacks=[callback], verbose=0)
    recorder.close()
    assert recorder.calls == 3 + 24 // 3  # 3 epochs, and a batch log at steps 3, 6, ..., 24
    assert recorder.expected == recorder.calls
