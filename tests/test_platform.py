"""Delivery to the Craft AI platform: the real craft-ai-sdk over real HTTP to the emulator."""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import types
import warnings
from collections import Counter
from pathlib import Path

import pytest
from craft_ai_sdk import CraftAiSdk
from craft_ai_sdk.shared import execution_context

from craft_callbacks import DeliveryWarning, LocalStore, MetricLimitWarning, MetricRecorder
from craft_callbacks.cli import main as cli_main
from craft_callbacks.delivery.spool import Spool
from platform_emulator import PlatformEmulator

EXECUTION = "exec-test-1"
SPOOL = Path("craft_metrics") / "spool.db"


def _posts_per_name(platform: PlatformEmulator) -> Counter[str]:
    prefix = "/api/v1/metrics/list-values/"
    return Counter(
        entry.path[len(prefix) :]
        for entry in platform.requests_log
        if entry.method == "POST" and entry.path.startswith(prefix)
    )


def test_every_value_arrives_once_in_order_in_one_request_per_metric_per_flush(
    platform: PlatformEmulator,
) -> None:
    with MetricRecorder(flush_interval=60.0) as recorder:  # rounds: at 4,096 and 8,192 events, at close
        for step in range(10_000):
            recorder.log_step({"loss": step + 0.5, "acc": step / 1e4, "lr": 1e-3, "epoch": step // 100}, step)
    assert isinstance(recorder.sink, CraftAiSdk)
    lists = platform.store.lists
    assert lists[(EXECUTION, "loss")] == [step + 0.5 for step in range(10_000)]
    assert lists[(EXECUTION, "acc")] == [step / 1e4 for step in range(10_000)]
    assert lists[(EXECUTION, "lr")] == [1e-3] * 10_000
    assert lists[(EXECUTION, "epoch")] == [step // 100 for step in range(10_000)]
    assert sum(len(values) for values in lists.values()) == 40_000
    posts = _posts_per_name(platform)
    assert set(posts) == {"loss", "acc", "lr", "epoch"}
    assert max(posts.values()) <= 3
    assert platform.store.scalars[(EXECUTION, "loss")] == 9_999.5


def test_failures_and_an_outage_lose_nothing_and_duplicate_nothing(platform: PlatformEmulator) -> None:
    platform.failure_rate = 0.3
    recorder = MetricRecorder(flush_interval=0.1, close_timeout=60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(2_000):
            recorder.log_step({"loss": float(step), "acc": step * 2.0}, step=step)
            if step == 500:
                platform.outage(5.0)
            time.sleep(0.004)
        recorder.log_final({"accuracy": 0.9})
        recorder.close()
    assert platform.requests_per_route["list_post"] > 0
    lists = platform.store.lists
    assert lists[(EXECUTION, "loss")] == [float(step) for step in range(2_000)]
    assert lists[(EXECUTION, "acc")] == [step * 2.0 for step in range(2_000)]
    assert platform.store.scalars[(EXECUTION, "accuracy")] == 0.9
    delivery = [w for w in caught if issubclass(w.category, DeliveryWarning)]
    assert len(delivery) == 1 and "retrying" in str(delivery[0].message)
    assert Spool(SPOOL).pending_lists() == []


def test_lost_responses_are_reconciled_not_resent(platform: PlatformEmulator) -> None:
    platform.drop_rate = 0.3
    platform.drop_after_processing = True  # the platform stored the values, the answer was lost
    recorder = MetricRecorder(flush_interval=0.05, close_timeout=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeliveryWarning)
        for step in range(1_500):
            recorder.log_step({"loss": float(step)}, step=step)
            if step % 100 == 0:
                time.sleep(0.06)
        recorder.close()
    dropped = [entry for entry in platform.requests_log if entry.status is None]
    assert dropped, "the fault never fired"
    assert platform.store.lists[(EXECUTION, "loss")] == [float(step) for step in range(1_500)]


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from craft_callbacks import MetricRecorder
    recorder = MetricRecorder(flush_interval=0.05)
    step = 0
    while True:
        recorder.log_step({"loss": float(step), "acc": step / 7}, step=step)
        step += 1
        if step % 50 == 0:
            time.sleep(0.01)
        if step == 2000:
            print("ready", flush=True)
    """
)


def test_a_killed_run_is_delivered_by_sync_each_value_once(
    platform: PlatformEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert run.stdout is not None and run.stdout.readline().strip() == "ready"
    platform.outage(60.0)  # the platform goes down: what follows stays in the spool
    time.sleep(0.5)
    run.send_signal(signal.SIGKILL)
    run.wait(30)
    with sqlite3.connect(SPOOL) as db:
        spooled = dict(db.execute("SELECT name, spooled FROM spool_lists").fetchall())
    assert spooled["loss"] > 2_000
    delivered_before = len(platform.store.lists[(EXECUTION, "loss")])
    assert delivered_before < spooled["loss"]  # some values were only in the spool
    platform.reset()
    assert not platform.in_outage
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0
    out = capsys.readouterr().out
    assert "craft-callbacks sync: delivered" in out and EXECUTION in out
    assert platform.store.lists[(EXECUTION, "loss")] == [float(step) for step in range(spooled["loss"])]
    assert platform.store.lists[(EXECUTION, "acc")] == [step / 7 for step in range(spooled["acc"])]
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0  # a second sync sends nothing more
    assert "nothing to deliver" in capsys.readouterr().out
    assert len(platform.store.lists[(EXECUTION, "loss")]) == spooled["loss"]


def test_sync_skips_what_the_platform_already_holds_and_resumes(platform: PlatformEmulator) -> None:
    spool = Spool(SPOOL)
    values = [float(index) for index in range(25_000)]
    spool.set_base("exec-other", "loss", 3)
    spool.add("exec-other", {"loss": (0, values)}, {"best": 1.5})
    spool.release("exec-other")  # its process is gone
    platform.add_list_values("exec-other", "loss", [-1.0, -2.0, -3.0])  # before this run
    platform.add_list_values("exec-other", "loss", values[:12_345])  # accepted, spool not told (crash)
    platform.fail_next(3, status=503)  # the first attempts of the sync fail: it retries
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0
    assert platform.store.lists[("exec-other", "loss")] == [-1.0, -2.0, -3.0, *values]
    assert platform.store.scalars[("exec-other", "best")] == 1.5
    assert Spool(SPOOL).pending_lists() == []


def test_sync_leaves_lists_of_a_live_process_alone(platform: PlatformEmulator) -> None:
    recorder = MetricRecorder(flush_interval=3600)
    platform.outage(3600)
    recorder.log_step({"loss": 1.0})
    with pytest.warns(DeliveryWarning, match="retrying"):
        recorder.flush(timeout=2)  # spooled, not delivered
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 1
    assert (EXECUTION, "loss") not in platform.store.lists
    platform.reset()
    recorder.close()
    assert platform.store.lists[(EXECUTION, "loss")] == [1.0]


def test_close_timeout_leaves_the_spool_and_says_how_to_deliver_it(
    platform: PlatformEmulator,
) -> None:
    platform.outage(3600)
    recorder = MetricRecorder(flush_interval=0.05, close_timeout=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(100):
            recorder.log_step({"loss": float(step)}, step=step)
        recorder.close()
    messages = [str(w.message) for w in caught if "could not be delivered" in str(w.message)]
    assert len(messages) == 1
    assert f"craft-callbacks sync --spool {SPOOL}" in messages[0]
    assert "0 list values and 0 scalars reached the Craft AI platform" in messages[0]
    assert f"100 list values and 1 scalars are in the spool {SPOOL}" in messages[0]
    assert "0 lost" in messages[0]
    platform.reset()
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0
    assert platform.store.lists[(EXECUTION, "loss")] == [float(step) for step in range(100)]
    assert platform.store.scalars[(EXECUTION, "loss")] == 99.0


@pytest.mark.parametrize(
    ("key", "safe"),
    [
        ("train/loss", "train_loss"),
        ("../../admin", ".._.._admin"),
        ("a?b=1", "a_b_1"),
        ("x#frag", "x_frag"),
        ("100%", "100_"),
        ("val loss", "val_loss"),
        ("..", "__"),
    ],
)
def test_unsafe_names_reach_only_their_own_url(platform: PlatformEmulator, key: str, safe: str) -> None:
    with MetricRecorder() as recorder:
        recorder.log_step({key: 1.0})
        recorder.log_final({key: 2.0})
    assert platform.store.lists == {(EXECUTION, safe): [1.0]}
    assert platform.store.scalars == {(EXECUTION, safe): 2.0}
    writes = [entry for entry in platform.requests_log if entry.method in ("POST", "PUT")]
    assert {entry.path for entry in writes} == {
        "/api/v1/auth/refresh",
        f"/api/v1/metrics/list-values/{safe}",
        f"/api/v1/metrics/single-value/{safe}",
    }
    assert all(entry.status == 200 for entry in platform.requests_log)


def test_the_token_appears_nowhere(
    platform: PlatformEmulator, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    platform.failure_rate = 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recorder = MetricRecorder(flush_interval=0.02, close_timeout=0.5)
        for step in range(300):
            recorder.log_step({"loss": float(step), "bad": "text"}, step=step)
        platform.outage(10)
        recorder.close()
    platform.reset()
    token = platform.token
    texts = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    captured = capfd.readouterr()
    texts += [captured.out, captured.err, recorder.summary()]
    assert any("could not be delivered" in text for text in texts)  # the failure path ran
    assert not [text for text in texts if token in text]
    for path in Path("craft_metrics").iterdir():
        assert token.encode() not in path.read_bytes(), path


def test_outside_an_execution_auto_records_locally_and_sends_nothing(
    platform: PlatformEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRAFT_AI_EXECUTION_ID")
    with MetricRecorder() as recorder:
        recorder.log_step({"loss": 0.5})
        recorder.log_final({"accuracy": 1.0})
    assert isinstance(recorder.sink, LocalStore)
    assert LocalStore().get_list_metrics(execution_id=recorder.execution_id)[0]["values"] == [0.5]
    assert platform.request_count == 0


def test_an_sdk_given_outside_an_execution_records_locally(
    platform: PlatformEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRAFT_AI_EXECUTION_ID")
    with pytest.warns(DeliveryWarning, match="not inside a Craft AI execution"):
        recorder = MetricRecorder(CraftAiSdk())
    recorder.log_step({"loss": 0.5})
    recorder.close()
    assert isinstance(recorder.sink, LocalStore)
    assert platform.request_count == 0


def test_a_list_the_execution_already_filled_gets_nothing_more_and_no_refusal(
    platform: PlatformEmulator,
) -> None:
    platform.add_list_values(EXECUTION, "full", [0.0] * 50_000)  # an earlier run filled it
    recorder = MetricRecorder(flush_interval=0.02)
    with pytest.warns(MetricLimitWarning, match="this run.s values of it are dropped") as caught, recorder:
        for step in range(200):
            recorder.log_step({"full": 1.0, "loss": float(step)}, step=step)
            if step % 50 == 0:
                recorder.flush(timeout=5)
    assert sum("'full'" in str(w.message) for w in caught) == 1
    assert not [w for w in caught if issubclass(w.category, DeliveryWarning)]
    assert platform.store.lists[(EXECUTION, "loss")] == [float(step) for step in range(200)]
    assert len(platform.store.lists[(EXECUTION, "full")]) == 50_000
    assert all(entry.status == 200 for entry in platform.requests_log)
    assert "200 thinned to stay under 50,000 values per list" in recorder.summary()
    assert Spool(SPOOL).pending_lists() == []


EXITS_WITHOUT_CLOSE = textwrap.dedent(
    """
    from craft_callbacks import MetricRecorder
    recorder = MetricRecorder(flush_interval=3600)
    for step in range(500):
        recorder.log_step({"loss": float(step)}, step=step)
    """
)


def test_interpreter_exit_delivers_to_the_platform(platform: PlatformEmulator) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXITS_WITHOUT_CLOSE],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    assert platform.store.lists[(EXECUTION, "loss")] == [float(step) for step in range(500)]
    assert platform.store.scalars[(EXECUTION, "loss")] == 499.0


def test_a_spool_of_the_one_row_per_value_format_is_still_delivered(platform: PlatformEmulator) -> None:
    SPOOL.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(SPOOL) as db:
        db.executescript(
            """
            CREATE TABLE spool_lists (execution_id TEXT NOT NULL, name TEXT NOT NULL, base INTEGER,
                accepted INTEGER NOT NULL DEFAULT 0, spooled INTEGER NOT NULL DEFAULT 0, refused TEXT,
                owner_pid INTEGER, PRIMARY KEY (execution_id, name)) WITHOUT ROWID;
            CREATE TABLE spool_values (execution_id TEXT NOT NULL, name TEXT NOT NULL,
                seq INTEGER NOT NULL, value NOT NULL, PRIMARY KEY (execution_id, name, seq)) WITHOUT ROWID;
            INSERT INTO spool_lists VALUES ('exec-old', 'loss', 0, 2, 5, NULL, NULL);
            INSERT INTO spool_values VALUES ('exec-old', 'loss', 2, 0.3), ('exec-old', 'loss', 3, 0.4),
                ('exec-old', 'loss', 4, 5);
            """
        )
    db.close()
    platform.add_list_values("exec-old", "loss", [0.1, 0.2])  # the two it had accepted

    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0

    assert platform.store.lists[("exec-old", "loss")] == [0.1, 0.2, 0.3, 0.4, 5]
    assert Spool(SPOOL).pending_lists() == []


def test_sync_inside_another_execution_delivers_to_the_recorded_one(
    platform: PlatformEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(SPOOL)
    spool.add("exec-recorded", {"loss": (0, [0.5, 0.25])}, {"best": 0.25})
    spool.release("exec-recorded")
    spool.close()
    # This sync runs in a platform step of another execution: the platform injects its context
    # module, whose ContextVar the SDK prefers over CRAFT_AI_EXECUTION_ID.
    context = types.ModuleType("__craft_internal_execution_context")
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("current_execution_id")
    variable.set("exec-current")
    context.current_execution_id = variable  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__craft_internal_execution_context", context)
    monkeypatch.setattr(execution_context, "_execution_context", None)  # as in a fresh step process
    monkeypatch.setenv("CRAFT_AI_EXECUTION_ID", "exec-current")
    assert execution_context.get_execution_id() == "exec-current"

    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0

    assert "exec-recorded" in capsys.readouterr().out
    assert platform.store.lists == {("exec-recorded", "loss"): [0.5, 0.25]}
    assert platform.store.scalars == {("exec-recorded", "best"): 0.25}
    assert execution_context.get_execution_id() == "exec-current"  # the step's context is restored


def test_values_the_sdk_did_not_send_are_not_counted_as_delivered(
    platform: PlatformEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = MetricRecorder(flush_interval=0.05, close_timeout=1.0)
    recorder.log_step({"loss": 0.0}, step=0)
    assert recorder.flush(timeout=10)
    # Something clears the execution id: the SDK's record_* now send nothing and return False.
    monkeypatch.delenv("CRAFT_AI_EXECUTION_ID")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(1, 10):
            recorder.log_step({"loss": float(step)}, step=step)
        recorder.close()
    assert platform.store.lists[(EXECUTION, "loss")] == [0.0]
    where = [str(w.message) for w in caught if "could not be delivered" in str(w.message)]
    assert len(where) == 1, [str(w.message) for w in caught]
    assert "1 list values and 0 scalars reached" in where[0]
    assert f"9 list values and 1 scalars are in the spool {SPOOL}" in where[0]
    monkeypatch.setenv("CRAFT_AI_EXECUTION_ID", EXECUTION)
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 0
    assert platform.store.lists[(EXECUTION, "loss")] == [float(step) for step in range(10)]
    assert platform.store.scalars[(EXECUTION, "loss")] == 9.0
