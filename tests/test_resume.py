"""Resume: a training restarted from its checkpoint continues the same run, each step once.

The recorder's part (adapters pass the checkpoint's step): locally, the values
recorded after the checkpoint are replaced by the resumed ones; on the platform,
whose lists only grow, values logged again for steps it already holds are not
sent again. ``run_id=`` and ``CRAFT_CALLBACKS_RUN_ID`` continue a run;
``CRAFT_CALLBACKS_RUN_NAME`` names one.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from craft_callbacks import LocalStore, MetricRecorder
from platform_emulator import PlatformEmulator

EXECUTION = "exec-test-1"


def _loss(step: int, attempt: int) -> float:
    """The loss a training logs at ``step`` on its ``attempt``-th try (tries differ, so they show)."""
    return step + attempt / 10


def test_a_resumed_local_run_replaces_the_steps_after_the_checkpoint(store: LocalStore) -> None:
    first = MetricRecorder(store, pipeline_name="train")
    for step in range(1, 13):  # crashes after step 12; the last checkpoint was at step 10
        first.log_step({"loss": _loss(step, 1)}, step=step)
    first.close("exited")

    with MetricRecorder(store, run_id=first.execution_id) as resumed:
        resumed.resume_from(10)
        for step in range(11, 21):
            resumed.log_step({"loss": _loss(step, 2)}, step=step)

    (run,) = store.executions()
    assert run["execution_id"] == first.execution_id and run["status"] == "success"
    assert run["pipeline_name"] == "train"
    series = store.list_series(first.execution_id, "loss")
    assert [step for step, _ in series] == list(range(1, 21))  # 20 of 20, each once
    assert [value for _, value in series] == [_loss(s, 1) for s in range(1, 11)] + [
        _loss(s, 2) for s in range(11, 21)
    ]
    assert "2 values of steps recorded before the restart kept once" in resumed.summary()


def test_run_id_from_the_environment_continues_and_run_name_names(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = MetricRecorder(store)
    first.log_step({"loss": 1.0}, step=0)
    first.close()
    monkeypatch.setenv("CRAFT_CALLBACKS_RUN_ID", first.execution_id)
    monkeypatch.setenv("CRAFT_CALLBACKS_RUN_NAME", "resnet-sweep")
    with MetricRecorder(store) as again:
        again.log_step({"loss": 0.5}, step=1)
    assert again.execution_id == first.execution_id
    assert store.list_series(first.execution_id, "loss") == [(0, 1.0), (1, 0.5)]
    monkeypatch.delenv("CRAFT_CALLBACKS_RUN_ID")
    with MetricRecorder(store) as named:
        named.log_step({"loss": 0.25})
    assert store.find_run(named.execution_id)["pipeline_name"] == "resnet-sweep"
    assert len(store.executions()) == 2


CRASHING_STEP = textwrap.dedent(
    """
    import os, sys, time
    from craft_callbacks import MetricRecorder
    recorder = MetricRecorder(flush_interval=0.05)
    for step in range(1, 13):
        recorder.log_step({"loss": step + 0.1}, step=step)
    recorder.flush(timeout=30)
    print("delivered", flush=True)
    time.sleep(60)  # killed here, at step 13, before it ends
    """
)


def test_a_resumed_run_on_the_platform_sends_no_step_twice(platform: PlatformEmulator) -> None:
    crashed = subprocess.Popen(
        [sys.executable, "-c", CRASHING_STEP], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert crashed.stdout is not None and crashed.stdout.readline().strip() == "delivered"
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(30)
    assert platform.store.lists[(EXECUTION, "loss")] == [step + 0.1 for step in range(1, 13)]

    with MetricRecorder(flush_interval=0.05) as resumed:  # the same execution, restarted
        resumed.resume_from(10)
        for step in range(11, 21):
            resumed.log_step({"loss": step + 0.2}, step=step)

    assert platform.store.lists[(EXECUTION, "loss")] == [step + 0.1 for step in range(1, 13)] + [
        step + 0.2 for step in range(13, 21)
    ]
    assert "2 values of steps recorded before the restart kept once" in resumed.summary()


def test_an_invalid_verbosity_is_one_warning(tmp_path: Path) -> None:
    script = "from craft_callbacks import MetricRecorder\nMetricRecorder(store_path='m.db').close()\n"
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "CRAFT_CALLBACKS_VERBOSITY": "loud"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("CRAFT_CALLBACKS_VERBOSITY='loud' is not one of") == 1, done.stderr
    assert "craft_callbacks: recording run" in done.stderr  # the default level still shows the run


def test_disabled_says_so_once(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from craft_callbacks import runs

    monkeypatch.setattr(runs, "_said_disabled", False)
    monkeypatch.setenv("CRAFT_CALLBACKS_DISABLED", "1")
    caplog.set_level(logging.INFO, logger="craft_callbacks")
    assert runs.disabled_by_environment() and runs.disabled_by_environment()
    said = [r.getMessage() for r in caplog.records if "CRAFT_CALLBACKS_DISABLED" in r.getMessage()]
    assert len(said) == 1 and "record nothing" in said[0]
