"""What the adapters share (``craft_callbacks.runs``) and the recorder options they mirror.

* ``CraftAiLogger`` spells out the recorder's options, so that ``LightningCLI``
  can give each from the command line: its signature is kept in step with
  ``MetricRecorder``'s here, and every option it takes reaches the recorder.
* ``AdapterRuns``: one prefix rule (with the framework's joiner), one hot
  path (the open recorder's own ``log_step``), a checkpoint's run continued
  unless one is named explicitly, and ``DisabledRuns`` with the same interface
  that does nothing, for ``CRAFT_CALLBACKS_DISABLED``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import pytest

from craft_callbacks import LocalStore, MetricRecorder
from craft_callbacks.defaults import (
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_FLUSH_EVENTS,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_LIST_VALUES,
    DEFAULT_REQUEST_TIMEOUT_S,
)
from craft_callbacks.lightning import CraftAiLogger
from craft_callbacks.process_hooks import exit_status
from craft_callbacks.runs import AdapterRuns, DisabledRuns, adapter_runs, prefixed

# Recorder options the logger does not take, each for a reason of Lightning's.
NOT_MIRRORED = {
    "pipeline_name": "Lightning names a logger's runs with `name` (the logger's `name` is the pipeline name)",
    "execution_id": "the recorder's other spelling of run_id, which the logger takes",
    "hyperparameters": "Lightning hands them to log_hyperparams (save_hyperparameters, the CLI config)",
    "expected_events": "the logger reads the number of logging events from the trainer when fit starts",
}
# The logger's own arguments, which are not recorder options.
LOGGER_ONLY = {
    "self": "",
    "recorder": "a recorder to use for every fit (closing it is then the user's)",
    "name": "Lightning's logger name, the runs' pipeline name",
    "prefix": "put before every metric name, as Lightning's loggers do",
}
# Mirrored options whose annotation differs on purpose: recorder's, logger's.
ANNOTATIONS_THAT_DIFFER = {
    # LightningCLI (jsonargparse) gives a path from the command line as a string
    "store_path": ("str | os.PathLike[str] | None", "str | None"),
}


def parameters(function: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(function).parameters)


def test_the_lightning_logger_mirrors_every_recorder_option() -> None:
    """A recorder option added or changed fails here until the logger mirrors it (or says why not)."""
    recorder = parameters(MetricRecorder.__init__)
    logger = parameters(CraftAiLogger.__init__)
    assert set(NOT_MIRRORED) <= set(recorder), "an option said not to be mirrored is no recorder option"
    assert set(ANNOTATIONS_THAT_DIFFER) <= set(recorder)
    mirrored = set(recorder) - set(NOT_MIRRORED) - {"self"}
    assert mirrored - set(logger) == set(), "recorder options the logger does not take"
    assert set(logger) - mirrored - set(LOGGER_ONLY) == set(), "logger arguments that are no recorder option"
    for name in sorted(mirrored):
        ours, theirs = logger[name], recorder[name]
        assert ours.default == theirs.default, (
            f"{name}: default {ours.default!r}, recorder's {theirs.default!r}"
        )
        assert ours.kind is inspect.Parameter.KEYWORD_ONLY, f"{name} is not keyword-only"
        if name in ANNOTATIONS_THAT_DIFFER:
            assert (theirs.annotation, ours.annotation) == ANNOTATIONS_THAT_DIFFER[name], name
        else:
            assert ours.annotation == theirs.annotation, (
                f"{name}: {ours.annotation}, recorder's {theirs.annotation}"
            )


def test_the_logger_defaults_are_the_ones_of_the_defaults_module() -> None:
    logger = parameters(CraftAiLogger.__init__)
    assert {
        name: logger[name].default for name in logger if name.endswith(("_values", "_interval", "_events"))
    } == {
        "max_list_values": DEFAULT_MAX_LIST_VALUES,
        "flush_interval": DEFAULT_FLUSH_INTERVAL_S,
        "flush_events": DEFAULT_FLUSH_EVENTS,
    }
    assert logger["close_timeout"].default == DEFAULT_CLOSE_TIMEOUT_S
    assert logger["request_timeout"].default == DEFAULT_REQUEST_TIMEOUT_S


def test_every_logger_option_reaches_the_recorder(tmp_path: Path) -> None:
    store_path = tmp_path / "options" / "metrics.db"
    logger = CraftAiLogger(
        name="pipe",
        prefix="exp",
        run_id="the-run",
        store_path=str(store_path),
        deployment_name="deploy",
        max_list_values=3,
        flush_interval=0.5,
        flush_events=7,
        close_timeout=5.0,
        request_timeout=9.0,
    )
    for step in range(5):
        logger.log_metrics({"loss": float(step)}, step=step)  # no log_graph: the first stage is fit
    recorder = logger.experiment
    assert isinstance(recorder, MetricRecorder)
    assert recorder.execution_id == "the-run" and recorder.max_list_values == 3
    assert recorder.close_timeout == 5.0
    logger.finalize("success")
    store = LocalStore(store_path)
    try:
        (run,) = store.executions()
        assert (run["execution_id"], run["pipeline_name"], run["deployment_name"]) == (
            "the-run",
            "pipe",
            "deploy",
        )
        assert len(store.list_series("the-run", "exp-loss")) == 3  # capped at max_list_values
    finally:
        store.close()


# -- AdapterRuns ----------------------------------------------------------------------------


def test_prefixed_puts_the_prefix_and_the_frameworks_joiner_before_every_name() -> None:
    metrics = {"loss": 1.0, "acc": 0.5}
    assert prefixed(metrics, "") is metrics  # no prefix: no copy
    assert prefixed(metrics, "", "-") is metrics
    assert prefixed(metrics, "hf/") == {"hf/loss": 1.0, "hf/acc": 0.5}  # HuggingFace: right before
    assert prefixed(metrics, "exp", "-") == {"exp-loss": 1.0, "exp-acc": 0.5}  # Lightning: with "-"


def test_the_hot_path_is_the_open_recorders_own_log_step(store: LocalStore) -> None:
    runs = AdapterRuns(sink=store)
    runs.log_step({"loss": 1.0}, 0)  # no run open: not recorded, no error
    recorder = runs.start()
    assert recorder is not None
    assert runs.log_step == recorder.log_step  # no prefix: nothing between the adapter and the recorder
    runs.log_step({"loss": 2.0}, 1)
    runs.end()
    assert store.list_series(recorder.execution_id, "loss") == [(1, 2.0)]


def test_a_prefix_names_per_step_and_end_of_run_values_alike(store: LocalStore) -> None:
    runs = AdapterRuns(sink=store, prefix="exp", joiner="-")
    recorder = runs.start()
    assert recorder is not None
    runs.log_step({"loss": 2.0}, 1)
    runs.end()
    runs.log_final({"test_loss": 0.5})  # after the run: a scalar of the last run, named alike
    assert store.list_series(recorder.execution_id, "exp-loss") == [(1, 2.0)]
    scalars = {row["name"]: row["value"] for row in store.get_metrics(execution_id=recorder.execution_id)}
    assert scalars["exp-test_loss"] == 0.5 and scalars["exp-loss"] == 2.0


def test_a_checkpoints_run_is_continued_unless_one_is_named(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = AdapterRuns(sink=store)
    assert runs.start(run_id="from-checkpoint") is not None and runs.current is not None
    assert runs.current.execution_id == "from-checkpoint"
    runs.end()
    named = AdapterRuns(sink=store, run_id="named")
    assert named.start(run_id="from-checkpoint") is not None and named.current is not None
    assert named.current.execution_id == "named"  # run_id= wins
    named.end()
    monkeypatch.setenv("CRAFT_CALLBACKS_RUN_ID", "from-environment")
    from_environment = AdapterRuns(sink=store)
    assert from_environment.start(run_id="from-checkpoint") is not None
    assert from_environment.current is not None
    assert from_environment.current.execution_id == "from-environment"  # so does the environment
    from_environment.end()
    backup = AdapterRuns(sink=store, run_id="named")
    assert backup.start(run_id="from-backup", run_id_wins=True) is not None and backup.current is not None
    assert backup.current.execution_id == "from-backup"  # a checkpoint holding that run's steps wins
    backup.end()


def test_disabled_runs_have_the_same_interface_and_do_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRAFT_CALLBACKS_DISABLED", "1")
    runs = adapter_runs(store_path=tmp_path / "never.db")
    assert isinstance(runs, DisabledRuns) and not runs.enabled
    store = LocalStore(tmp_path / "enabled.db")
    public = {name for name in dir(AdapterRuns(sink=store)) if not name.startswith("_")}
    store.close()
    assert public <= set(dir(runs)), "DisabledRuns lacks part of the interface"
    assert runs.start(10, {"lr": 0.1}, resume_step=3, run_id="r") is None
    runs.log_step({"loss": 1.0}, 1)
    runs.log_final({"loss": 1.0})
    runs.flush(1.0)
    runs.end("failed")
    assert runs.current is None and runs.open_run is None and not runs.recording
    assert runs.next_execution_id and runs.next_execution_id != DisabledRuns().next_execution_id
    assert DisabledRuns("disabled-x").next_execution_id == "disabled-x"
    assert not (tmp_path / "never.db").exists()


def test_the_adapters_are_turned_off_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from craft_callbacks.accelerate import CraftAiTracker
    from craft_callbacks.huggingface import CraftAiCallback
    from craft_callbacks.keras import CraftAiKerasCallback

    monkeypatch.setenv("CRAFT_CALLBACKS_DISABLED", "1")
    never = tmp_path / "never.db"
    adapters = [
        CraftAiCallback(store_path=never).runs,
        CraftAiKerasCallback(store_path=never).runs,
        CraftAiTracker(store_path=never).runs,
        CraftAiLogger(store_path=str(never))._runs,
    ]
    assert all(isinstance(runs, DisabledRuns) for runs in adapters)
    assert not never.exists()


def test_a_turned_off_lightning_logger_looks_at_nothing_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turned off, the logger's calls return at once: no trainer is kept (no cycle), no
    hyperparameter is flattened (an odd mapping cannot raise), no metric is looked at."""

    class Unreadable(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("not readable")

    class Model:
        _trainer = object()  # log_graph would read its state, were it looked at

    monkeypatch.setenv("CRAFT_CALLBACKS_DISABLED", "1")
    logger = CraftAiLogger(store_path=str(tmp_path / "never.db"))
    logger.log_hyperparams(Unreadable(lr=0.1))
    logger.log_graph(Model())
    logger.log_metrics(Unreadable(loss=1.0), step=0)
    assert logger._trainer is None and logger._stage is None
    assert logger._runs.current is None and not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    ("error", "status"),
    [(None, "success"), (ValueError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")],
)
def test_the_exit_status_is_how_the_interpreter_exits(
    error: BaseException | None, status: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the ``atexit`` hook of ``end_at_exit=True`` ends a run with (Fabric's scripts test it whole)."""
    for name in ("last_exc", "last_value"):
        monkeypatch.delattr(sys, name, raising=False)
    if error is not None:
        monkeypatch.setattr(
            sys, "last_exc" if sys.version_info >= (3, 12) else "last_value", error, raising=False
        )
    assert exit_status() == status
