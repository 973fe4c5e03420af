"""LocalStore: the embedded metrics store, one SQLite file (WAL) holding many runs.

It is a sink (the SDK's two recording methods) and answers ``get_metrics`` /
``get_list_metrics`` with the SDK's signature and row keys, so analysis code
runs the same on local and platform data. It also keeps what the platform has
no place for: each list value's step, each run's status and hyperparameters.
Several processes may write one store at once: SQLite's WAL and a busy
timeout serialise them, and nothing is lost.

A store is checked when it is opened: SQLite's header, ``PRAGMA quick_check``
(files up to 256 MiB), the schema version (``PRAGMA user_version``) and every
table and column. A damaged, foreign, newer or altered file is refused with one
:class:`~craft_callbacks.exceptions.LocalStoreError` when the user chose the
path; the default store is never refused: the metrics go to a fresh store
beside it (or in a temporary folder), with one warning naming it. A store
deleted or replaced while a run records is re-created at its path with the
run's values carried over, with one warning: SQLite keeps writing into an
unlinked file without a word, and the values would vanish with the process.

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
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache, partial
from pathlib import Path
from typing import Any, Final, TypeVar

from craft_callbacks.defaults import STORE_ENV
from craft_callbacks.exceptions import DeliveryWarning, LocalStoreError, RunNotFoundError
from craft_callbacks.sqlite_files import (
    BUSY_TIMEOUT_S,
    DEFAULT_STORE_PATH,
    connect,
    default_store_path,
    enable_wal,
    rows_by_group,
    write_transaction,
)
from craft_callbacks.values import Number, Rejected, to_number

SCHEMA_VERSION: Final = 2
_SQLITE_HEADER: Final = b"SQLite format 3\x00"
# quick_check reads every page (about 0.5 s per GiB from cache); past this size only the
# header, the version and the schema are checked when a store opens.
_QUICK_CHECK_MAX_BYTES: Final = 256 * 2**20
_FALLBACKS_BESIDE: Final = 9  # metrics.1.db ... metrics.9.db beside an unusable default store

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
# Schema 1 kept one row per list value; opening such a store moves them into chunks.
_SCHEMA_1_VALUES: Final = ("list_values", frozenset({"list_id", "seq", "step", "value"}))

ListBatch = tuple[str, Sequence[int | None], Sequence[Number]]


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


@dataclass
class _Anchor:
    """The connection that holds the store's file open in this process, and which file it is.

    Only :meth:`LocalStore._open_and_check` and the recovery of a deleted store
    use it, under the store's guard: it still reads the file after the path is
    unlinked, so the run's values can be carried over to the re-created store.
    """

    pid: int
    db: sqlite3.Connection
    identity: tuple[int, int] | None


class LocalStore:
    """A metrics store in one SQLite file; a sink that also answers the SDK's reads.

    ``LocalStore(path)`` (or ``$CRAFT_CALLBACKS_STORE``) opens or creates the
    store the user chose; a bad one (a directory, a read-only location, a file
    that is damaged, not a store, from a newer version or whose tables were
    changed) raises :class:`~craft_callbacks.exceptions.LocalStoreError` here,
    at creation, never later in the middle of training.

    ``LocalStore()`` with neither opens the default store,
    ``./craft_metrics/metrics.db``, and never raises for a bad one (only when
    no store can be made anywhere, not even in a temporary folder): one
    :class:`~craft_callbacks.exceptions.DeliveryWarning` says why it cannot be
    used and names the store used instead (``metrics.1.db`` beside it, or one
    in a temporary folder); the bad file is left as it is. ``path`` is the
    store in use.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        chosen = path if path is not None else os.environ.get(STORE_ENV) or None
        self.path = Path(chosen) if chosen is not None else DEFAULT_STORE_PATH
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._guard = threading.RLock()
        self._anchor: _Anchor | None = None
        self._generation = 0
        self._runs: set[str] = set()
        self._current: str | None = None
        if chosen is not None:
            self._open_and_check()
        else:
            self._open_default()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    @classmethod
    def existing(cls, path: str | os.PathLike[str] | None = None) -> LocalStore:
        """Open a store that must already exist (for reading: never creates a file)."""
        where = Path(path) if path is not None else default_store_path()
        if where.is_dir():
            raise LocalStoreError(f"metrics store path {where} is a directory; give a file path")
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
        self._guard = threading.RLock()
        self._anchor = None
        self._generation = 0
        self._runs = set()

    # -- opening and checking ------------------------------------------------

    def _open_default(self) -> None:
        """Open the default store or, when it cannot be used, a fresh one beside it or in a temp folder."""
        try:
            self._open_and_check()
            return
        except LocalStoreError as error:
            problem = error
        wanted = self.path
        for candidate in _fallback_paths(wanted):
            self.path = candidate
            try:
                self._open_and_check()
            except LocalStoreError:
                continue
            warnings.warn(
                f"craft_callbacks: {problem}. The default store is left as it is; the metrics go to "
                f"{candidate} instead (see them with: craft-callbacks runs --store {candidate})",
                DeliveryWarning,
                stacklevel=3,
            )
            return
        self.path = wanted
        raise problem

    def _open_and_check(self) -> None:
        """Open the file, check it is a sound store this version can read, create or upgrade its tables.

        The connection that checked becomes the anchor: it keeps this very
        file open, so :meth:`_follow_file` can tell when the path no longer
        leads to it.
        """
        where = self.path
        if where.is_dir():
            raise LocalStoreError(f"metrics store path {where} is a directory; give a file path")
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LocalStoreError(
                f"cannot create the folder of the metrics store {where}: {error.strerror or error}"
            ) from error
        _check_header(where)
        db = self._new_connection()
        try:
            _check_pages(db, where)
            with write_transaction(db):
                _check_and_create_schema(db, where)
            enable_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            # A read in WAL mode opens the WAL and its index: from then on this connection
            # reads the file even if its path (and those of the WAL files) is unlinked.
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as error:
            db.close()
            raise LocalStoreError(f"cannot use {where} as a metrics store: {error}") from error
        except BaseException:
            db.close()
            raise
        with self._guard:
            self._anchor = _Anchor(os.getpid(), db, _identity(where))
        with self._lock:
            self._connections.append(db)

    # -- connection handling -------------------------------------------------

    def _new_connection(self) -> sqlite3.Connection:
        try:
            return connect(self.path)
        except sqlite3.Error as error:
            raise LocalStoreError(f"cannot open metrics store {self.path}: {error}") from error

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork, or once the store was re-created)."""
        key = (os.getpid(), self._generation)
        cached = getattr(self._local, "connection", None)
        if cached is not None and cached[0] == key:
            connection: sqlite3.Connection = cached[1]
            return connection
        if cached is not None and cached[0][0] == key[0]:  # to a file that is gone: let it go
            self._forget(cached[1])
        db = self._new_connection()
        try:
            enable_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as error:
            db.close()
            raise LocalStoreError(f"cannot use {self.path} as a metrics store: {error}") from error
        self._local.connection = (key, db)
        with self._lock:
            self._connections.append(db)
        return db

    def _forget(self, db: sqlite3.Connection) -> None:
        with self._lock:
            if db in self._connections:
                self._connections.remove(db)
        with suppress(sqlite3.Error):
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite's busy timeout waits out other writers.

        Any SQLite failure (a full disk, an I/O error, a file damaged since it
        was opened) is a :class:`LocalStoreError`: a local fault, which waiting
        does not mend.
        """
        try:
            self._follow_file()
            with write_transaction(self._connection()) as db:
                yield db
        except sqlite3.Error as error:
            raise LocalStoreError(f"cannot write to the metrics store {self.path}: {error}") from error

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for reads; a damaged file is a ``LocalStoreError``, not a traceback."""
        try:
            yield self._connection()
        except (sqlite3.DatabaseError, ValueError) as error:
            raise LocalStoreError(f"cannot read the metrics store {self.path}: {error}") from error

    def _follow_file(self) -> None:
        """Before a write: make sure the path still leads to the file this store has open.

        When it does not (the file or its folder was deleted, or another file
        put in its place), the store is re-created at the path (or, if that
        cannot be, in a temporary folder) and the runs written through this
        object are copied there from the old file, which the anchor still has
        open; one warning says where they are now.
        """
        with self._guard:
            anchor = self._anchor
            if anchor is None or anchor.pid != os.getpid():
                self._open_and_check()  # after close(), a fork or unpickling
                return
            try:
                found = os.stat(self.path)
            except (FileNotFoundError, NotADirectoryError):
                pass
            except OSError:
                return  # cannot tell (a folder made unreadable): the open file still takes writes
            else:
                if anchor.identity is None or (found.st_dev, found.st_ino) == anchor.identity:
                    return
            self._recover(anchor)

    def _recover(self, old: _Anchor) -> None:
        """Re-create the store and carry this object's runs over from the unlinked file ``old`` holds.

        The runs are read before anything is made at the path: once a new file
        (and its WAL) is there, SQLite no longer reads the old one.
        """
        where = self.path
        old.db.execute("BEGIN")
        try:
            saved = [run for run in map(partial(_saved_run, old.db), sorted(self._runs)) if run]
        finally:
            if old.db.in_transaction:
                old.db.execute("ROLLBACK")
        try:
            self._open_and_check()
            how = f"it was re-created at {where}"
        except LocalStoreError as error:
            try:
                self.path = Path(tempfile.mkdtemp(prefix="craft_metrics-")) / where.name
                self._open_and_check()
            except (OSError, LocalStoreError) as no_temp:
                self.path = where
                raise LocalStoreError(
                    f"the metrics store {where} was deleted during the run and cannot be re-created "
                    f"({error}), nor made in a temporary folder ({no_temp})"
                ) from error
            how = f"it cannot be re-created there ({error}), so a new store was made at {self.path}"
        new = self._anchor
        assert new is not None
        with write_transaction(new.db):
            copied = [run.row[0] for run in saved if run.insert_into(new.db)]
        self._forget(old.db)
        self._generation += 1
        if copied:  # none: the file at the path already holds these runs (nothing to tell)
            warnings.warn(
                f"craft_callbacks: the metrics store {where} was deleted or replaced while recording; "
                f"{how}, with every value recorded so far of run {', '.join(copied)}, and recording "
                "goes on there",
                DeliveryWarning,
                stacklevel=2,
            )

    def close(self) -> None:
        """Close this process's connections to the file (the store stays usable: it reopens)."""
        with self._guard:
            self._anchor = None
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
        """Create a run and make it the one the SDK-style recording methods write to.

        An ``execution_id`` the store already holds continues that run: it is
        ``running`` again, and keeps its name, creation time and values.
        """
        execution_id = execution_id or new_execution_id()
        if pipeline_name is None:
            pipeline_name = default_pipeline_name()
        with self._write() as db:
            db.execute(
                "INSERT INTO executions (execution_id, pipeline_name, deployment_name, created_at, "
                "hyperparameters) VALUES (?, ?, ?, ?, ?) ON CONFLICT (execution_id) DO UPDATE SET "
                "status = 'running', ended_at = NULL",
                (
                    execution_id,
                    pipeline_name,
                    deployment_name,
                    utc_now(),
                    json.dumps(jsonable(dict(hyperparameters or {}))),
                ),
            )
        self._runs.add(execution_id)
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
        self._runs.add(execution_id)
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
        self._runs.add(execution_id)
        with self._write() as db:
            db.execute(
                "UPDATE executions SET status = ?, ended_at = ? WHERE execution_id = ?",
                (status, utc_now(), execution_id),
            )

    def executions(self) -> list[dict[str, Any]]:
        """Every run, in the order they were created, with its status and hyperparameters."""
        with self._reading() as db:
            return select_executions(db)

    def find_run(self, reference: str) -> dict[str, Any]:
        """A run by its id, a unique prefix of its id, or ``latest``."""
        return match_run(self.executions(), reference, self.path)

    # -- writing ---------------------------------------------------------------

    def write(
        self,
        execution_id: str,
        lists: Iterable[ListBatch] = (),
        scalars: Mapping[str, Number] | None = None,
    ) -> None:
        """Append list values (with their steps) and set scalars, in one transaction."""
        now = utc_now()
        self._runs.add(execution_id)
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
        with self._reading() as db:
            rows = db.execute(
                "SELECT m.name, m.value, m.created_at, m.execution_id, e.deployment_name, e.pipeline_name "
                "FROM metrics m JOIN executions e USING (execution_id)"
                f"{where} ORDER BY e.created_at, m.execution_id, m.name",
                params,
            ).fetchall()
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
        with self._reading() as db:
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

    def list_counts(self, execution_id: str) -> dict[str, int]:
        """How many values each list metric of a run holds."""
        with self._reading() as db:
            return dict(
                db.execute(
                    "SELECT l.name, COALESCE(SUM(c.count), 0) FROM lists l LEFT JOIN list_chunks c "
                    "USING (list_id) WHERE l.execution_id = ? GROUP BY l.name",
                    (execution_id,),
                ).fetchall()
            )

    def forget_after(self, execution_id: str, step: int) -> int:
        """Remove a run's list values recorded at steps after ``step`` (a resumed run records them
        again); returns how many were removed. Values without a step are kept."""
        removed = 0
        with self._write() as db:
            chunks = db.execute(
                "SELECT c.list_id, c.seq, c.steps, c.vals FROM list_chunks c JOIN lists l USING (list_id) "
                "WHERE l.execution_id = ? ORDER BY c.list_id, c.seq",
                (execution_id,),
            ).fetchall()
            for list_id, seq, steps_text, values_text in chunks:
                pairs = list(zip(json.loads(steps_text), json.loads(values_text), strict=True))
                kept = [(at, value) for at, value in pairs if at is None or at <= step]
                if len(kept) == len(pairs):
                    continue
                removed += len(pairs) - len(kept)
                db.execute("DELETE FROM list_chunks WHERE list_id = ? AND seq = ?", (list_id, seq))
                if kept:
                    db.execute(
                        "INSERT INTO list_chunks (list_id, seq, count, steps, vals) VALUES (?, ?, ?, ?, ?)",
                        (
                            list_id,
                            seq,
                            len(kept),
                            json.dumps([at for at, _ in kept]),
                            json.dumps([value for _, value in kept]),
                        ),
                    )
        return removed

    def list_series(self, execution_id: str, name: str) -> list[tuple[int | None, Number]]:
        """One list metric of one run as ``(step, value)`` pairs, in recording order."""
        with self._reading() as db:
            row = db.execute(
                "SELECT list_id FROM lists WHERE execution_id = ? AND name = ?", (execution_id, name)
            ).fetchone()
            return _series(db, row[0]) if row else []


def match_run(runs: Sequence[Mapping[str, Any]], reference: str, where: object) -> dict[str, Any]:
    """The run of ``runs`` that ``reference`` names: its id, a unique prefix of its id, or ``latest``."""
    if not runs:
        raise RunNotFoundError(f"the store {where} has no runs yet")
    if reference == "latest":
        return dict(runs[-1])
    for run in runs:
        if run["execution_id"] == reference:
            return dict(run)
    matches = [run for run in runs if reference and run["execution_id"].startswith(reference)]
    if not matches:
        raise RunNotFoundError(f"no run {reference!r} in {where} (see: craft-callbacks runs)")
    if len(matches) > 1:
        shown = ", ".join(run["execution_id"] for run in matches[:3])
        raise RunNotFoundError(
            f"{reference!r} matches {len(matches)} runs ({shown}{', ...' if len(matches) > 3 else ''}); "
            "give more characters"
        )
    return dict(matches[0])


_T = TypeVar("_T")
_READ_ATTEMPTS: Final = 3


@dataclass
class SeriesColumns:
    """A list read for a chart: its steps and values (maybe only those near a step range), how many
    values the whole list holds, and its highest step."""

    steps: list[int]
    values: list[Number]
    total: int
    last_step: int | None


class ReadOnlyStore:
    """A store opened only to read it (``craft-callbacks ui`` and ``report``): it never creates,
    upgrades, checkpoints or writes a file, and sees what running trainings add.

    Each :meth:`read` opens a connection of its own, closed at its end, and reads
    one snapshot. How it opens depends on the WAL file beside the store:

    * ``metrics.db-wal`` exists (a process has the store open, or left it so):
      SQLite's ``mode=ro``, which reads the WAL and takes the shared-memory
      locks as every reader does;
    * it does not: no process has the store open, and ``mode=ro`` would create
      ``-wal`` and ``-shm`` files (a read-only connection cannot delete them
      again), so the file is read as ``immutable``, without locks. Should a
      writer change the file during that read (its checkpoint on close), the
      file's size or time differ afterwards, and the read starts again.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        if self.path.is_dir():
            raise LocalStoreError(f"metrics store path {self.path} is a directory; give a file path")
        if not self.path.is_file():
            raise LocalStoreError(
                f"no metrics store at {self.path} (record a run first, or give --store PATH)"
            )
        _check_header(self.path)
        self.read(partial(_check_readable_schema, where=self.path))

    def __repr__(self) -> str:
        return f"ReadOnlyStore({str(self.path)!r})"

    def read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        """``query(connection)`` on one snapshot of the store; SQLite's faults as ``LocalStoreError``."""
        wal = self.path.with_name(self.path.name + "-wal")
        uri = self.path.resolve().as_uri()
        for _ in range(_READ_ATTEMPTS):
            live = wal.exists()
            before = _stamp(self.path)
            try:
                db = sqlite3.connect(
                    f"{uri}?{'mode=ro' if live else 'immutable=1'}",
                    uri=True,
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as error:
                raise LocalStoreError(f"cannot open the metrics store {self.path}: {error}") from error
            try:
                db.execute("BEGIN")
                result = query(db)
            except (sqlite3.DatabaseError, ValueError) as error:
                if not live and _stamp(self.path) != before:
                    continue  # a writer changed the file under a lock-free read: read again
                raise LocalStoreError(f"cannot read the metrics store {self.path}: {error}") from error
            finally:
                db.close()
            if live or _stamp(self.path) == before:
                return result
        raise LocalStoreError(f"the metrics store {self.path} changed during each of {_READ_ATTEMPTS} reads")

    def executions(self) -> list[dict[str, Any]]:
        """Every run, in the order they were created (as :meth:`LocalStore.executions`)."""
        return self.read(select_executions)

    def find_run(self, reference: str) -> dict[str, Any]:
        """A run by its id, a unique prefix of its id, or ``latest``."""
        return match_run(self.executions(), reference, self.path)

    def series_columns(self, execution_id: str, name: str) -> SeriesColumns | None:
        """One list of one run (see :func:`select_series_columns`), or None when it has no such list."""
        return self.read(partial(select_series_columns, execution_id=execution_id, name=name))


def select_executions(db: sqlite3.Connection, execution_id: str | None = None) -> list[dict[str, Any]]:
    """The runs (or only ``execution_id``) in creation order, as :meth:`LocalStore.executions` gives them."""
    where, params = (" WHERE execution_id = ?", (execution_id,)) if execution_id is not None else ("", ())
    rows = db.execute(
        "SELECT execution_id, pipeline_name, deployment_name, created_at, ended_at, status, "
        f"hyperparameters FROM executions{where} ORDER BY rowid",
        params,
    ).fetchall()
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


def select_scalars(db: sqlite3.Connection, execution_id: str | None = None) -> dict[str, dict[str, Number]]:
    """Each run's scalars, ``{run: {name: value}}``, in one query (every run, or only ``execution_id``)."""
    where, params = (" WHERE execution_id = ?", (execution_id,)) if execution_id is not None else ("", ())
    scalars: dict[str, dict[str, Number]] = {}
    for run, name, value in db.execute(
        f"SELECT execution_id, name, value FROM metrics{where} ORDER BY execution_id, name", params
    ):
        scalars.setdefault(run, {})[name] = value
    return scalars


def select_list_counts(db: sqlite3.Connection, execution_id: str | None = None) -> dict[str, dict[str, int]]:
    """How many values each list holds, ``{run: {name: count}}``: the chunks' counts summed, no value decoded.

    One scan of the chunks, grouped, then joined to the lists. A search of one
    list's chunks by its key would compare each chunk's whole row (its steps and
    values, in overflow pages): 200 lists of 50,000 values take a second that way.
    """
    where, params = (" WHERE l.execution_id = ?", (execution_id,)) if execution_id is not None else ("", ())
    counts: dict[str, dict[str, int]] = {}
    for run, name, count in db.execute(
        "SELECT l.execution_id, l.name, COALESCE(t.total, 0) FROM lists l LEFT JOIN "
        "(SELECT list_id, SUM(count) AS total FROM list_chunks GROUP BY list_id) t USING (list_id)"
        f"{where} ORDER BY l.execution_id, l.name",
        params,
    ):
        counts.setdefault(run, {})[name] = count
    return counts


def select_series_columns(
    db: sqlite3.Connection,
    execution_id: str,
    name: str,
    start: float | None = None,
    end: float | None = None,
    after: float | None = None,
) -> SeriesColumns | None:
    """One list of one run in recording order, or None when there is no such list. A value recorded
    without a step stands at its index in the list.

    With ``start``, ``end`` or ``after``, a chunk none of whose steps is in
    ``[start, end]`` and above ``after`` is left out without decoding its values
    (the caller still filters the points of the chunks kept); ``total`` and
    ``last_step`` are those of the whole list.
    """
    row = db.execute(
        "SELECT list_id FROM lists WHERE execution_id = ? AND name = ?", (execution_id, name)
    ).fetchone()
    if row is None:
        return None
    low = start if after is None else after if start is None else max(start, after)
    steps: list[int] = []
    values: list[Number] = []
    total = 0
    last_step: int | None = None
    for steps_text, values_text in db.execute(
        "SELECT steps, vals FROM list_chunks WHERE list_id = ? ORDER BY seq", (row[0],)
    ):
        chunk_steps = json.loads(steps_text)
        if not chunk_steps:
            continue
        if None in chunk_steps:
            chunk_steps = [total + index if step is None else step for index, step in enumerate(chunk_steps)]
        total += len(chunk_steps)
        highest = max(chunk_steps)
        last_step = highest if last_step is None else max(last_step, highest)
        if low is not None or end is not None:
            if (low is not None and highest < low) or (end is not None and min(chunk_steps) > end):
                continue
            if after is not None and highest <= after:
                continue
        chunk_values = json.loads(values_text)
        if len(chunk_steps) != len(chunk_values):
            raise ValueError(f"list {name!r} of run {execution_id!r} has a chunk of unequal steps and values")
        steps.extend(chunk_steps)
        values.extend(chunk_values)
    return SeriesColumns(steps, values, total, last_step)


def select_list_summaries(db: sqlite3.Connection, execution_id: str) -> list[dict[str, Any]]:
    """Each list of a run, by name: ``count``, ``first``, ``last``, ``min``, ``max`` and the steps of its
    first and last values (a value without a step counts as its index). Only the first and the last
    chunk's steps are decoded."""
    summaries = []
    for list_id, name in db.execute(
        "SELECT list_id, name FROM lists WHERE execution_id = ? ORDER BY name", (execution_id,)
    ).fetchall():
        count = 0
        low: Number | None = None
        high: Number | None = None
        first: tuple[str, list[Number]] | None = None
        last: tuple[str, list[Number], int] | None = None
        for steps_text, values_text in db.execute(
            "SELECT steps, vals FROM list_chunks WHERE list_id = ? ORDER BY seq", (list_id,)
        ):
            values = json.loads(values_text)
            if not values:
                continue
            low = min(values) if low is None else min(low, *values)
            high = max(values) if high is None else max(high, *values)
            if first is None:
                first = (steps_text, values)
            last = (steps_text, values, count)
            count += len(values)
        summary: dict[str, Any] = {"name": name, "count": count}
        if first is None or last is None:
            summary.update(dict.fromkeys(("first", "last", "min", "max", "first_step", "last_step")))
        else:
            first_step = json.loads(first[0])[0]
            last_step = json.loads(last[0])[-1]
            summary.update(
                first=first[1][0],
                last=last[1][-1],
                min=low,
                max=high,
                first_step=0 if first_step is None else first_step,
                last_step=last[2] + len(last[1]) - 1 if last_step is None else last_step,
            )
        summaries.append(summary)
    return summaries


def _stamp(where: Path) -> tuple[int, int, int] | None:
    """What tells that a file changed: its inode, size and modification time."""
    try:
        found = os.stat(where)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def _check_readable_schema(db: sqlite3.Connection, where: Path) -> None:
    """Refuse, without changing anything, a file this version cannot read as a store."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LocalStoreError(
            f"metrics store {where} was written by a newer craft_callbacks "
            f"(schema {version}, this one reads {SCHEMA_VERSION}); upgrade the package"
        )
    found = _columns(db)
    if version == 0 and not set(found) >= _TABLES:
        raise LocalStoreError(f"{where} is an SQLite database but not a craft_callbacks metrics store")
    if version < SCHEMA_VERSION:
        raise LocalStoreError(
            f"the metrics store {where} is from an older craft_callbacks (schema {version}); "
            f"upgrade it once with: craft-callbacks runs --store {where}"
        )
    missing = [
        f"{table}.{column}"
        for table, columns in sorted(_expected_columns().items())
        for column in sorted(columns - found.get(table, frozenset()))
    ]
    if missing:
        raise LocalStoreError(
            f"the metrics store {where} had its tables changed (missing: {', '.join(missing)}); "
            "it cannot be read safely"
        )


def _series(db: sqlite3.Connection, list_id: int) -> list[tuple[int | None, Number]]:
    """A list's ``(step, value)`` pairs in recording order, from its chunks."""
    pairs: list[tuple[int | None, Number]] = []
    for steps, values in db.execute(
        "SELECT steps, vals FROM list_chunks WHERE list_id = ? ORDER BY seq", (list_id,)
    ):
        pairs.extend(zip(json.loads(steps), json.loads(values), strict=True))
    return pairs


def _check_header(where: Path) -> None:
    """A file that exists and is not empty must start with SQLite's header (else: not a store, or damaged)."""
    try:
        with open(where, "rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as error:
        raise LocalStoreError(f"cannot read the metrics store {where}: {error.strerror or error}") from error
    if head and head != _SQLITE_HEADER:
        raise LocalStoreError(
            f"{where} is not a craft_callbacks metrics store: it does not start with SQLite's header "
            "(another kind of file, or a damaged store)"
        )


def _check_pages(db: sqlite3.Connection, where: Path) -> None:
    """``PRAGMA quick_check`` on a store small enough to read whole at open: damage found now, not mid-run."""
    with suppress(OSError):
        if where.stat().st_size > _QUICK_CHECK_MAX_BYTES:
            return
    try:
        found = [" ".join(str(row[0]).split()) for row in db.execute("PRAGMA quick_check(3)")]
    except sqlite3.OperationalError:
        raise  # locked, or an I/O error: not a verdict on the file
    except sqlite3.DatabaseError as error:
        found = [str(error)]
    if found != ["ok"]:
        raise LocalStoreError(f"the metrics store {where} is damaged (SQLite's check: {'; '.join(found)})")


def _check_and_create_schema(db: sqlite3.Connection, where: Path) -> None:
    """Refuse a store this version cannot read safely; create a new store's tables, upgrade an old one's.

    In the caller's write transaction, so that several processes creating one
    store at once all succeed.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LocalStoreError(
            f"metrics store {where} was written by a newer craft_callbacks "
            f"(schema {version}, this one reads {SCHEMA_VERSION}); upgrade the package"
        )
    found = _columns(db)
    if found and version == 0 and not set(found) >= _TABLES:
        raise LocalStoreError(f"{where} is an SQLite database but not a craft_callbacks metrics store")
    if found or version:
        expected = dict(_expected_columns())
        if version == 1:
            del expected["list_chunks"]
            table, columns = _SCHEMA_1_VALUES
            expected[table] = columns
        changes = [f"table {table} is missing" for table in sorted(expected) if table not in found]
        changes += [
            f"column {table}.{column} is missing"
            for table in sorted(expected)
            if table in found
            for column in sorted(expected[table] - found[table])
        ]
        if changes:
            raise LocalStoreError(
                f"the metrics store {where} (schema {version}) had its tables changed "
                f"({', '.join(changes)}); it cannot be read or written safely"
            )
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    if _SCHEMA_1_VALUES[0] in found:
        _chunk_list_values(db)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _columns(db: sqlite3.Connection) -> dict[str, frozenset[str]]:
    """Each table of a database and its column names."""
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {
        table: frozenset(row[1] for row in db.execute("SELECT * FROM pragma_table_info(?)", (table,)))
        for table in tables
    }


@cache
def _expected_columns() -> dict[str, frozenset[str]]:
    """The tables and columns of the current schema, read from ``_SCHEMA`` itself."""
    with closing(sqlite3.connect(":memory:")) as db:
        db.executescript(_SCHEMA)
        return _columns(db)


def _identity(where: Path) -> tuple[int, int] | None:
    """Which file a path leads to (device and inode), or None if it cannot be told."""
    try:
        found = os.stat(where)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _fallback_paths(wanted: Path) -> Iterator[Path]:
    """Where the metrics go when the default store cannot be used: beside it, else a temporary folder."""
    if wanted.parent.is_dir():
        for number in range(1, _FALLBACKS_BESIDE + 1):
            yield wanted.with_name(f"{wanted.stem}.{number}{wanted.suffix}")
    with suppress(OSError):
        yield Path(tempfile.mkdtemp(prefix="craft_metrics-")) / wanted.name


@dataclass
class _SavedRun:
    """One run read out of a store: its row, scalars, and lists with their chunks."""

    row: tuple[Any, ...]
    scalars: list[tuple[Any, ...]]
    lists: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]

    def insert_into(self, target: sqlite3.Connection) -> bool:
        """Add the run to ``target``; False if it already has a run of that id (kept as it is)."""
        inserted = target.execute(
            "INSERT INTO executions (execution_id, pipeline_name, deployment_name, created_at, ended_at, "
            "status, hyperparameters) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (execution_id) DO NOTHING",
            self.row,
        ).rowcount
        if not inserted:
            return False
        target.executemany(
            "INSERT INTO metrics (execution_id, name, value, created_at) VALUES (?, ?, ?, ?)", self.scalars
        )
        for head, chunks in self.lists:
            list_id = target.execute(
                "INSERT INTO lists (execution_id, name, created_at) VALUES (?, ?, ?)", head
            ).lastrowid
            target.executemany(
                "INSERT INTO list_chunks (list_id, seq, count, steps, vals) VALUES (?, ?, ?, ?, ?)",
                [(list_id, *chunk) for chunk in chunks],
            )
        return True


def _saved_run(source: sqlite3.Connection, execution_id: str) -> _SavedRun | None:
    """Everything ``source`` holds of one run, or None if it has no such run."""
    row = source.execute(
        "SELECT execution_id, pipeline_name, deployment_name, created_at, ended_at, status, hyperparameters "
        "FROM executions WHERE execution_id = ?",
        (execution_id,),
    ).fetchone()
    if row is None:
        return None
    scalars = source.execute(
        "SELECT execution_id, name, value, created_at FROM metrics WHERE execution_id = ?", (execution_id,)
    ).fetchall()
    lists = [
        (
            (execution_id, name, created_at),
            source.execute(
                "SELECT seq, count, steps, vals FROM list_chunks WHERE list_id = ? ORDER BY seq", (list_id,)
            ).fetchall(),
        )
        for list_id, name, created_at in source.execute(
            "SELECT list_id, name, created_at FROM lists WHERE execution_id = ?", (execution_id,)
        ).fetchall()
    ]
    return _SavedRun(row, scalars, lists)


def _chunk_list_values(db: sqlite3.Connection) -> None:
    """Move a schema-1 store's one-row-per-value lists into chunks (one per list)."""
    for (list_id,), rows in rows_by_group(db, "list_values", ("list_id",), ("step", "value")):
        db.execute(
            "INSERT INTO list_chunks (list_id, seq, count, steps, vals) VALUES (?, 0, ?, ?, ?)",
            (list_id, len(rows), json.dumps([row[0] for row in rows]), json.dumps([row[1] for row in rows])),
        )
    db.execute("DROP TABLE list_values")


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
