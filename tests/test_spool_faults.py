"""A damaged, foreign, newer or altered spool: one clear message, and delivery goes on without it."""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from craft_callbacks import DeliveryWarning, MetricRecorder
from craft_callbacks.cli import main as cli_main
from craft_callbacks.delivery.spool import SCHEMA_VERSION, Spool
from platform_emulator import PlatformEmulator

SPOOL = Path("craft_metrics") / "spool.db"
EXECUTION = "exec-test-1"


def _healthy() -> None:
    spool = Spool(SPOOL)
    spool.add("exec-old", {"loss": (0, [float(index) for index in range(2_000)])}, {})
    spool.release("exec-old")
    spool.close()


def _newer() -> None:
    _healthy()
    with sqlite3.connect(SPOOL) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()


def _foreign() -> None:
    SPOOL.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(SPOOL) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    db.close()


def _altered() -> None:
    _healthy()
    with sqlite3.connect(SPOOL) as db:
        db.execute("ALTER TABLE spool_lists RENAME COLUMN accepted TO acked")
    db.close()


def _garbage() -> None:
    SPOOL.parent.mkdir(parents=True, exist_ok=True)
    SPOOL.write_bytes(b"not a database at all " * 100)


def _damaged_pages() -> None:
    _healthy()
    data = bytearray(SPOOL.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # the b-tree header of every page after the first
        data[offset : offset + 8] = b"\xff" * 8
    SPOOL.write_bytes(bytes(data))


FAULTS: dict[str, Callable[[], None]] = {
    "newer": _newer,
    "foreign": _foreign,
    "altered": _altered,
    "garbage": _garbage,
    "damaged pages": _damaged_pages,
}


def test_a_new_spool_carries_the_schema_version() -> None:
    Spool(SPOOL).close()
    with sqlite3.connect(SPOOL) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()


@pytest.mark.parametrize("fault", FAULTS)
def test_sync_answers_a_bad_spool_with_one_line_and_status_2(
    fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    FAULTS[fault]()
    before = SPOOL.read_bytes()
    assert cli_main(["sync", "--spool", str(SPOOL)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert str(SPOOL) in lines[0] and "spool" in lines[0]
    assert SPOOL.read_bytes() == before  # left as it was


@pytest.mark.parametrize("fault", FAULTS)
def test_a_run_with_a_bad_spool_delivers_without_it_and_says_so_once(
    fault: str, platform: PlatformEmulator
) -> None:
    FAULTS[fault]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with MetricRecorder(flush_interval=0.05) as recorder:
            for step in range(500):
                recorder.log_step({"loss": float(step)}, step=step)
    about = [str(w.message) for w in caught if issubclass(w.category, DeliveryWarning)]
    assert len(about) == 1 and "without a durable copy" in about[0] and str(SPOOL) in about[0], about
    assert platform.store.lists[(EXECUTION, "loss")] == [float(step) for step in range(500)]
    summary = recorder.summary()
    assert "500 list values and 1 scalars reached the Craft AI platform" in summary
    assert "0 list values and 0 scalars are in a spool (there is none:" in summary and "0 lost" in summary
