"""DigitalHubSink: real training runs into real ``digitalhub`` entities, over HTTP to the emulator."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import digitalhub as dh
import pytest

from craft_callbacks import DeliveryWarning, DigitalHubSink, MetricNameWarning, MetricRecorder, safe_name
from craft_callbacks.cli import main as cli_main
from craft_callbacks.huggingface import CraftAiCallback
from craft_callbacks.keras import CraftAiKerasCallback
from craft_callbacks.lightning import CraftAiLogger
from digitalhub_emulator import ROUTE_METRIC_PUT, ROUTE_METRICS_READ, DigitalHubEmulator, new_model, new_run
from test_huggingface import SUMMARY, expected_lists, trainer_with
from test_keras import data, model
from test_lightning import Spy, Tiny, loader, trainer

PROJECT = "metrics-test"
SPOOL = Path("craft_metrics") / "spool.db"


@pytest.fixture
def project(digitalhub: DigitalHubEmulator) -> str:
    dh.get_or_create_project(PROJECT)
    return PROJECT


def test_a_real_hf_run_lands_on_a_digitalhub_run_every_value_once(
    project: str, digitalhub: DigitalHubEmulator, tmp_path: Path
) -> None:
    run = new_run(project)
    callback = CraftAiCallback(sink=DigitalHubSink(run))
    trainer = trainer_with(callback, tmp_path, max_steps=12, eval_strategy="steps", eval_steps=4)

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeliveryWarning)  # nothing refused in a normal run
        trainer.train()

    history = trainer.state.log_history
    summary = next(entry for entry in history if SUMMARY in entry)
    lists = expected_lists(history)
    assert len(lists["loss"]) == 12 and len(lists["eval_loss"]) == 3
    read_back = dh.get_run(run.id, project=project).metrics  # the SDK's own reading, over HTTP
    for name, values in lists.items():
        assert read_back[name] == values
    for name, value in summary.items():
        if name in lists:
            assert read_back[name][-1] == value  # a series keeps its own last value
        elif name != "step":
            assert read_back[name] == value
    assert set(read_back) == set(lists) | (set(summary) - {"step"})  # nothing else, nothing twice


def test_a_real_lightning_run_lands_on_a_digitalhub_model(
    project: str, digitalhub: DigitalHubEmulator, tmp_path: Path
) -> None:
    entity = new_model(project, "tiny")
    ours, spy = CraftAiLogger(sink=DigitalHubSink(entity)), Spy()

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeliveryWarning)
        trainer([ours, spy], tmp_path).fit(Tiny(), loader(), loader(3, seed=1))

    expected: dict[str, list[float]] = {}
    for _, metrics in spy.calls:
        for key, value in metrics.items():
            expected.setdefault(safe_name(key), []).append(value)
    assert len(expected["train_loss"]) == 20
    assert dh.get_model("tiny", project=project).metrics == expected


def test_a_real_keras_fit_lands_on_a_digitalhub_run(project: str, digitalhub: DigitalHubEmulator) -> None:
    run = new_run(project)
    callback = CraftAiKerasCallback(sink=DigitalHubSink(run), log_every_n_steps=1)
    x, y = data()

    history = model().fit(
        x, y, batch_size=8, epochs=3, validation_split=0.25, callbacks=[callback], verbose=0
    )

    metrics = run.metrics
    for key, values in history.history.items():
        assert metrics[key] == pytest.approx(values, rel=1e-6), key
    assert len(metrics["batch_loss"]) == 3 * 6


def test_a_model_takes_series_and_single_values_and_the_last_single_value_wins(
    project: str, digitalhub: DigitalHubEmulator
) -> None:
    model = new_model(project, "classifier")
    recorder = MetricRecorder(DigitalHubSink(model), flush_interval=60)
    for step in range(5):
        recorder.log_step({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
    recorder.log_final({"accuracy": 0.9})
    recorder.flush()
    recorder.log_final({"accuracy": 0.95})
    recorder.close()

    assert model.metrics == {"loss": [1.0, 0.5, 1 / 3, 0.25, 0.2], "lr": [0.1] * 5, "accuracy": 0.95}
    assert recorder.execution_id == model.id


def test_each_flush_costs_one_read_and_one_write_per_metric_not_one_per_value(
    project: str, digitalhub: DigitalHubEmulator
) -> None:
    run = new_run(project)
    recorder = MetricRecorder(DigitalHubSink(run), flush_interval=60)
    for flush in range(3):
        for step in range(100):
            recorder.log_step({"loss": float(step), "accuracy": step / 100}, step=flush * 100 + step)
        digitalhub.clear_log()
        assert recorder.flush(10)
        assert digitalhub.requests_per_route[ROUTE_METRIC_PUT] == 2
        assert digitalhub.requests_per_route[ROUTE_METRICS_READ] <= 2 + 2 * (flush == 0)
    recorder.close()
    assert run.metrics["loss"] == [float(step) for _ in range(3) for step in range(100)]


def test_errors_and_lost_answers_neither_lose_nor_duplicate_a_value(
    project: str, digitalhub: DigitalHubEmulator
) -> None:
    run = new_run(project)
    recorder = MetricRecorder(DigitalHubSink(run), flush_interval=0.05)
    digitalhub.fault_routes = {ROUTE_METRIC_PUT}  # the write itself fails, or its answer is lost
    sent = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for round_ in range(6):
            if round_ == 1:
                digitalhub.fail_next(2)  # 500s: nothing stored
            if round_ == 3:
                digitalhub.drop_after_storing_next(1)  # stored, but the answer never comes
            if round_ == 4:
                digitalhub.drop_next(1)  # connection closed before anything is stored
            for step in range(50):
                value = round_ * 1000.0 + step
                recorder.log_step({"loss": value}, step=round_ * 50 + step)
                sent.append(value)
            assert recorder.flush(30)
        recorder.close()

    assert run.metrics["loss"] == sent
    assert digitalhub.metrics_of(run)["loss"] == sent
    assert any(issubclass(w.category, DeliveryWarning) and "retrying" in str(w.message) for w in caught)


def test_a_single_value_never_replaces_a_series_it_is_kept_beside_it_with_one_warning(
    project: str, digitalhub: DigitalHubEmulator
) -> None:
    run = new_run(project)
    recorder = MetricRecorder(DigitalHubSink(run), flush_interval=60)
    recorder.log_step({"loss": 0.5})
    recorder.log_step({"loss": 0.25})
    recorder.log_final({"loss": 7.0, "f1": 0.8})
    with pytest.warns(MetricNameWarning, match="'loss' is a series") as caught:
        recorder.close()
        recorder.log_final({"loss": 6.0})  # a later evaluation: delivered before the call returns

    assert len([w for w in caught if "series" in str(w.message)]) == 1  # once per name
    assert run.metrics == {"loss": [0.5, 0.25], "loss.final": 6.0, "f1": 0.8}


def test_keras_evaluate_after_fit_keeps_both_the_epoch_series_and_the_evaluation(
    project: str, digitalhub: DigitalHubEmulator
) -> None:
    run = new_run(project)
    callback = CraftAiKerasCallback(sink=DigitalHubSink(run))
    x, y = data()
    built = model()
    history = built.fit(x, y, batch_size=8, epochs=2, callbacks=[callback], verbose=0)

    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricNameWarning)  # eval_ names never meet the epochs' series
        evaluation = built.evaluate(x, y, batch_size=8, callbacks=[callback], verbose=0, return_dict=True)

    metrics = run.metrics
    assert metrics["loss"] == pytest.approx(history.history["loss"], rel=1e-6)
    assert metrics["eval_loss"] == pytest.approx(evaluation["loss"], rel=1e-6)
    assert "loss.final" not in metrics


def test_a_name_holding_a_single_value_is_not_appended_to(
    project: str, digitalhub: DigitalHubEmulator
) -> None:
    run = new_run(project)
    run.log_metric("loss", 3.0, single_value=True)  # written by someone else before the run
    recorder = MetricRecorder(DigitalHubSink(run), flush_interval=60)
    recorder.log_step({"loss": 0.5, "acc": 0.1})

    with pytest.warns(DeliveryWarning, match="'loss' holds a single value"):
        recorder.close()

    assert run.metrics["acc"] == [0.1]
    assert run.metrics["loss"] == 0.5  # the end-of-run single value (the last one) wins, as a scalar should


def test_an_existing_series_is_appended_to(project: str, digitalhub: DigitalHubEmulator) -> None:
    run = new_run(project)
    run.log_metric("loss", [9.0, 8.0])
    with MetricRecorder(DigitalHubSink(run), flush_interval=60) as recorder:
        recorder.log_step({"loss": 0.5})
    assert run.metrics["loss"] == [9.0, 8.0, 0.5]


@pytest.mark.parametrize("entity", [object(), "run-id", None])
def test_anything_but_an_entity_is_refused_at_once(entity: Any) -> None:
    with pytest.raises(TypeError, match="DigitalHub run or model entity"):
        DigitalHubSink(entity)


def test_an_outage_past_close_is_delivered_by_sync_to_the_same_entity_each_value_once(
    project: str, digitalhub: DigitalHubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    run = new_run(project)
    digitalhub.fault_routes = {ROUTE_METRIC_PUT}
    digitalhub.drop_after_storing_next(1)  # the first write lands, its answer is lost
    digitalhub.failure_rate = 1.0  # then every write fails: an outage that outlasts the run
    recorder = MetricRecorder(DigitalHubSink(run), flush_interval=0.05, close_timeout=1)
    with pytest.warns(DeliveryWarning, match="retrying|craft-callbacks sync --spool") as caught:
        for step in range(30):
            recorder.log_step({"loss": float(step), "acc": step / 30}, step=step)
        recorder.flush(0.5)
        for step in range(30, 60):
            recorder.log_step({"loss": float(step), "acc": step / 30}, step=step)
        recorder.close()

    assert any("craft-callbacks sync --spool" in str(w.message) for w in caught)
    assert len(run.metrics.get("loss", [])) < 60  # the outage kept values back
    digitalhub.failure_rate = 0.0
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0
    assert run.metrics["loss"] == [float(step) for step in range(60)]
    assert run.metrics["acc"] == [step / 30 for step in range(60)]
    assert "delivered" in capsys.readouterr().out
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0  # nothing twice
    assert run.metrics["loss"] == [float(step) for step in range(60)]


def test_two_recorders_on_one_entity_keep_their_own_spool_and_sync_sends_each_value_once(
    project: str, digitalhub: DigitalHubEmulator
) -> None:
    run = new_run(project)
    digitalhub.fault_routes = {ROUTE_METRIC_PUT}
    first = MetricRecorder(DigitalHubSink(run), flush_interval=0.05, close_timeout=1)
    first.log_step({"loss": 1.0})
    assert first.flush(10)
    digitalhub.failure_rate = 1.0  # an outage from here on, through both recorders
    for recorder, value in ((first, 2.0), (None, 3.0)):
        recorder = recorder or MetricRecorder(DigitalHubSink(run), flush_interval=0.05, close_timeout=1)
        with pytest.warns(DeliveryWarning, match="retrying|craft-callbacks sync") as caught:
            recorder.log_step({"loss": value})
            recorder.close()
        assert any("craft-callbacks sync" in str(w.message) for w in caught)

    digitalhub.failure_rate = 0.0
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0
    assert run.metrics["loss"] == [1.0, 2.0, 3.0]


def test_sync_reports_an_entity_it_cannot_find_and_delivers_the_others(
    project: str, digitalhub: DigitalHubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    kept, gone = new_run(project), new_run(project)
    digitalhub.fault_routes = {ROUTE_METRIC_PUT}
    digitalhub.failure_rate = 1.0
    for run in (kept, gone):
        recorder = MetricRecorder(DigitalHubSink(run), flush_interval=0.05, close_timeout=0.5)
        recorder.log_step({"loss": 1.0})
        with pytest.warns(DeliveryWarning):
            recorder.close()
    digitalhub.failure_rate = 0.0
    digitalhub.delete_entity(gone)

    assert cli_main(["sync", "--spool", str(SPOOL)]) == 1
    assert kept.metrics["loss"] == [1.0]
    output = capsys.readouterr().out
    assert "NOT delivered" in output and gone.id in output
