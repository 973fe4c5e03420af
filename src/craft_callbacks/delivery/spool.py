"""The durable spool: values recorded for the platform but not yet accepted by it.

One SQLite file beside the local store (``craft_metrics/spool.db`` by
default). The delivery worker writes each round's new values here *before*
sending them, and records each list's progress once the platform accepts a
request, so a crash or an outage loses nothing spooled; ``craft-callbacks
sync`` delivers what is left later.

Exactly once: for each list of each execution the spool keeps ``base`` (how
many values the platform held before this run's first one) and ``accepted``
(how many of this run's values it accepted). A crash between the platform's
acceptance and the spool's update is healed by comparing with the count the
platform reports: ``platform count - base`` values were accepted, whatever
the spool last wrote. Each round spools one row per list (its new values as
one JSON array, which Python writes and reads back exactly), so spooling
stays a few statements however fast values come. Only names, numbers and execution ids are stored: never
a token or a URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from craft_callbacks.exceptions import LocalStoreError
from craft_callbacks.sqlite_files import connect_wal, default_store_path, rows_by_group, write_transaction
from craft_callbacks.values import Number

SPOOL_FILE: Final = "spool.db"
# 1: one row per value; 2: one chunk per list per round; 3: each list's last step (resume)
SCHEMA_VERSION: Final = 3
UNVERIFIABLE: Final = -1  # a list's base when the platform would not tell its count

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS spool_lists (
        execution_id TEXT NOT NULL,
        name TEXT NOT NULL,
        base INTEGER,
        accepted INTEGER NOT NULL DEFAULT 0,
        spooled INTEGER NOT NULL DEFAULT 0,
        refused TEXT,
        owner_pid INTEGER,
        last_step INTEGER,
        PRIMARY KEY (execution_id, name)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS spool_chunks (
        execution_id TEXT NOT NULL,
        name TEXT NOT NULL,
        seq INTEGER NOT NULL,
        count INTEGER NOT NULL,
        vals TEXT NOT NULL,
        PRIMARY KEY (execution_id, name, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS spool_scalars (
        execution_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value NOT NULL,
        owner_pid INTEGER,
        PRIMARY KEY (execution_id, name)
    ) WITHOUT ROWID""",
)


def default_spool_path(store_path: str | os.PathLike[str] | None = None) -> Path:
    """The spool beside the local store: ``<store folder>/spool.db``."""
    store = Path(store_path) if store_path is not None else default_store_path()
    return store.parent / SPOOL_FILE


@dataclass
class SpooledList:
    """What the spool holds for one list of one execution."""

    execution_id: str
    name: str
    base: int | None
    accepted: int
    values: list[Number]
    owner_pid: int | None
    spooled: int = 0  # the sequence number of the next value
    last_step: int | None = None  # the step of the last value spooled


class Spool:
    """Access to one spool file; safe to use from several threads and processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():  # checked read-only first: a file refused is left as it was
                with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as check:
                    _check_schema(check, self.path)
            with self._write() as db:
                for statement in _SCHEMA:
                    db.execute(statement)
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "spool_values" in tables:
                    _chunk_spool_values(db)
                columns = {row[1] for row in db.execute("PRAGMA table_info(spool_lists)")}
                if "last_step" not in columns:
                    db.execute("ALTER TABLE spool_lists ADD COLUMN last_step INTEGER")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as error:
            self.close()
            raise LocalStoreError(f"cannot use {self.path} as the metrics spool: {error}") from error
        except LocalStoreError:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():
            self._db, self._pid = connect_wal(self.path), os.getpid()
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, write_transaction(self._connection()) as db:
            yield db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- the recording process ---------------------------------------------------

    def add(
        self,
        execution_id: str,
        lists: dict[str, tuple[int, list[Number]]],
        scalars: dict[str, Number],
        *,
        bases: dict[str, int] | None = None,
        accepted: dict[str, int] | None = None,
        last_steps: dict[str, int] | None = None,
    ) -> None:
        """Spool new values of one run, in one transaction.

        ``lists`` maps a name to (seq of its first new value, values);
        ``bases`` and ``accepted`` bring lists' bases (see :meth:`set_base`)
        and accepted counts (see :meth:`mark_accepted`) up to date in the same
        write, ``last_steps`` the step of each list's last value (a resumed run
        does not send again the steps a list already has).
        """
        pid = os.getpid()
        with self._write() as db:
            for name, base in (bases or {}).items():
                db.execute(
                    "INSERT INTO spool_lists (execution_id, name, base, owner_pid) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET base = excluded.base",
                    (execution_id, name, base, pid),
                )
            for name, (first, values) in lists.items():
                db.execute(
                    "INSERT INTO spool_lists (execution_id, name, spooled, owner_pid) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET spooled = excluded.spooled, owner_pid = excluded.owner_pid",
                    (execution_id, name, first + len(values), pid),
                )
                db.execute(
                    "INSERT OR REPLACE INTO spool_chunks (execution_id, name, seq, count, vals) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (execution_id, name, first, len(values), json.dumps(values)),
                )
            for name, count in (accepted or {}).items():
                _mark_accepted(db, execution_id, name, count)
            db.executemany(
                "UPDATE spool_lists SET last_step = ? WHERE execution_id = ? AND name = ?",
                [(step, execution_id, name) for name, step in (last_steps or {}).items()],
            )
            db.executemany(
                "INSERT INTO spool_scalars (execution_id, name, value, owner_pid) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET value = excluded.value, owner_pid = excluded.owner_pid",
                [(execution_id, name, value, pid) for name, value in scalars.items()],
            )

    def replace_pending(self, execution_id: str, name: str, accepted: int, values: list[Number]) -> None:
        """Make ``values`` the list's whole unaccepted tail, from sequence number ``accepted`` on."""
        with self._write() as db:
            db.execute(
                "DELETE FROM spool_chunks WHERE execution_id = ? AND name = ? AND seq + count > ?",
                (execution_id, name, accepted),
            )
            db.execute(
                "UPDATE spool_lists SET accepted = ?, spooled = ? WHERE execution_id = ? AND name = ?",
                (accepted, accepted + len(values), execution_id, name),
            )
            if values:
                db.execute(
                    "INSERT INTO spool_chunks (execution_id, name, seq, count, vals) VALUES (?, ?, ?, ?, ?)",
                    (execution_id, name, accepted, len(values), json.dumps(values)),
                )

    def take_over(self, execution_id: str, name: str) -> SpooledList | None:
        """Continue a list of a run in this process: its counts and the values not yet accepted.

        None while another live recorder owns it (one of this process included).
        """
        pid = os.getpid()
        with self._write() as db:
            row = db.execute(
                "SELECT base, accepted, spooled, owner_pid, last_step FROM spool_lists "
                "WHERE execution_id = ? AND name = ? AND refused IS NULL",
                (execution_id, name),
            ).fetchone()
            if row is None:
                return SpooledList(execution_id, name, None, 0, [], pid)
            base, accepted, spooled, owner, last_step = row
            if process_alive(owner):
                return None
            db.execute(
                "UPDATE spool_lists SET owner_pid = ? WHERE execution_id = ? AND name = ?",
                (pid, execution_id, name),
            )
            values = self._values(execution_id, name, accepted)
        return SpooledList(execution_id, name, base, accepted, values, pid, spooled, last_step)

    def set_base(self, execution_id: str, name: str, base: int) -> None:
        """Record how many values the platform held in this list before this run's first one."""
        with self._write() as db:
            db.execute(
                "INSERT INTO spool_lists (execution_id, name, base) VALUES (?, ?, ?) "
                "ON CONFLICT DO UPDATE SET base = excluded.base",
                (execution_id, name, base),
            )

    def mark_accepted(self, execution_id: str, name: str, accepted: int) -> None:
        """The platform holds this run's first ``accepted`` values of the list: forget them."""
        with self._write() as db:
            _mark_accepted(db, execution_id, name, accepted)

    def mark_refused(self, execution_id: str, name: str, message: str) -> None:
        """The platform refused the list for good: keep the reason, drop its values."""
        with self._write() as db:
            db.execute(
                "UPDATE spool_lists SET refused = ? WHERE execution_id = ? AND name = ?",
                (message, execution_id, name),
            )
            db.execute("DELETE FROM spool_chunks WHERE execution_id = ? AND name = ?", (execution_id, name))

    def scalar_done(self, execution_id: str, name: str, value: Number) -> None:
        """The platform accepted this scalar value (a newer one, if spooled since, stays)."""
        with self._write() as db:
            db.execute(
                "DELETE FROM spool_scalars WHERE execution_id = ? AND name = ? AND value = ?",
                (execution_id, name, value),
            )

    def release(self, execution_id: str) -> None:
        """The run is over: its leftovers (if any) now belong to ``craft-callbacks sync``.

        Each list's row stays (a few numbers): a later recorder of the same
        execution continues its counts, and a resumed one its last step.
        """
        with self._write() as db:
            db.execute("UPDATE spool_lists SET owner_pid = NULL WHERE execution_id = ?", (execution_id,))
            db.execute("UPDATE spool_scalars SET owner_pid = NULL WHERE execution_id = ?", (execution_id,))

    # -- craft-callbacks sync ----------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A read that meets damage raises one clear error naming the spool."""
        try:
            yield
        except (sqlite3.Error, ValueError) as error:
            raise LocalStoreError(f"the metrics spool {self.path} is damaged ({error})") from error

    def pending_lists(self) -> list[SpooledList]:
        """Every list that still has values to deliver, with them, in order."""
        with self._reading():
            return self._pending_lists()

    def _pending_lists(self) -> list[SpooledList]:
        db = self._connection()
        heads = db.execute(
            "SELECT execution_id, name, base, accepted, owner_pid FROM spool_lists "
            "WHERE refused IS NULL AND accepted < spooled ORDER BY execution_id, name"
        ).fetchall()
        return [
            SpooledList(
                execution_id, name, base, accepted, self._values(execution_id, name, accepted), owner_pid
            )
            for execution_id, name, base, accepted, owner_pid in heads
        ]

    def _values(self, execution_id: str, name: str, start: int) -> list[Number]:
        """A list's spooled values from sequence number ``start`` on, in order."""
        values: list[Number] = []
        for seq, chunk in self._connection().execute(
            "SELECT seq, vals FROM spool_chunks WHERE execution_id = ? AND name = ? AND seq + count > ? "
            "ORDER BY seq",
            (execution_id, name, start),
        ):
            values.extend(json.loads(chunk)[max(0, start + len(values) - seq) :])
        return values

    def pending_scalars(self) -> list[tuple[str, str, Number, int | None]]:
        """Every scalar still to deliver: (execution_id, name, value, owner pid)."""
        with self._reading():
            return (
                self._connection()
                .execute(
                    "SELECT execution_id, name, value, owner_pid FROM spool_scalars "
                    "ORDER BY execution_id, name"
                )
                .fetchall()
            )

    def refused(self) -> list[tuple[str, str, str]]:
        """Lists the platform refused for good: (execution_id, name, its message)."""
        return (
            self._connection()
            .execute("SELECT execution_id, name, refused FROM spool_lists WHERE refused IS NOT NULL")
            .fetchall()
        )


def _mark_accepted(db: sqlite3.Connection, execution_id: str, name: str, accepted: int) -> None:
    db.execute(
        "UPDATE spool_lists SET accepted = max(accepted, ?) WHERE execution_id = ? AND name = ?",
        (accepted, execution_id, name),
    )
    db.execute(
        "DELETE FROM spool_chunks WHERE execution_id = ? AND name = ? AND seq + count <= ?",
        (execution_id, name, accepted),
    )


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not a spool of a version this package reads (one clear error)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LocalStoreError(
            f"the metrics spool {path} was written by a newer craft_callbacks (schema {version}, "
            f"this one reads up to {SCHEMA_VERSION}); upgrade the package to deliver it"
        )
    problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        found = " ".join(" ".join(problems).replace("*** in database main ***", "").split())
        raise LocalStoreError(f"the metrics spool {path} is damaged ({found})")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and not tables & (_TABLES | {"spool_values"}):
        raise LocalStoreError(f"{path} is an SQLite database but not a craft_callbacks metrics spool")
    for table in tables & _TABLES:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not columns >= _COLUMNS[table]:
            raise LocalStoreError(
                f"the metrics spool {path} is damaged: table {table} lacks "
                f"{', '.join(sorted(_COLUMNS[table] - columns))}"
            )


_TABLES: Final = frozenset({"spool_lists", "spool_chunks", "spool_scalars"})
_COLUMNS: Final = {
    "spool_lists": frozenset({"execution_id", "name", "base", "accepted", "spooled", "refused", "owner_pid"}),
    "spool_chunks": frozenset({"execution_id", "name", "seq", "count", "vals"}),
    "spool_scalars": frozenset({"execution_id", "name", "value", "owner_pid"}),
}


def _chunk_spool_values(db: sqlite3.Connection) -> None:
    """Move an older spool's one-row-per-value lists into chunks (one per list)."""
    for (execution_id, name), rows in rows_by_group(
        db, "spool_values", ("execution_id", "name"), ("seq", "value")
    ):
        db.execute(
            "INSERT OR REPLACE INTO spool_chunks (execution_id, name, seq, count, vals) "
            "VALUES (?, ?, ?, ?, ?)",
            (execution_id, name, rows[0][0], len(rows), json.dumps([row[1] for row in rows])),
        )
    db.execute("DROP TABLE spool_values")


def process_alive(pid: int | None) -> bool:
    """Whether process ``pid`` still runs (this one included); False for None."""
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
