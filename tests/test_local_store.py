"""LocalStore: the SDK's read API, many runs and writers, and clear errors for bad paths."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from contextlib import closing
from pathlib import Path

import pytest

from craft_callbacks import LocalStore, LocalStoreError, MetricRecorder

SDK_SCALAR_KEYS = {"name", "value", "created_at", "execution_id", "deployment_name", "pipeline_name"}
SDK_LIST_KEYS = {"name", "values", "created_at", "execution_id", "deployment_name", "pipeline_name"}


def test_rows_have_the_sdk_keys(store: LocalStore) -> None:
    with MetricRecorder(store, pipeline_name="train", deployment_name="nightly") as recorder:
        recorder.log_step({"loss": 0.5}, step=1)
        recorder.log_final({"accuracy": 0.9})
    scalars = store.get_metrics(execution_id=recorder.execution_id)
    lists = store.get_list_metrics(execution_id=recorder.execution_id)
    assert all(set(row) == SDK_SCALAR_KEYS for row in scalars)
    assert all(set(row) == SDK_LIST_KEYS for row in lists)
    assert lists == [
        {
            "name": "loss",
            "values": [0.5],
            "created_at": lists[0]["created_at"],
            "execution_id": recorder.execution_id,
            "deployment_name": "nightly",
            "pipeline_name": "train",
        }
    ]
    assert lists[0]["created_at"].endswith("Z")
    assert {row["name"]: row["value"] for row in scalars} == {"accuracy": 0.9, "loss": 0.5}


def test_filters_match_the_sdk_signature(store: LocalStore) -> None:
    runs = {}
    for pipeline in ("a", "b"):
        with MetricRecorder(store, pipeline_name=pipeline, deployment_name=f"dep-{pipeline}") as recorder:
            recorder.log_step({"loss": 1.0, "acc": 0.5})
        runs[pipeline] = recorder.execution_id
    assert {row["execution_id"] for row in store.get_list_metrics(name="loss")} == set(runs.values())
    assert [row["name"] for row in store.get_list_metrics(pipeline_name="a")] == ["acc", "loss"]
    assert {row["pipeline_name"] for row in store.get_metrics(deployment_name="dep-b")} == {"b"}
    assert store.get_metrics(execution_id="no-such-run") == []
    assert store.get_list_metrics(name="loss", pipeline_name="b")[0]["execution_id"] == runs["b"]


def test_sdk_style_recording_methods(store: LocalStore) -> None:
    store.record_list_metric_values("loss_list", [1.4, 1.2])
    store.record_list_metric_values("loss_list", [1.1, 1.0])
    store.record_list_metric_values("logx", 0.5)
    store.record_metric_value("accuracy", 0.1409)
    store.record_metric_value("accuracy", 0.2)
    lists = {row["name"]: row["values"] for row in store.get_list_metrics()}
    assert lists == {"loss_list": [1.4, 1.2, 1.1, 1.0], "logx": [0.5]}
    assert [row["value"] for row in store.get_metrics(name="accuracy")] == [0.2]
    with pytest.raises(ValueError, match="not finite"):
        store.record_metric_value("accuracy", float("nan"))
    with pytest.raises(ValueError, match="str is not a number"):
        store.record_list_metric_values("loss_list", ["1.0"])
    assert [row["value"] for row in store.get_metrics(name="accuracy")] == [0.2]


def test_the_store_is_wal_sqlite(store: LocalStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = textwrap.dedent(
    """
    import sys
    from craft_callbacks import MetricRecorder
    tag, path, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with MetricRecorder(store_path=path, pipeline_name=tag, flush_interval=0.01) as recorder:
        for step in range(events):
            recorder.log_step({"loss": step + 0.5, "acc": step * 2 + 0.25, "lr": 1e-3, "epoch": step}, step)
        recorder.log_final({"done": 1})
    """
)


def test_two_processes_writing_one_store_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    events = 20_000
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, tag, str(path), str(events)], stderr=subprocess.PIPE)
        for tag in ("first", "second")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err.decode()
    store = LocalStore(path)
    runs = store.executions()
    assert sorted(run["pipeline_name"] for run in runs) == ["first", "second"]
    for run in runs:
        lists = {
            row["name"]: row["values"] for row in store.get_list_metrics(execution_id=run["execution_id"])
        }
        assert lists["loss"] == [step + 0.5 for step in range(events)]
        assert lists["acc"] == [step * 2 + 0.25 for step in range(events)]
        assert lists["epoch"] == list(range(events))
        assert len(lists["lr"]) == events
        assert run["status"] == "success"


def test_many_connections_creating_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL races between openers; every opener must wait, not fail."""
    failures: list[BaseException] = []
    for attempt in range(30):
        path = tmp_path / f"new-{attempt}.db"
        barrier = threading.Barrier(6)

        def open_store(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                LocalStore(path).start_execution()
            except BaseException as error:
                failures.append(error)

        openers = [threading.Thread(target=open_store) for _ in range(6)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
    assert failures == []


def test_a_corrupt_file_is_refused_at_creation(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    path.write_bytes(b"this is not an sqlite database, just some bytes" * 100)
    with pytest.raises(LocalStoreError, match="metrics store"):
        MetricRecorder(store_path=path)
    assert path.read_bytes().startswith(b"this is not")


def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(LocalStoreError, match="not a craft_callbacks metrics store"):
        LocalStore(path)


def test_a_store_from_a_newer_version_gets_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    LocalStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(LocalStoreError, match="newer craft_callbacks"):
        LocalStore(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalStoreError, match="is a directory"):
        MetricRecorder(store_path=tmp_path)


@pytest.mark.parametrize("where", ["under-a-file", "read-only-filesystem"])
def test_an_unwritable_location_is_refused_at_creation(tmp_path: Path, where: str) -> None:
    if where == "under-a-file":
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        path = blocker / "metrics.db"
    else:
        path = Path("/proc/self/craft_metrics/metrics.db")  # read-only even for root
    with pytest.raises(LocalStoreError, match="cannot create the folder"):
        MetricRecorder(store_path=path)


def test_an_existing_store_reopens_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    with MetricRecorder(store_path=path) as first:
        first.log_step({"loss": 1.0})
    with MetricRecorder(store_path=path) as second:
        second.log_step({"loss": 2.0})
    store = LocalStore(path)
    assert [row["values"] for row in store.get_list_metrics(name="loss")] == [[1.0], [2.0]]
    assert {run["execution_id"] for run in store.executions()} == {first.execution_id, second.execution_id}


def test_a_schema_1_store_is_moved_to_chunks_with_its_values_and_steps(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            """
            CREATE TABLE executions (execution_id TEXT PRIMARY KEY, pipeline_name TEXT,
                deployment_name TEXT, created_at TEXT NOT NULL, ended_at TEXT,
                status TEXT NOT NULL DEFAULT 'running', hyperparameters TEXT NOT NULL DEFAULT '{}');
            CREATE TABLE metrics (execution_id TEXT NOT NULL, name TEXT NOT NULL, value NOT NULL,
                created_at TEXT NOT NULL, PRIMARY KEY (execution_id, name)) WITHOUT ROWID;
            CREATE TABLE lists (list_id INTEGER PRIMARY KEY, execution_id TEXT NOT NULL,
                name TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (execution_id, name));
            CREATE TABLE list_values (list_id INTEGER NOT NULL, seq INTEGER NOT NULL, step INTEGER,
                value NOT NULL, PRIMARY KEY (list_id, seq)) WITHOUT ROWID;
            INSERT INTO executions (execution_id, created_at) VALUES ('run-1', '2026-11-01T00:00:00');
            INSERT INTO lists VALUES (1, 'run-1', 'loss', '2026-11-01T00:00:00');
            INSERT INTO list_values VALUES (1, 0, 10, 0.5), (1, 1, 20, 0.25), (1, 2, NULL, 3);
            PRAGMA user_version = 1;
            """
        )
    store = LocalStore(path)
    assert store.list_series("run-1", "loss") == [(10, 0.5), (20, 0.25), (None, 3)]
    assert type(store.list_series("run-1", "loss")[2][1]) is int  # an int stays an int
    store.write("run-1", lists=[("loss", [30], [0.125])])
    assert [row["values"] for row in store.get_list_metrics("loss")] == [[0.5, 0.25, 3, 0.125]]
