"""LocalStore: the embedded metrics store, one SQLite file (WAL) holding many runs.

It is a sink (the SDK's two recording methods) and answers ``get_metrics`` /
``get_list_metrics`` with the SDK's signature and row keys, so analysis code
runs the same on local and platform data. It also keeps what the platform has
no place for: each list value's step, each run's status and hyperparameters.
Several processes may write one store at once: SQLite's WAL and a busy
timeout serialise them, and nothing is lost.

Each write keeps a list's new values and their steps as one chunk (two JSON
arrays, which Python writes and reads back exactly, ints and floats alike).
A flush is then a few statements however many values it carries: a
row per value would make the writer hand the interpreter lock back and forth
once per value, which crawls beside a busy training thread.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from craft_callbacks.exceptions import LocalStoreError, RunNotFoundError
from craft_callbacks.values import Number, Rejected, to_number

STORE_ENV: Final = "CRAFT_CALLBACKS_STORE"
DEFAULT_STORE_PATH: Final = Path("craft_metrics") / "metrics.db"
SCHEMA_VERSION: Final = 2
_BUSY_TIMEOUT_S: Final = 60.0

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    pipeline_name TEXT,
    deployment_name TEXT,
    created_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    hyperparameters TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS metrics (
    execution_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (execution_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lists (
    list_id INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (execution_id, name)
);
CREATE TABLE IF NOT EXISTS list_chunks (
    list_id INTEGER NOT NULL REFERENCES lists (list_id),
    seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    steps TEXT NOT NULL,
    vals TEXT NOT NULL,
    PRIMARY KEY (list_id, seq)
) WITHOUT ROWID;
"""
_TABLES: Final = {"executions", "metrics", "lists", "list_chunks"}

ListBatch = tuple[str, Sequence[int | None], Sequence[Number]]


def default_store_path() -> Path:
    """The default store: ``$CRAFT_CALLBACKS_STORE``, else ``./craft_metrics/metrics.db``."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE_PATH)


def utc_now() -> str:
    """A timestamp in the platform's format (ISO 8601, UTC, milliseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_execution_id() -> str:
    """A sortable, unique run id such as ``20261124-201530-a1b2c3``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def default_pipeline_name() -> str:
    """The name local runs get by default: the script's name (``train`` for ``train.py``)."""
    script = sys.argv[0] if sys.argv else ""
    if not script or script in ("-", "-c"):
        return "python"
    return Path(script).stem or "python"


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a hyperparameter value (numbers, strings, nesting; others as ``str``)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    number = to_number(value)
    return str(value) if isinstance(number, Rejected) else number


class LocalStore:
    """A metrics store in one SQLite file; a sink that also answers the SDK's reads.

    ``LocalStore()`` opens (or creates) the default store; errors in the path
    (a directory, a file that is not a store, a read-only location) raise
    :class:`~craft_callbacks.exceptions.LocalStoreError` here, at creation,
    never later in the middle of training.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._current: str | None = None
        self._open_and_check()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    @classmethod
    def existing(cls, path: str | os.PathLike[str] | None = None) -> LocalStore:
        """Open a store that must already exist (for reading: never creates a file)."""
        where = Path(path) if path is not None else default_store_path()
        if not where.is_file():
            raise LocalStoreError(f"no metrics store at {where} (record a run first, or give --store PATH)")
        return cls(where)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as its path and current run (``ddp_spawn`` sends loggers to each process)."""
        return {"path": self.path, "current": self._current}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._current = state["current"]
        self._local = threading.local()
        self._connections = []
        self._lock = threading.Lock()

    # -- connection handling -------------------------------------------------

    def _open_and_check(self) -> None:
        where = str(self.path)
        if self.path.is_dir():
            raise LocalStoreError(f"metrics store path {where} is a directory; give a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LocalStoreError(
                f"cannot create the folder of the metrics store {where}: {error.strerror or error}"
            ) from error
        try:
            with self._write() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise LocalStoreError(
                        f"metrics store {where} was written by a newer craft_callbacks "
                        f"(schema {version}, this one reads {SCHEMA_VERSION}); upgrade the package"
                    )
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if tables and not tables >= _TABLES and version == 0:
                    raise LocalStoreError(
                        f"{where} is an SQLite database but not a craft_callbacks metrics store"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if "list_values" in tables:
                    _chunk_list_values(db)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            self.close()
            raise LocalStoreError(f"cannot use {where} as a metrics store: {error}") from error

    def _connection(self) -> sqlite3.Connection:
        cached = getattr(self._local, "connection", None)
        if cached is not None and cached[0] == os.getpid():
            connection: sqlite3.Connection = cached[1]
            return connection
        try:
            db = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise LocalStoreError(f"cannot open metrics store {self.path}: {error}") from error
        try:
            enable_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as error:
            db.close()
            raise LocalStoreError(f"cannot use {self.path} as a metrics store: {error}") from error
        self._local.connection = (os.getpid(), db)
        with self._lock:
            self._connections.append(db)
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite's busy timeout waits out other writers."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if db.in_transaction:
            db.execute("COMMIT")

    def close(self) -> None:
        """Close this process's connections to the file (the store stays usable: it reopens)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            with suppress(sqlite3.Error):
                db.close()
        self._local = threading.local()

    # -- runs ----------------------------------------------------------------

    def start_execution(
        self,
        pipeline_name: str | None = None,
        deployment_name: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Create a run and make it the one the SDK-style recording methods write to."""
        execution_id = execution_id or new_execution_id()
        if pipeline_name is None:
            pipeline_name = default_pipeline_name()
        with self._write() as db:
            db.execute(
                "INSERT INTO executions (execution_id, pipeline_name, deployment_name, created_at, "
                "hyperparameters) VALUES (?, ?, ?, ?, ?) ON CONFLICT (execution_id) DO NOTHING",
                (
                    execution_id,
                    pipeline_name,
                    deployment_name,
                    utc_now(),
                    json.dumps(jsonable(dict(hyperparameters or {}))),
                ),
            )
        self._current = execution_id
        return execution_id

    @property
    def current_execution_id(self) -> str:
        """The run that ``record_metric_value`` / ``record_list_metric_values`` write to."""
        if self._current is None:
            self.start_execution()
        assert self._current is not None
        return self._current

    def set_hyperparameters(self, execution_id: str, params: Mapping[str, Any]) -> None:
        """Merge ``params`` into a run's hyperparameters."""
        with self._write() as db:
            row = db.execute(
                "SELECT hyperparameters FROM executions WHERE execution_id = ?", (execution_id,)
            ).fetchone()
            merged = json.loads(row[0]) if row else {}
            merged.update(jsonable(dict(params)))
            db.execute(
                "UPDATE executions SET hyperparameters = ? WHERE execution_id = ?",
                (json.dumps(merged), execution_id),
            )

    def set_status(self, execution_id: str, status: str) -> None:
        """Record how a run ended (``success``, ``failed``, ``interrupted``...)."""
        with self._write() as db:
            db.execute(
                "UPDATE executions SET status = ?, ended_at = ? WHERE execution_id = ?",
                (status, utc_now(), execution_id),
            )

    def executions(self) -> list[dict[str, Any]]:
        """Every run, in the order they were created, with its status and hyperparameters."""
        rows = self._connection().execute(
            "SELECT execution_id, pipeline_name, deployment_name, created_at, ended_at, status, "
            "hyperparameters FROM executions ORDER BY rowid"
        )
        return [
            {
                "execution_id": row[0],
                "pipeline_name": row[1],
                "deployment_name": row[2],
                "created_at": row[3],
                "ended_at": row[4],
                "status": row[5],
                "hyperparameters": json.loads(row[6]),
            }
            for row in rows
        ]

    def find_run(self, reference: str) -> dict[str, Any]:
        """A run by its id, a unique prefix of its id, or ``latest``."""
        runs = self.executions()
        if not runs:
            raise RunNotFoundError(f"the store {self.path} has no runs yet")
        if reference == "latest":
            return runs[-1]
        for run in runs:
            if run["execution_id"] == reference:
                return run
        matches = [run for run in runs if run["execution_id"].startswith(reference)]
        if not matches:
            raise RunNotFoundError(f"no run {reference!r} in {self.path} (see: craft-callbacks runs)")
        if len(matches) > 1:
            shown = ", ".join(run["execution_id"] for run in matches[:3])
            raise RunNotFoundError(
                f"{reference!r} matches {len(matches)} runs ({shown}{', ...' if len(matches) > 3 else ''}); "
                "give more characters"
            )
        return matches[0]

    # -- writing ---------------------------------------------------------------

    def write(
        self,
        execution_id: str,
        lists: Iterable[ListBatch] = (),
        scalars: Mapping[str, Number] | None = None,
    ) -> None:
        """Append list values (with their steps) and set scalars, in one transaction."""
        now = utc_now()
        with self._write() as db:
            for name, steps, values in lists:
                if not values:
                    continue
                if len(steps) != len(values):
                    raise ValueError(f"list {name!r}: {len(steps)} steps for {len(values)} values")
                db.execute(
                    "INSERT INTO lists (execution_id, name, created_at) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (execution_id, name, now),
                )
                list_id, start = db.execute(
                    "SELECT l.list_id, COALESCE(MAX(c.seq + c.count), 0) FROM lists l "
                    "LEFT JOIN list_chunks c USING (list_id) WHERE l.execution_id = ? AND l.name = ?",
                    (execution_id, name),
                ).fetchone()
                db.execute(
                    "INSERT INTO list_chunks (list_id, seq, count, steps, vals) VALUES (?, ?, ?, ?, ?)",
                    (list_id, start, len(values), json.dumps(list(steps)), json.dumps(list(values))),
                )
            if scalars:
                db.executemany(
                    "INSERT INTO metrics (execution_id, name, value, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (execution_id, name) DO UPDATE SET value = excluded.value, "
                    "created_at = excluded.created_at",
                    [(execution_id, name, value, now) for name, value in scalars.items()],
                )

    def record_metric_value(self, name: str, value: Number) -> None:
        """SDK-compatible: set a scalar of the current run (the last value wins).

        Like the platform, the store refuses anything but a finite number (``ValueError``).
        """
        self.write(self.current_execution_id, scalars={name: _checked(name, value)})

    def record_list_metric_values(self, name: str, values: Number | Sequence[Number]) -> None:
        """SDK-compatible: append one value or a list of values to a list of the current run."""
        batch = list(values) if isinstance(values, (list, tuple)) else [values]
        numbers = [_checked(name, value) for value in batch]
        self.write(self.current_execution_id, lists=[(name, [None] * len(numbers), numbers)])

    # -- reading (the SDK's signatures and row keys) ----------------------------

    def get_metrics(
        self,
        name: str | None = None,
        pipeline_name: str | None = None,
        deployment_name: str | None = None,
        execution_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Scalar metrics as the SDK returns them.

        Row keys: ``name``, ``value``, ``created_at``, ``execution_id``,
        ``deployment_name``, ``pipeline_name``. Filters combine (AND).
        """
        where, params = _filters(name, pipeline_name, deployment_name, execution_id)
        rows = self._connection().execute(
            "SELECT m.name, m.value, m.created_at, m.execution_id, e.deployment_name, e.pipeline_name "
            "FROM metrics m JOIN executions e USING (execution_id)"
            f"{where} ORDER BY e.created_at, m.execution_id, m.name",
            params,
        )
        return [
            {
                "name": row[0],
                "value": row[1],
                "created_at": row[2],
                "execution_id": row[3],
                "deployment_name": row[4],
                "pipeline_name": row[5],
            }
            for row in rows
        ]

    def get_list_metrics(
        self,
        name: str | None = None,
        pipeline_name: str | None = None,
        deployment_name: str | None = None,
        execution_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """List metrics as the SDK returns them.

        Row keys: ``name``, ``values`` (in recording order), ``created_at``,
        ``execution_id``, ``deployment_name``, ``pipeline_name``. Filters combine (AND).
        """
        where, params = _filters(name, pipeline_name, deployment_name, execution_id, table="l")
        db = self._connection()
        heads = db.execute(
            "SELECT l.name, l.created_at, l.execution_id, e.deployment_name, e.pipeline_name, l.list_id "
            "FROM lists l JOIN executions e USING (execution_id)"
            f"{where} ORDER BY e.created_at, l.execution_id, l.name",
            params,
        ).fetchall()
        return [
            {
                "name": head[0],
                "values": [value for _, value in _series(db, head[5])],
                "created_at": head[1],
                "execution_id": head[2],
                "deployment_name": head[3],
                "pipeline_name": head[4],
            }
            for head in heads
        ]

    def list_series(self, execution_id: str, name: str) -> list[tuple[int | None, Number]]:
        """One list metric of one run as ``(step, value)`` pairs, in recording order."""
        db = self._connection()
        row = db.execute(
            "SELECT list_id FROM lists WHERE execution_id = ? AND name = ?", (execution_id, name)
        ).fetchone()
        return _series(db, row[0]) if row else []


def _series(db: sqlite3.Connection, list_id: int) -> list[tuple[int | None, Number]]:
    """A list's ``(step, value)`` pairs in recording order, from its chunks."""
    pairs: list[tuple[int | None, Number]] = []
    for steps, values in db.execute(
        "SELECT steps, vals FROM list_chunks WHERE list_id = ? ORDER BY seq", (list_id,)
    ):
        pairs.extend(zip(json.loads(steps), json.loads(values), strict=True))
    return pairs


def _chunk_list_values(db: sqlite3.Connection) -> None:
    """Move a schema-1 store's one-row-per-value lists into chunks (one per list)."""
    for (list_id,) in db.execute("SELECT DISTINCT list_id FROM list_values").fetchall():
        rows = db.execute(
            "SELECT step, value FROM list_values WHERE list_id = ? ORDER BY seq", (list_id,)
        ).fetchall()
        db.execute(
            "INSERT INTO list_chunks (list_id, seq, count, steps, vals) VALUES (?, 0, ?, ?, ?)",
            (list_id, len(rows), json.dumps([row[0] for row in rows]), json.dumps([row[1] for row in rows])),
        )
    db.execute("DROP TABLE list_values")


def enable_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL, waiting out another process doing the same.

    The switch needs the file to itself, and SQLite answers "database is
    locked" at once instead of calling its busy handler, so wait here.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _checked(name: str, value: Any) -> Number:
    number = to_number(value)
    if isinstance(number, Rejected):
        raise ValueError(f"metric {name!r}: {number.reason}; only finite int or float values are metrics")
    return number


def _filters(
    name: str | None,
    pipeline_name: str | None,
    deployment_name: str | None,
    execution_id: str | None,
    table: str = "m",
) -> tuple[str, list[str]]:
    clauses: list[str] = []
    params: list[str] = []
    for column, value in (
        (f"{table}.name", name),
        ("e.pipeline_name", pipeline_name),
        ("e.deployment_name", deployment_name),
        ("e.execution_id", execution_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
