"""MetricRecorder: lists, scalars, close, after close, summary, hyperparameters."""

from __future__ import annotations

import logging
import math
import time
import warnings

import pytest

from craft_callbacks import (
    CraftCallbacksWarning,
    LocalStore,
    MemorySink,
    MetricRecorder,
)


def test_every_value_arrives_once_in_order_in_few_calls() -> None:
    sink = MemorySink()
    with MetricRecorder(sink, flush_interval=60.0) as recorder:
        for step in range(10_000):
            recorder.log_step(
                {"loss": 1.0 / (step + 1), "acc": step / 10_000, "lr": 0.1, "epoch": step // 1000},
                step=step,
            )
    assert sink.lists["loss"] == [1.0 / (step + 1) for step in range(10_000)]
    assert sink.lists["acc"] == [step / 10_000 for step in range(10_000)]
    assert sink.lists["lr"] == [0.1] * 10_000
    assert sink.lists["epoch"] == [step // 1000 for step in range(10_000)]
    calls_per_name: dict[str, int] = {}
    for method, name, _ in sink.calls:
        if method == "record_list_metric_values":
            calls_per_name[name] = calls_per_name.get(name, 0) + 1
    # 10,000 events wake the worker every 4,096 events, plus the final flush: batches, not per value.
    assert max(calls_per_name.values()) <= 4
    assert set(calls_per_name) == {"loss", "acc", "lr", "epoch"}


def test_log_final_sets_scalars_last_value_wins() -> None:
    sink = MemorySink()
    with MetricRecorder(sink) as recorder:
        recorder.log_final({"accuracy": 0.5})
        recorder.log_final({"accuracy": 0.75, "f1": 0.6})
    assert sink.scalars == {"accuracy": 0.75, "f1": 0.6}
    assert sink.lists == {}


def test_close_turns_last_list_values_into_scalars_except_explicit_ones() -> None:
    sink = MemorySink()
    recorder = MetricRecorder(sink)
    for step in range(5):
        recorder.log_step({"loss": 10.0 - step, "acc": step / 10}, step=step)
    recorder.log_final({"acc": 0.99})
    recorder.close()
    assert sink.lists == {"loss": [10.0, 9.0, 8.0, 7.0, 6.0], "acc": [0.0, 0.1, 0.2, 0.3, 0.4]}
    assert sink.scalars == {"loss": 6.0, "acc": 0.99}


def test_a_list_and_a_scalar_may_share_a_name() -> None:
    sink = MemorySink()
    with MetricRecorder(sink) as recorder:
        recorder.log_step({"loss": 2.0})
        recorder.log_final({"loss": 1.5})
    assert sink.lists["loss"] == [2.0]
    assert sink.scalars["loss"] == 1.5


def test_close_is_idempotent() -> None:
    sink = MemorySink()
    recorder = MetricRecorder(sink)
    recorder.log_step({"loss": 1.0})
    recorder.close()
    calls = list(sink.calls)
    recorder.close()
    recorder.close("failed")
    assert sink.calls == calls
    assert recorder.closed


def test_values_after_close_are_scalars_delivered_before_the_call_returns(store: LocalStore) -> None:
    recorder = MetricRecorder(store)
    recorder.log_step({"loss": 1.0}, step=0)
    recorder.close()
    recorder.log_final({"eval_accuracy": 0.9})
    rows = store.get_metrics(execution_id=recorder.execution_id)
    assert {row["name"]: row["value"] for row in rows} == {"loss": 1.0, "eval_accuracy": 0.9}
    with pytest.warns(CraftCallbacksWarning, match="closed"):
        recorder.log_step({"test_loss": 0.3})
    rows = store.get_metrics(execution_id=recorder.execution_id)
    assert {row["name"]: row["value"] for row in rows}["test_loss"] == 0.3
    assert [row["name"] for row in store.get_list_metrics(execution_id=recorder.execution_id)] == ["loss"]


def test_steps_are_kept_in_the_local_store(store: LocalStore) -> None:
    with MetricRecorder(store) as recorder:
        for step in (0, 10, 20):
            recorder.log_step({"loss": step / 10}, step=step)
        recorder.log_step({"eval_loss": 0.5}, step=20)
    assert store.list_series(recorder.execution_id, "loss") == [(0, 0.0), (10, 1.0), (20, 2.0)]
    assert store.list_series(recorder.execution_id, "eval_loss") == [(20, 0.5)]


def test_default_step_counts_log_step_calls(store: LocalStore) -> None:
    with MetricRecorder(store) as recorder:
        recorder.log_step({"a": 1.0})
        recorder.log_step({"b": 2.0})
        recorder.log_step({"a": 3.0})
    assert store.list_series(recorder.execution_id, "a") == [(0, 1.0), (2, 3.0)]
    assert store.list_series(recorder.execution_id, "b") == [(1, 2.0)]


def test_int_values_stay_ints_and_round_trip(store: LocalStore) -> None:
    with MetricRecorder(store) as recorder:
        recorder.log_step({"epoch": 3, "huge": 2**62, "flag": True})
    rows = {row["name"]: row["values"] for row in store.get_list_metrics(execution_id=recorder.execution_id)}
    assert rows == {"epoch": [3], "huge": [2**62], "flag": [1]}
    assert all(type(value) is int for values in rows.values() for value in values)


@pytest.mark.parametrize(
    ("status_exc", "expected"),
    [(None, "success"), (RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")],
)
def test_context_manager_keeps_the_status(
    store: LocalStore, status_exc: type[BaseException] | None, expected: str
) -> None:
    recorder = MetricRecorder(store)
    try:
        with recorder:
            recorder.log_step({"loss": 1.0})
            if status_exc is not None:
                raise status_exc("boom")
    except (RuntimeError, KeyboardInterrupt):
        pass
    run = next(row for row in store.executions() if row["execution_id"] == recorder.execution_id)
    assert run["status"] == expected
    assert run["ended_at"] is not None
    assert store.get_list_metrics(execution_id=recorder.execution_id)[0]["values"] == [1.0]


def test_hyperparameters_are_kept_in_the_local_store(store: LocalStore) -> None:
    with MetricRecorder(store, hyperparameters={"lr": 0.01, "layers": [2, 3]}) as recorder:
        recorder.log_hyperparams({"batch_size": 8, "optimizer": {"name": "adam", "eps": 1e-8}})
        recorder.log_hyperparams({"lr": 0.02, "odd": object, "nan": math.nan})
    run = next(row for row in store.executions() if row["execution_id"] == recorder.execution_id)
    params = run["hyperparameters"]
    assert params["lr"] == 0.02
    assert params["layers"] == [2, 3]
    assert params["batch_size"] == 8
    assert params["optimizer"] == {"name": "adam", "eps": 1e-8}
    assert params["odd"] == str(object)
    assert params["nan"] == "nan"


def test_many_runs_in_one_store_stay_apart(store: LocalStore) -> None:
    ids = []
    for run in range(3):
        with MetricRecorder(store, pipeline_name=f"pipe{run % 2}") as recorder:
            recorder.log_step({"loss": float(run)})
            recorder.log_final({"score": run * 10})
        ids.append(recorder.execution_id)
    assert len(set(ids)) == 3
    for run, execution_id in enumerate(ids):
        assert store.get_list_metrics(execution_id=execution_id)[0]["values"] == [float(run)]
    assert [row["value"] for row in store.get_metrics(name="score", pipeline_name="pipe0")] == [0, 20]
    assert [row["execution_id"] for row in store.get_list_metrics(pipeline_name="pipe1")] == [ids[1]]


def test_summary_line_says_what_was_recorded_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="craft_callbacks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with MetricRecorder(MemorySink()) as recorder:
            for step in range(3):
                recorder.log_step({"loss": 1.0, "text": "hello", "bad": math.nan}, step=step)
    lines = [record.getMessage() for record in caplog.records if record.name == "craft_callbacks"]
    assert any(f"recording run {recorder.execution_id} to MemorySink" in line for line in lines)
    summaries = [
        line for line in lines if line.startswith(f"craft_callbacks: run {recorder.execution_id} ->")
    ]
    assert len(summaries) == 1
    assert "1 list metrics (3 values)" in summaries[0]
    assert "3 non-numeric (text)" in summaries[0]
    assert "3 non-finite (bad)" in summaries[0]


def test_renamed_metric_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="craft_callbacks")
    sink = MemorySink()
    with MetricRecorder(sink) as recorder:
        for step in range(20):
            recorder.log_step({"train/loss": 1.0}, step=step)
    renamed = [r for r in caplog.records if "'train/loss' is recorded as 'train_loss'" in r.getMessage()]
    assert len(renamed) == 1
    assert sink.lists == {"train_loss": [1.0] * 20}


def test_invalid_sink_is_refused_at_creation() -> None:
    with pytest.raises(TypeError, match="record_metric_value"):
        MetricRecorder(object())
    with pytest.raises(ValueError, match="auto"):
        MetricRecorder("platform")
    with pytest.raises(ValueError, match="max_list_values"):
        MetricRecorder(MemorySink(), max_list_values=0)


def test_a_large_buffer_is_delivered_before_the_interval() -> None:
    sink = MemorySink()
    recorder = MetricRecorder(sink, flush_interval=3600, flush_events=100)
    for step in range(250):
        recorder.log_step({"loss": float(step)}, step=step)
    deadline = time.monotonic() + 10
    while len(sink.lists.get("loss", [])) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.lists["loss"][:200] == [float(step) for step in range(200)]
    recorder.close()
    assert sink.lists["loss"] == [float(step) for step in range(250)]


def test_flush_waits_for_delivery() -> None:
    sink = MemorySink()
    recorder = MetricRecorder(sink, flush_interval=60.0)
    recorder.log_step({"loss": 1.0})
    assert recorder.flush(timeout=10)
    assert sink.lists == {"loss": [1.0]}
    recorder.close()
