"""Benchmark of MetricRecorder: the cost of ``log_step`` in the training loop, and LocalStore ingestion.

1. Per-call cost of ``log_step`` with a 4-key dict, median µs per call over the
   repeats, next to a "floor" measured in the same run: a bare loop that only
   does ``float(v)`` and ``list.append`` per key. Repeats are interleaved
   (floor, ours, floor, ours...) so noise hits both alike. Each repeat uses a
   fresh recorder with the default flush interval: its background worker runs
   during the timing, as in a real run. Goal for Python floats: at most 3x the
   floor. numpy and torch rows are informative (skipped when not installed).
2. LocalStore ingestion through the background worker: 100,000 ``log_step``
   calls x 4 keys as fast as possible, then ``close()``; values/s from the
   first call to ``close()`` returning, median over 3 repeats. Goal: at least
   200,000 values/s. Every value is read back and checked, in order.

Run: ``.venv/bin/python benchmarks/bench_recorder.py [--calls N] [--repeats R] [--json PATH]``
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ["CRAFT_CALLBACKS_VERBOSITY"] = "warning"  # read when the first recorder is made

import harness
from craft_callbacks import LocalStore, MemorySink, MetricRecorder
from harness import Goal, num, ratio, table, verdict

KEYS = ("loss", "grad_norm", "learning_rate", "epoch")
STEP_GOAL_RATIO = 3.0
INGEST_CALLS = 100_000
INGEST_REPEATS = 3
INGEST_GOAL_VALUES_S = 200_000.0

Batch = dict[str, Any]
SinkFactory = Callable[[Path], Any]


def float_batches(calls: int) -> list[Batch]:
    """``calls`` distinct dicts of Python floats, as a training loop would log them."""
    return [
        {
            "loss": 1.0 / (i + 1),
            "grad_norm": 0.5 + i * 1e-6,
            "learning_rate": 1e-4 * 0.999**i,
            "epoch": i / 1000,
        }
        for i in range(calls)
    ]


def converted(batches: list[Batch], convert: Callable[[float], Any]) -> list[Batch]:
    return [{key: convert(value) for key, value in batch.items()} for batch in batches]


def value_kinds(calls: int) -> Iterator[tuple[str, list[Batch] | str]]:
    """(row label, batches) for each kind of value, or (label, why it is skipped)."""
    floats = float_batches(calls)
    yield "floats", floats
    try:
        import numpy as np
    except ImportError:
        yield "numpy float32 0-d", "skipped: numpy not installed"
    else:
        yield "numpy float32 0-d", converted(floats, lambda v: np.array(v, dtype=np.float32))
    try:
        import torch
    except ImportError:
        yield "torch 1-element", "skipped: torch not installed"
    else:
        yield "torch 1-element", converted(floats, lambda v: torch.tensor([v]))


@contextmanager
def opened_sink(factory: SinkFactory, folder: Path) -> Iterator[Any]:
    sink = factory(folder)
    try:
        yield sink
    finally:
        if isinstance(sink, LocalStore):
            sink.close()


def new_store(folder: Path) -> LocalStore:
    return LocalStore(Path(tempfile.mkdtemp(dir=folder)) / "metrics.db")


def time_log_step(batches: list[Batch], factory: SinkFactory, folder: Path) -> float:
    """Seconds for ``log_step`` over ``batches``, on a fresh recorder closed after the timing."""
    with opened_sink(factory, folder) as sink:
        recorder = MetricRecorder(sink)
        log_step = recorder.log_step
        start = time.perf_counter()
        for metrics in batches:
            log_step(metrics)
        elapsed = time.perf_counter() - start
        recorder.close()
    return elapsed


def bench_log_step(calls: int, repeats: int, folder: Path) -> list[dict[str, Any]]:
    sinks: list[tuple[str, SinkFactory]] = [("MemorySink", lambda _: MemorySink()), ("LocalStore", new_store)]
    rows: list[dict[str, Any]] = []
    for kind, batches in value_kinds(calls):
        for sink_name, factory in sinks if kind == "floats" else sinks[:1]:
            row: dict[str, Any] = {"case": f"{kind} -> {sink_name}", "goal": kind == "floats"}
            rows.append(row)
            if isinstance(batches, str):
                row["note"] = batches
                continue
            floor, ours = [], []
            for _ in range(repeats):  # interleaved: noise hits both alike
                floor.append(harness.time_floor(batches, KEYS) / calls * 1e6)
                ours.append(time_log_step(batches, factory, folder) / calls * 1e6)
            row.update(floor_us=statistics.median(floor), ours_us=statistics.median(ours))
            row["ratio"] = row["ours_us"] / row["floor_us"]
            row["pass"] = row["ratio"] <= STEP_GOAL_RATIO if row["goal"] else None
    return rows


def ingest_once(batches: list[Batch], folder: Path) -> float:
    """Values/s from the first ``log_step`` to ``close()`` returning; checks every value read back."""
    with opened_sink(new_store, folder) as store:
        # Keep every value: a cap of the run's length and the run's length known in advance
        # (an unknown total is thinned from half the cap on, by design).
        recorder = MetricRecorder(store, max_list_values=len(batches), expected_events=len(batches))
        log_step = recorder.log_step
        start = time.perf_counter()
        for metrics in batches:
            log_step(metrics)
        recorder.close()
        elapsed = time.perf_counter() - start
        stored = {
            row["name"]: row["values"] for row in store.get_list_metrics(execution_id=recorder.execution_id)
        }
    assert sorted(stored) == sorted(KEYS), f"list metrics stored: {sorted(stored)}"
    for key in KEYS:
        assert stored[key] == [metrics[key] for metrics in batches], f"{key}: values lost or out of order"
    return len(batches) * len(KEYS) / elapsed


def bench_ingest(folder: Path) -> dict[str, Any]:
    batches = float_batches(INGEST_CALLS)
    rates = [ingest_once(batches, folder) for _ in range(INGEST_REPEATS)]
    rate = statistics.median(rates)
    return {"values_per_s": rate, "all_values_per_s": rates, "pass": rate >= INGEST_GOAL_VALUES_S}


def print_tables(rows: list[dict[str, Any]], ingest: dict[str, Any], calls: int, repeats: int) -> None:
    print(f"log_step, 4 keys: median µs/call over {repeats} interleaved repeats of {calls:,} calls")
    width = max(len(row["case"]) for row in rows)
    header = f"{'case':<{width}} {'floor µs':>9} {'ours µs':>9} {'ours/floor':>10}  {'goal':<8} result"
    harness.print_header(header)
    for row in rows:
        if "note" in row:
            print(f"{row['case']:<{width}} {row['note']}")
            continue
        goal = f"<= {STEP_GOAL_RATIO:g}x" if row["goal"] else "(info)"
        print(
            f"{row['case']:<{width}} {row['floor_us']:>9.3f} {row['ours_us']:>9.3f} {row['ratio']:>9.2f}x"
            f"  {goal:<8} {harness.verdict(row['pass'])}"
        )
    print()
    print(f"LocalStore ingestion: {INGEST_CALLS:,} log_step x {len(KEYS)} keys + close(), all values checked")
    print(f"{'values/s (median of ' + str(INGEST_REPEATS) + ')':<26} {'goal':<12} result   repeats")
    repeats_text = ", ".join(f"{rate:,.0f}" for rate in ingest["all_values_per_s"])
    print(
        f"{ingest['values_per_s']:<26,.0f} {'>= ' + format(INGEST_GOAL_VALUES_S, ',.0f'):<12} "
        f"{harness.verdict(ingest['pass']):<8} {repeats_text}"
    )


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
    rows = []
    for row in result["log_step"]:
        if "note" in row:
            rows.append([row["case"], "-", "-", "-", "-", row["note"]])
            continue
        goal = "<= 3x floor" if row["goal"] else "(info)"
        rows.append(
            [
                row["case"],
                num(row["floor_us"], 3),
                num(row["ours_us"], 3),
                ratio(row["ratio"]),
                goal,
                verdict(row["pass"]),
            ]
        )
    ingest = result["ingest"]
    lines = [
        f"`log_step` with a 4-key dict, {result['calls']:,} calls, median µs per call over "
        f"{result['repeats']} interleaved repeats, next to the floor (a bare loop doing `float()` and "
        "`list.append` per key, timed in the same run):",
        "",
        *table(["case", "floor µs", "ours µs", "ours/floor", "goal", "result"], rows),
        "",
        f"LocalStore ingestion through the background worker ({ingest['calls']:,} `log_step` x "
        f"{ingest['keys']} keys, then `close()`, every value read back): median "
        f"**{num(ingest['values_per_s'], 0)} values/s** over {ingest['repeats']} repeats "
        f"({', '.join(num(v, 0) for v in ingest['all_values_per_s'])}); goal >= 200,000: "
        f"{verdict(ingest['pass'])}.",
    ]
    return lines, []


def main() -> int:
    parser = harness.arg_parser(__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="log_step calls per timed repeat")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats per row")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        rows = bench_log_step(args.calls, args.repeats, Path(tmp))
        ingest = bench_ingest(Path(tmp))
    print_tables(rows, ingest, args.calls, args.repeats)
    results = {
        **harness.running_here(),
        "calls": args.calls,
        "repeats": args.repeats,
        "log_step": rows,
        "ingest": {"calls": INGEST_CALLS, "keys": len(KEYS), "repeats": INGEST_REPEATS, **ingest},
    }
    harness.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
