"""The Accelerate tracker with a real ``accelerate.Accelerator`` and a training loop on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from craft_callbacks import (
    CraftCallbacksWarning,
    LocalStore,
    LocalStoreError,
    MetricLimitWarning,
    MetricRecorder,
    NonNumericMetricWarning,
)
from craft_callbacks.accelerate import CraftAiTracker

CONFIG: dict[str, Any] = {
    "learning_rate": 0.05,
    "batch_size": 8,
    "epochs": 2,
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": False},
    "seed": 0,
    "notes": None,
}
# What the run's hyperparameters must be: the config, one level deep.
EXPECTED_HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 0.05,
    "batch_size": 8,
    "epochs": 2,
    "optimizer/name": "sgd",
    "optimizer/momentum": 0.9,
    "optimizer/nesterov": False,
    "seed": 0,
    "notes": None,
}


@pytest.fixture(autouse=True)
def fresh_accelerator_state() -> Iterator[None]:
    """Each test builds its own Accelerator: its process-wide state must not leak between tests."""
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def train(accelerator: Accelerator, epochs: int = 2, batches: int = 4) -> list[tuple[int, dict[str, float]]]:
    """A real loop (model, optimizer and data prepared by the Accelerator); returns what it logged."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=CONFIG["learning_rate"], momentum=0.9)
    x = torch.randn(batches * 8, 4)
    y = x.sum(dim=1, keepdim=True)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    logged: list[tuple[int, dict[str, float]]] = []
    step = 0
    for epoch in range(epochs):
        for inputs, targets in loader:
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            values = {"loss": loss.item(), "learning_rate": optimizer.param_groups[0]["lr"], "epoch": epoch}
            accelerator.log(values, step=step)
            logged.append((step, values))
        eval_loss = {"eval_loss": torch.nn.functional.mse_loss(model(x), y).item()}
        accelerator.log(eval_loss, step=step)
        logged.append((step, eval_loss))
    return logged


def lists_of(store: LocalStore, run: str) -> dict[str, list[float]]:
    return {row["name"]: row["values"] for row in store.get_list_metrics(execution_id=run)}


def scalars_of(store: LocalStore, run: str) -> dict[str, float]:
    return {row["name"]: row["value"] for row in store.get_metrics(execution_id=run)}


def expected_lists(logged: list[tuple[int, dict[str, float]]]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for step, values in logged:
        for name, value in values.items():
            series.setdefault(name, []).append((step, value))
    return series


def test_lists_scalars_and_hyperparameters_are_exact(store: LocalStore) -> None:
    tracker = CraftAiTracker(sink=store, pipeline_name="accelerate-tiny")
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("ignored-project-name", config=CONFIG)
    recorder = accelerator.get_tracker("craft_ai", unwrap=True)
    assert isinstance(recorder, MetricRecorder) and recorder is tracker.recorder
    assert not recorder.closed
    logged = train(accelerator)
    accelerator.end_training()
    assert recorder.closed

    run = recorder.execution_id
    expected = expected_lists(logged)
    assert len(expected["loss"]) == 8 and len(expected["eval_loss"]) == 2
    assert {name: store.list_series(run, name) for name in expected} == expected  # steps and values
    assert lists_of(store, run) == {name: [value for _, value in pairs] for name, pairs in expected.items()}
    assert scalars_of(store, run) == {name: pairs[-1][1] for name, pairs in expected.items()}
    (execution,) = store.executions()
    assert execution["execution_id"] == run
    assert execution["status"] == "success"
    assert execution["pipeline_name"] == "accelerate-tiny"
    assert execution["hyperparameters"] == EXPECTED_HYPERPARAMETERS


def test_values_logged_after_end_training_are_scalars_of_the_run(store: LocalStore) -> None:
    tracker = CraftAiTracker(sink=store)
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("project")
    logged = train(accelerator, epochs=1)
    accelerator.end_training()
    assert tracker.recorder is not None
    run = tracker.recorder.execution_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "run is closed" warning: this is what end-of-run values are
        accelerator.log({"test_loss": 0.125, "loss": 9.0})
    scalars = scalars_of(store, run)  # delivered before log() returned
    assert scalars["test_loss"] == 0.125
    assert scalars["loss"] == 9.0  # the last value wins, as for any scalar
    assert lists_of(store, run)["loss"] == [values["loss"] for _, values in logged if "loss" in values]


def test_without_a_step_values_are_numbered_by_call(store: LocalStore) -> None:
    tracker = CraftAiTracker(sink=store)
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("project")
    for value in (3.0, 2.0, 1.0):
        accelerator.log({"loss": value})
    accelerator.end_training()
    assert tracker.recorder is not None
    assert store.list_series(tracker.recorder.execution_id, "loss") == [(0, 3.0), (1, 2.0), (2, 1.0)]


def test_each_init_trackers_is_a_new_run(store: LocalStore) -> None:
    tracker = CraftAiTracker(sink=store)
    runs = []
    for lr in (0.1, 0.01):
        AcceleratorState._reset_state(True)
        accelerator = Accelerator(cpu=True, log_with=[tracker])
        accelerator.init_trackers("sweep", config={"lr": lr})
        accelerator.log({"loss": lr}, step=1)
        accelerator.end_training()
        assert tracker.recorder is not None
        runs.append(tracker.recorder.execution_id)
    assert runs[0] != runs[1]
    by_id = {execution["execution_id"]: execution for execution in store.executions()}
    assert [by_id[run]["hyperparameters"] for run in runs] == [{"lr": 0.1}, {"lr": 0.01}]
    assert [lists_of(store, run) for run in runs] == [{"loss": [0.1]}, {"loss": [0.01]}]
    assert {execution["status"] for execution in by_id.values()} == {"success"}


def test_non_numeric_values_are_dropped_and_values_that_are_no_mapping_warn_once(store: LocalStore) -> None:
    tracker = CraftAiTracker(sink=store)
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("project", config={"lr": 0.1})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (1, 2):
            accelerator.log({"loss": 1.0 / step, "note": "text", "sample": torch.ones(3)}, step=step)
            accelerator.log([("loss", 5.0)], step=step)
            accelerator.log(torch.tensor([5.0]), step=step)
        accelerator.end_training()
    ours = [w for w in caught if "craft_callbacks" in str(w.message)]
    assert sorted(str(w.message).split("'")[1] for w in ours if w.category is NonNumericMetricWarning) == [
        "note",
        "sample",
    ]
    not_a_mapping = [w for w in ours if "not a mapping" in str(w.message)]
    assert len(not_a_mapping) == 1 and not_a_mapping[0].category is CraftCallbacksWarning
    assert "CraftAiTracker.log" in str(not_a_mapping[0].message)
    assert len(ours) == 3, [str(w.message) for w in ours]
    assert tracker.recorder is not None
    assert lists_of(store, tracker.recorder.execution_id) == {"loss": [1.0, 0.5]}


def test_a_recorder_of_your_own_is_yours_to_close(store: LocalStore) -> None:
    with MetricRecorder(store, pipeline_name="mine") as recorder:
        tracker = CraftAiTracker(recorder)
        accelerator = Accelerator(cpu=True, log_with=[tracker])
        accelerator.init_trackers("project", config={"lr": 0.1})
        accelerator.log({"loss": 0.5}, step=1)
        accelerator.end_training()
        assert not recorder.closed
        assert lists_of(store, recorder.execution_id) == {"loss": [0.5]}  # flushed at end_training
        recorder.log_final({"custom": 1})
    assert scalars_of(store, recorder.execution_id) == {"custom": 1, "loss": 0.5}
    assert store.executions()[0]["hyperparameters"] == {"lr": 0.1}


def test_the_run_name_comes_from_the_environment_unless_given(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRAFT_CALLBACKS_RUN_NAME", "from-env")
    names = []
    for tracker in (CraftAiTracker(sink=store), CraftAiTracker(sink=store, pipeline_name="given")):
        AcceleratorState._reset_state(True)
        accelerator = Accelerator(cpu=True, log_with=[tracker])
        accelerator.init_trackers("project")
        accelerator.log({"loss": 1.0}, step=1)
        accelerator.end_training()
        assert tracker.recorder is not None
        run = tracker.recorder.execution_id
        names.append(next(e["pipeline_name"] for e in store.executions() if e["execution_id"] == run))
    assert names == ["from-env", "given"]


def test_options_go_to_the_recorder(tmp_path: Path) -> None:
    store_path = tmp_path / "runs" / "metrics.db"
    tracker = CraftAiTracker(store_path=store_path, max_list_values=3, flush_interval=0.1)
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("project")
    with pytest.warns(MetricLimitWarning):  # the list passes its cap of 3 and is thinned
        for step in range(1, 21):
            accelerator.log({"loss": 1.0 / step}, step=step)
        accelerator.end_training()
    assert tracker.recorder is not None
    store = LocalStore(store_path)
    try:
        steps = [step for step, _ in store.list_series(tracker.recorder.execution_id, "loss")]
        assert len(steps) <= 3 and steps[-1] == 20
    finally:
        store.close()


def test_disabled_by_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRAFT_CALLBACKS_DISABLED", "1")
    tracker = CraftAiTracker(store_path=tmp_path / "never.db")
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("project", config={"lr": 0.1})
    accelerator.log({"loss": 1.0}, step=1)
    accelerator.end_training()
    assert tracker.recorder is None
    assert not (tmp_path / "never.db").exists()


def test_a_bad_store_path_fails_when_the_tracker_is_built(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(LocalStoreError):
        CraftAiTracker(store_path=tmp_path / "file" / "metrics.db")


def test_the_tracker_module_imports_accelerate_but_no_other_framework() -> None:
    code = (
        "import json, sys\n"
        "import craft_callbacks.accelerate\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'transformers', 'lightning', 'keras', 'tensorflow', 'jax', 'craft_ai_sdk', 'trl'})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# -- two processes under `accelerate launch` ----------------------------------------------

LAUNCH_TIMEOUT_S = 240
LAUNCH_STEPS = 12

SCRIPT = """
import json
import os
import sys

out_path, store_path, pids_dir = sys.argv[1:4]
steps = int(sys.argv[4])
cpu = sys.argv[5] == "cpu"
with open(os.path.join(pids_dir, os.environ["RANK"]), "w") as file:
    file.write(str(os.getpid()))  # first thing, so the test can end this worker if the run hangs

import torch
import torch.distributed as dist
from accelerate import Accelerator

from craft_callbacks.accelerate import CraftAiTracker

tracker = CraftAiTracker(store_path=store_path, pipeline_name="ddp")  # on every process, one store
accelerator = Accelerator(cpu=cpu, log_with=[tracker])
rank = int(os.environ["RANK"])  # the launcher's global rank (what Accelerate makes of it is checked below)
accelerator.init_trackers("project", config={"lr": 0.05})
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
x = torch.randn(steps * 2 * 4, 4)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
logged = []
for step, (inputs, targets) in zip(range(1, steps + 1), loader):  # a whole loader when distributed
    loss = torch.nn.functional.mse_loss(model(inputs), targets)
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    values = {"loss": loss.item(), "rank_seen": float(rank)}
    accelerator.log(values, step=step)  # the Accelerator calls trackers on the main process only
    tracker.log({"direct": float(rank)}, step=step)  # straight to the tracker, on every process
    logged.append([step, values])
tracker.store_init_configuration({"direct_rank": rank})  # straight to the tracker, on every process
info = {
    "rank": rank,
    "process_index": accelerator.process_index,
    "world_size": accelerator.num_processes,
    "distributed_type": str(accelerator.distributed_type),
    "backend": dist.get_backend() if dist.is_initialized() else None,
    "torch_world": [dist.get_rank(), dist.get_world_size()] if dist.is_initialized() else None,
    "recorded": tracker.recorder is not None,
    "logged": logged,
}
accelerator.end_training()
with open(out_path + f".{rank}.json", "w") as file:
    json.dump(info, file)
"""


def launch_two_processes(tmp_path: Path, cpu: bool) -> tuple[Path, list[dict[str, Any]]]:
    from test_huggingface_multiprocess import CLEARED_ENV, end_hung_run, tail

    script = tmp_path / "train_accelerate.py"
    script.write_text(SCRIPT)
    store_path = tmp_path / "store" / "metrics.db"
    pids = tmp_path / "pids"
    pids.mkdir()
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),  # no accelerate config of this machine's user is read
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        CRAFT_CALLBACKS_VERBOSITY="warning",
    )
    for name in CLEARED_ENV:  # outside any platform execution, recording on
        env.pop(name, None)
    # `--multi_gpu` is accelerate launch's multi-process launcher (torch's elastic agent); the
    # processes run on the CPU (Accelerator(cpu=True)) and talk over gloo, as the script checks.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        "--main_process_port=0",
        str(script),
        str(tmp_path / "out"),
        str(store_path),
        str(pids),
        str(LAUNCH_STEPS),
        "cpu" if cpu else "default",
    ]
    log_path = tmp_path / "launch.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log) as launch,
    ):
        try:
            launch.wait(timeout=LAUNCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            end_hung_run(launch, pids, script)
            pytest.fail(f"accelerate launch did not finish in {LAUNCH_TIMEOUT_S} s:\n{tail(log_path)}")
    assert launch.returncode == 0, f"accelerate launch exited {launch.returncode}:\n{tail(log_path)}"
    results = [json.loads((tmp_path / f"out.{rank}.json").read_text()) for rank in (0, 1)]
    return store_path, results


@pytest.mark.slow
def test_accelerate_launch_two_processes_record_each_value_once(tmp_path: Path) -> None:
    store_path, (chief, other) = launch_two_processes(tmp_path, cpu=True)
    for rank, result in enumerate((chief, other)):
        assert result["process_index"] == rank and result["world_size"] == 2, result
        assert result["distributed_type"] == "DistributedType.MULTI_CPU" and result["backend"] == "gloo"
        assert result["torch_world"] == [rank, 2]
    assert [values["loss"] for _, values in chief["logged"]] != [
        values["loss"] for _, values in other["logged"]
    ]  # each process trained on its own shard: a value from the other would show
    check_one_run_of_the_chief(store_path, chief, other)


@pytest.mark.slow
def test_two_processes_accelerate_takes_for_two_main_ones_record_once(tmp_path: Path) -> None:
    """``accelerate launch --multi_gpu`` on a machine without a GPU and an ``Accelerator()``
    without ``cpu=True``: Accelerate sets up the process group yet calls each process the main
    one of a single-process run. The launcher's rank 1 is still not the global rank 0."""
    store_path, (chief, other) = launch_two_processes(tmp_path, cpu=False)
    for result in (chief, other):
        assert result["process_index"] == 0 and result["world_size"] == 1, result  # Accelerate's view
        assert result["torch_world"] == [result["rank"], 2]  # torch's: two processes
    check_one_run_of_the_chief(store_path, chief, other)


def check_one_run_of_the_chief(store_path: Path, chief: dict[str, Any], other: dict[str, Any]) -> None:
    from store_checks import the_one_run

    assert chief["rank"] == 0 and other["rank"] == 1
    assert chief["recorded"] and not other["recorded"]  # the other process never opened a run
    assert len(chief["logged"]) == LAUNCH_STEPS
    store = LocalStore(store_path)
    try:
        run, lists = the_one_run(store)
        assert lists == {
            "loss": [values["loss"] for _, values in chief["logged"]],
            "rank_seen": [0.0] * LAUNCH_STEPS,
            "direct": [0.0] * LAUNCH_STEPS,
        }
        steps = list(range(1, LAUNCH_STEPS + 1))
        for name in lists:
            assert [step for step, _ in store.list_series(run, name)] == steps, name
        (execution,) = store.executions()
        assert execution["pipeline_name"] == "ddp"
        assert execution["hyperparameters"] == {"lr": 0.05, "direct_rank": 0}
        assert scalars_of(store, run) == {"loss": lists["loss"][-1], "rank_seen": 0.0, "direct": 0.0}
    finally:
        store.close()


def test_the_example_records_its_loop() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import accelerate_loop
    finally:
        sys.path.pop(0)
    run = accelerate_loop.main(epochs=2)  # into ./craft_metrics/metrics.db of the test's folder
    store = LocalStore("craft_metrics/metrics.db")
    try:
        (execution,) = store.executions()
        assert execution["execution_id"] == run and execution["status"] == "success"
        assert execution["pipeline_name"] == "accelerate-loop"
        assert execution["hyperparameters"] == {
            "learning_rate": 0.02,
            "epochs": 2,
            "batch_size": 16,
            "model/hidden": 32,
        }
        lists = lists_of(store, run)
        assert len(lists["train_loss"]) == 2 * 28 // 5 and len(lists["val_loss"]) == 2
        assert [step for step, _ in store.list_series(run, "val_loss")] == [28, 56]
        assert scalars_of(store, run)["val_loss"] == lists["val_loss"][-1]
    finally:
        store.close()
