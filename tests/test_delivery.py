"""Background delivery: retries, refusals, no I/O on the caller's thread, exit and fork."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from craft_callbacks import DeliveryWarning, LocalStore, MemorySink, MetricRecorder, NonNumericMetricWarning
from craft_callbacks.values import Number


class FlakySink(MemorySink):
    """Fails a share of calls (before accepting anything), like a platform returning 500s."""

    def __init__(self, failure_rate: float, seed: int = 7) -> None:
        super().__init__()
        self.failures = 0
        self._random = random.Random(seed)
        self._failure_rate = failure_rate

    def _maybe_fail(self) -> None:
        if self._random.random() < self._failure_rate:
            self.failures += 1
            raise ConnectionError("server unavailable")

    def record_list_metric_values(self, name: str, values: Number | list[Number]) -> None:
        self._maybe_fail()
        super().record_list_metric_values(name, values)

    def record_metric_value(self, name: str, value: Number) -> None:
        self._maybe_fail()
        super().record_metric_value(name, value)


class HttpError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def test_failures_are_retried_and_every_value_arrives_once() -> None:
    sink = FlakySink(failure_rate=0.3)
    recorder = MetricRecorder(sink, flush_interval=0.01, close_timeout=60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(3_000):
            recorder.log_step({"loss": float(step), "acc": step / 3_000}, step=step)
            if step % 500 == 0:
                recorder.flush(timeout=0.05)
        recorder.log_final({"score": 1})
        recorder.close()
    assert sink.failures > 0
    assert sink.lists["loss"] == [float(step) for step in range(3_000)]
    assert sink.lists["acc"] == [step / 3_000 for step in range(3_000)]
    assert sink.scalars == {"score": 1, "loss": 2_999.0, "acc": 2_999 / 3_000}
    delivery = [w for w in caught if issubclass(w.category, DeliveryWarning)]
    assert len(delivery) == 1
    assert "retrying" in str(delivery[0].message)


def test_a_permanent_refusal_warns_once_and_the_rest_flows() -> None:
    class RefusingSink(MemorySink):
        def record_list_metric_values(self, name: str, values: Number | list[Number]) -> None:
            if name == "refused":
                raise HttpError(400, "metric name is not allowed")
            super().record_list_metric_values(name, values)

    sink = RefusingSink()
    recorder = MetricRecorder(sink, flush_interval=0.01)
    with pytest.warns(DeliveryWarning, match="metric name is not allowed") as caught, recorder:
        for step in range(200):
            recorder.log_step({"refused": 1.0, "loss": float(step)}, step=step)
            if step % 50 == 0:
                recorder.flush(timeout=5)
    assert sum("refused" in str(w.message) for w in caught) == 1
    assert sink.lists["loss"] == [float(step) for step in range(200)]
    assert "refused" not in sink.lists
    assert "200 refused by the sink (list refused)" in recorder.summary()
    assert sink.scalars["refused"] == 1.0  # the scalar of that name was accepted


def test_a_sink_that_never_recovers_never_raises_and_close_is_bounded() -> None:
    sink = FlakySink(failure_rate=1.0)
    recorder = MetricRecorder(sink, flush_interval=0.01, close_timeout=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(100):
            recorder.log_step({"loss": float(step)}, step=step)
        recorder.close()
    messages = [str(w.message) for w in caught if issubclass(w.category, DeliveryWarning)]
    where = (
        "0 list values and 0 scalars reached FlakySink, 101 values lost "
        "(not accepted by FlakySink within 0.5 s: 101)"
    )
    assert sum(where in m for m in messages) == 1
    assert sink.lists == {}
    assert recorder.summary().endswith(where)


def test_the_caller_thread_never_writes(monkeypatch: pytest.MonkeyPatch, store: LocalStore) -> None:
    writers: list[int] = []
    original = LocalStore.write

    def spying_write(self: LocalStore, *args: Any, **kwargs: Any) -> None:
        writers.append(threading.get_ident())
        original(self, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "write", spying_write)
    recorder = MetricRecorder(store, flush_interval=0.01)
    with pytest.warns(NonNumericMetricWarning, match="'text'"):
        for step in range(2_000):
            recorder.log_step({"loss": float(step), "text": "dropped"}, step=step)
            recorder.log_final({"best": float(step)})
            recorder.log_hyperparams({"step": step})
    recorder.flush(timeout=10)
    assert writers, "the worker wrote nothing"
    assert threading.get_ident() not in writers
    recorder.close()
    assert store.get_list_metrics(name="loss")[0]["values"] == [float(step) for step in range(2_000)]


EXITS_WITHOUT_CLOSE = textwrap.dedent(
    """
    import sys
    from craft_callbacks import MetricRecorder
    recorder = MetricRecorder(store_path=sys.argv[1], flush_interval=3600)
    for step in range(1000):
        recorder.log_step({"loss": float(step)}, step=step)
    recorder.log_final({"accuracy": 0.5})
    print(recorder.execution_id)
    """
)


def test_values_are_delivered_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    done = subprocess.run(
        [sys.executable, "-c", EXITS_WITHOUT_CLOSE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    execution_id = done.stdout.strip()
    store = LocalStore(path)
    assert store.get_list_metrics(execution_id=execution_id)[0]["values"] == [float(s) for s in range(1000)]
    scalars = {row["name"]: row["value"] for row in store.get_metrics(execution_id=execution_id)}
    assert scalars == {"accuracy": 0.5, "loss": 999.0}
    assert store.executions()[0]["status"] == "exited"
    assert "craft_callbacks: run" in done.stderr  # the summary line was printed


def _child_logs_and_closes(recorder: MetricRecorder) -> None:
    recorder.log_step({"loss": -1.0})
    recorder.close()


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
def test_a_forked_child_writes_nothing_to_the_store(store: LocalStore) -> None:
    recorder = MetricRecorder(store, flush_interval=3600)
    for step in range(100):
        recorder.log_step({"loss": float(step)}, step=step)
    pid = os.fork()
    if pid == 0:  # the child: log, close, exit at once (as a DataLoader worker would)
        try:
            _child_logs_and_closes(recorder)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    recorder.close()
    assert store.get_list_metrics(execution_id=recorder.execution_id)[0]["values"] == [
        float(step) for step in range(100)
    ]


class SlowSink(MemorySink):
    """Accepts every request, slowly: a sink that cannot keep up with a tight logging loop."""

    def record_list_metric_values(self, name: str, values: Number | list[Number]) -> None:
        threading.Event().wait(0.002)
        super().record_list_metric_values(name, values)


def buffered_events(recorder: MetricRecorder) -> int:
    """How many logged events the recorder still holds, not yet taken by its worker."""
    return max(len(series.steps) for series in recorder._lists)


def test_logging_faster_than_delivery_keeps_a_bounded_buffer_and_loses_nothing() -> None:
    sink = SlowSink()
    recorder = MetricRecorder(sink, flush_events=50, flush_interval=60)
    most = 0
    for step in range(5_000):
        recorder.log_step({"a": float(step), "b": -float(step)})
        most = max(most, buffered_events(recorder))
    recorder.close()
    # The caller waits for the worker once 4 wakes' worth of events are waiting (checked each wake).
    assert most <= 5 * 50 + 1
    assert sink.lists["a"] == [float(step) for step in range(5_000)]
    assert sink.lists["b"] == [-float(step) for step in range(5_000)]


def test_a_hanging_sink_costs_one_short_wait_not_one_per_wake() -> None:
    entered, release = threading.Event(), threading.Event()

    class HangingSink(MemorySink):
        def record_list_metric_values(self, name: str, values: Number | list[Number]) -> None:
            entered.set()
            release.wait(30)
            super().record_list_metric_values(name, values)

    sink = HangingSink()
    recorder = MetricRecorder(sink, flush_events=50, flush_interval=60)
    waits = []
    wait_for_round = recorder._worker.wait_for_round

    def counted(timeout: float) -> bool:
        waits.append(timeout)
        return wait_for_round(timeout)

    recorder._worker.wait_for_round = counted  # type: ignore[method-assign]
    for step in range(60):  # past the first wake: the worker takes these and hangs in the sink
        recorder.log_step({"loss": float(step)})
    assert entered.wait(10)
    for step in range(60, 3_000):
        recorder.log_step({"loss": float(step)})
    assert len(waits) == 1  # the worker made no progress in that wait: the caller stops waiting
    release.set()
    recorder.close()
    assert sink.lists["loss"] == [float(step) for step in range(3_000)]


FORKED_CHILD_LOGS = textwrap.dedent(
    """
    import os, sys, warnings
    from craft_callbacks import LocalStore, MetricRecorder
    recorder = MetricRecorder(LocalStore(sys.argv[1]), flush_interval=3600)
    recorder.log_step({"loss": 0.0}, step=0)
    pid = os.fork()
    if pid == 0:  # a DataLoader worker that logs
        for step in range(1, 50):
            recorder.log_step({"loss": float(step)}, step=step)
        recorder.log_final({"child_accuracy": 1.0})
        sys.stderr.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    recorder.log_step({"loss": 99.0}, step=99)
    recorder.close()
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
def test_a_forked_child_that_logs_is_told_once_that_its_values_are_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    done = subprocess.run(
        [sys.executable, "-c", FORKED_CHILD_LOGS, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    told = [line for line in done.stderr.splitlines() if "forked from the one that created" in line]
    assert len(told) == 1, done.stderr  # once, not once per value
    assert "NOT recorded" in told[0] and "Create a MetricRecorder in this process" in told[0]
    store = LocalStore(path)
    (run,) = store.executions()
    assert store.get_list_metrics(execution_id=run["execution_id"])[0]["values"] == [0.0, 99.0]
    scalars = {row["name"] for row in store.get_metrics(execution_id=run["execution_id"])}
    assert "child_accuracy" not in scalars
