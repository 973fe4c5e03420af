"""SQLite plumbing shared by the local store and the spool: where they live, how they open and write.

Both are SQLite files in WAL mode that several threads and processes write:
one connection setting (a busy timeout that waits out other writers, no
implicit transactions), one way into WAL, one write transaction
(``BEGIN IMMEDIATE``, rolled back on any error), and one helper for the
migration of their old one-row-per-value tables into chunks.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from craft_callbacks.defaults import STORE_ENV

DEFAULT_STORE_PATH: Final = Path("craft_metrics") / "metrics.db"
BUSY_TIMEOUT_S: Final = 60.0


def default_store_path() -> Path:
    """The default store: ``$CRAFT_CALLBACKS_STORE``, else ``./craft_metrics/metrics.db``."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE_PATH)


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection any thread may use, that waits out other writers and opens no transaction by itself."""
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)


def connect_wal(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """:func:`connect`, in WAL mode with ``synchronous=NORMAL`` (durable at each checkpoint, fast)."""
    db = connect(path)
    try:
        enable_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def enable_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL, waiting out another process doing the same.

    The switch needs the file to itself, and SQLite answers "database is
    locked" at once instead of calling its busy handler, so wait here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` (the busy timeout waits out other writers),
    committed at the end, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if db.in_transaction:
        db.execute("COMMIT")


def rows_by_group(
    db: sqlite3.Connection, table: str, group: tuple[str, ...], columns: tuple[str, ...]
) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """An old one-row-per-value table, one group (a list) at a time, its rows in ``seq`` order.

    For the migrations that move such tables into chunks; ``table`` and the
    column names are this package's own, never user input.
    """
    keys = ", ".join(group)
    where = " AND ".join(f"{column} = ?" for column in group)
    selected = ", ".join(columns)
    for key in db.execute(f"SELECT DISTINCT {keys} FROM {table}").fetchall():
        rows = db.execute(f"SELECT {selected} FROM {table} WHERE {where} ORDER BY seq", key).fetchall()
        yield tuple(key), rows
