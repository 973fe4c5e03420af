"""record_mlflow_run: a real MLflow run on a local SQLite tracking store, copied through the recorder."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import mlflow
import pytest

from craft_callbacks import (
    CraftCallbacksWarning,
    LocalStore,
    MemorySink,
    MetricLimitWarning,
    NonFiniteMetricWarning,
)
from craft_callbacks.mlflow import record_mlflow_run
from platform_emulator import PlatformEmulator

EXECUTION = "exec-test-1"
SAFE = {"train/loss": "train_loss", "eval/accuracy": "eval_accuracy", "lr": "lr"}  # the name policy

STEPS = 300
PARAMS = {"learning_rate": "0.001", "optimizer": "adam", "layers": "[64, 32]", "use_bias": "True"}


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A local SQLite MLflow tracking store of its own."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def logged_run(tracking_uri: str) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """A real MLflow run: params, and metrics logged in a loop with steps, out of step order for one."""
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.create_experiment("bridge")
    run_id = client.create_run(experiment).info.run_id
    for key, value in PARAMS.items():
        client.log_param(run_id, key, value)
    histories: dict[str, list[tuple[int, float]]] = {"train/loss": [], "eval/accuracy": [], "lr": []}
    timestamp = 1_700_000_000_000
    for step in range(STEPS):
        loss = 1.0 / (step + 1) + step * 1e-17
        client.log_metric(run_id, "train/loss", loss, timestamp=timestamp + step, step=step)
        histories["train/loss"].append((step, loss))
        if step % 50 == 49:
            accuracy = 0.5 + step / 1000
            client.log_metric(run_id, "eval/accuracy", accuracy, timestamp=timestamp + step, step=step)
            histories["eval/accuracy"].append((step, accuracy))
    for step in reversed(range(10)):  # logged last step first: the copy is in step order
        client.log_metric(run_id, "lr", 0.1 * 0.5**step, timestamp=timestamp + 10 - step, step=step)
    histories["lr"] = [(step, 0.1 * 0.5**step) for step in range(10)]
    client.set_terminated(run_id)
    return run_id, histories


def test_an_mlflow_run_is_copied_to_the_local_store_value_for_value(
    tracking_uri: str, store: LocalStore
) -> None:
    run_id, histories = logged_run(tracking_uri)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        execution_id = record_mlflow_run(run_id, store, tracking_uri=tracking_uri)

    assert not [w for w in caught if issubclass(w.category, CraftCallbacksWarning)]  # nothing dropped
    for key, history in histories.items():
        assert store.list_series(execution_id, SAFE[key]) == history  # steps and values, in step order
    scalars = {row["name"]: row["value"] for row in store.get_metrics(execution_id=execution_id)}
    assert scalars == {SAFE[key]: history[-1][1] for key, history in histories.items()}
    run = store.find_run(execution_id)
    assert run["hyperparameters"] == PARAMS  # as MLflow keeps them: strings, none turned into a metric
    assert run["status"] == "success"


def test_an_mlflow_run_is_copied_to_the_platform(tracking_uri: str, platform: PlatformEmulator) -> None:
    run_id, histories = logged_run(tracking_uri)

    execution_id = record_mlflow_run(run_id, tracking_uri=tracking_uri)  # sink="auto": the execution

    assert execution_id == EXECUTION
    for key, history in histories.items():
        assert platform.store.lists[(execution_id, SAFE[key])] == [value for _, value in history]
        assert platform.store.scalars[(execution_id, SAFE[key])] == history[-1][1]
    posts = [entry for entry in platform.requests_log if entry.method == "POST"]
    assert len(posts) <= 2 * len(histories)  # batched: a request or two per list, never one per value


def test_non_numeric_params_stay_params_and_non_finite_values_are_dropped_with_one_warning(
    tracking_uri: str,
) -> None:
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    run_id = client.create_run(client.create_experiment("odd")).info.run_id
    client.log_param(run_id, "model", "resnet")
    client.log_param(run_id, "epochs", "3")
    for step, value in enumerate([1.0, math.nan, 0.5, math.nan, 0.25]):
        client.log_metric(run_id, "loss", value, step=step)
    client.set_terminated(run_id, status="FAILED")
    sink = MemorySink()

    with pytest.warns(NonFiniteMetricWarning, match="loss") as caught:
        record_mlflow_run(run_id, sink, tracking_uri=tracking_uri)

    assert len([w for w in caught if issubclass(w.category, NonFiniteMetricWarning)]) == 1
    assert sink.lists == {"loss": [1.0, 0.5, 0.25]}
    assert sink.scalars == {"loss": 0.25}
    assert sink.hyperparameters == {"model": "resnet", "epochs": "3"}
    assert set(sink.lists) | set(sink.scalars) == {"loss"}


def test_a_history_longer_than_the_cap_is_thinned_evenly_keeping_the_last_value(tracking_uri: str) -> None:
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
    run_id = client.create_run(client.create_experiment("long")).info.run_id
    client.log_batch(
        run_id,
        metrics=[
            mlflow.entities.Metric("loss", float(step), 1_700_000_000_000, step) for step in range(1_000)
        ],
    )
    sink = MemorySink()

    with pytest.warns(MetricLimitWarning, match="thinned evenly"):
        record_mlflow_run(run_id, sink, tracking_uri=tracking_uri, max_list_values=100)

    values = sink.lists["loss"]
    assert len(values) <= 100 and values[0] == 0.0 and values[-1] == 999.0
    gaps = {b - a for a, b in itertools.pairwise(values)}
    assert max(gaps) <= 11.0  # even: no stretch of the run left out


def test_without_mlflow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "mlflow.tracking", None)
    with pytest.raises(ImportError, match=r"craft-callbacks\[mlflow\]"):
        record_mlflow_run("any")
