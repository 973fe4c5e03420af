"""Benchmark of the Lightning adapter: µs per logging event against Lightning's own loggers.

Each contender is a real Lightning logger driven the way ``L.Trainer`` drives
it: ``logger.experiment`` touched and ``log_hyperparams({...})`` called before
training (as the trainer's setup does), then per logging event
``logger.log_metrics(metrics, step)`` immediately followed by ``logger.save()``
(what Lightning's logger connector does every time), the pair timed;
``--calls`` events of a 4-key dict of Python floats (Lightning turns tensors
into floats before calling loggers; distinct values, the step advancing).
``finalize("success")`` is timed apart (the "end s" column, not in µs/event).
Each repeat builds every contender afresh in its own folder; repeats are
interleaved (floor, ours, CSVLogger..., floor, ours...) so noise hits all
alike, and the figure is the median over repeats of the mean µs per event.
The first event is also shown on its own ("1st ms", inside µs/event too):
ours starts its run there (without the trainer, no ``log_graph`` call tells
it that ``fit`` starts). After each run what the contender wrote is read back
and its ``train_loss`` values counted (the "recorded" column).

Contenders: ours (``CraftAiLogger(store_path=...)``, the local store);
``CSVLogger``; ``TensorBoardLogger`` (tensorboard or tensorboardX);
``MLFlowLogger`` on a local ``file:`` store and on a local ``sqlite:`` store
(mlflow-skinny; sqlite also needs sqlalchemy and alembic; mlflow 3.x needs
``MLFLOW_ALLOW_FILE_STORE=true`` for the file store, set here), both with
MLflow's default (synchronous) logging; and the floor: a bare loop doing ``float()`` and
``list.append`` per key, the floor of ``bench_recorder.py``. All offline,
local files in a temp dir only; a contender that is not installed is printed
as skipped.

Goal: ours lower than every one of Lightning's loggers.

Run: ``.venv/bin/python benchmarks/bench_lightning.py [--calls N] [--repeats R] [--only NAME ...]
[--json PATH]`` (peers: ``pip install -c constraints.txt tensorboard mlflow-skinny sqlalchemy alembic``)
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Offline and quiet, before any of these libraries is imported.
os.environ["CRAFT_CALLBACKS_VERBOSITY"] = "warning"  # read when the first recorder is made
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # mlflow 3.x refuses the file store without it
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # tensorboard's TensorFlow, when installed, stays quiet

from lightning.pytorch.loggers import CSVLogger, Logger

import harness
from craft_callbacks.lightning import CraftAiLogger
from harness import Goal, num, ratio, table, verdict

KEYS = ("train_loss", "grad_norm", "lr", "epoch")
COUNTED = "train_loss"  # the key read back after each run
HYPERPARAMETERS: dict[str, Any] = {"hidden": 8, "lr": 0.05, "optimizer": "SGD", "batch_size": 4}
FLOOR = "floor: float() + append"
OURS = "ours: CraftAiLogger"

Metrics = dict[str, float]


@dataclass
class Run:
    """One contender's logger for one repeat, and how to count the ``train_loss`` values it recorded."""

    logger: Logger
    recorded: Callable[[], int]


@dataclass
class Contender:
    name: str
    start: Callable[[Path], Run] | None  # None: the floor, or skipped (see note)
    note: str = ""
    per_event_us: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    end_s: list[float] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)


def metric_batches(calls: int) -> list[Metrics]:
    """``calls`` distinct 4-key dicts of Python floats, as Lightning hands them to loggers."""
    return [
        {
            "train_loss": 2.0 / (i + 1) + 0.1,
            "grad_norm": 0.5 + i * 1e-6,
            "lr": 0.05 * (1 - i / (calls + 1)),
            "epoch": float(i // 500),
        }
        for i in range(calls)
    ]


# -- contenders ----------------------------------------------------------------------


def start_ours(folder: Path) -> Run:
    path = folder / "metrics.db"
    logger = CraftAiLogger(store_path=str(path), name="bench")
    return Run(logger, lambda: harness.count_local(path, COUNTED))


def start_csv(folder: Path) -> Run:
    logger = CSVLogger(save_dir=str(folder), name="csv")

    def recorded() -> int:
        with open(Path(logger.log_dir) / "metrics.csv", newline="") as file:
            return sum(1 for row in csv.DictReader(file) if row.get(COUNTED))

    return Run(logger, recorded)


def start_tensorboard(folder: Path) -> Run:
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(folder), name="tb")

    def recorded() -> int:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0})
        events.Reload()
        return len(events.Scalars(COUNTED))

    return Run(logger, recorded)


def mlflow_starter(uri_of: Callable[[Path], str]) -> Callable[[Path], Run]:
    def start(folder: Path) -> Run:
        from lightning.pytorch.loggers import MLFlowLogger
        from mlflow.tracking import MlflowClient

        uri = uri_of(folder)
        logger = MLFlowLogger(experiment_name="bench", tracking_uri=uri)

        def recorded() -> int:
            assert logger.run_id is not None
            return len(MlflowClient(uri).get_metric_history(logger.run_id, COUNTED))

        return Run(logger, recorded)

    return start


def contenders() -> list[Contender]:
    tensorboard = harness.not_installed("tensorboard") and harness.not_installed("tensorboardX")
    mlflow = harness.not_installed("mlflow")
    sqlite = mlflow or harness.not_installed("sqlalchemy", "alembic")
    table: list[tuple[str, Callable[[Path], Run] | None, str | None]] = [
        (FLOOR, None, None),
        (OURS, start_ours, None),
        ("CSVLogger", start_csv, None),
        ("TensorBoardLogger", start_tensorboard, tensorboard),
        ("MLFlowLogger (file store)", mlflow_starter(harness.mlflow_file_uri), mlflow),
        ("MLFlowLogger (sqlite store)", mlflow_starter(harness.mlflow_sqlite_uri), sqlite),
    ]
    return [
        Contender(name, None if missing else start, f"skipped ({missing})" if missing else "")
        for name, start, missing in table
    ]


# -- timing --------------------------------------------------------------------------


def run_once(contender: Contender, folder: Path, batches: list[Metrics]) -> None:
    """One run of one contender: set-up, ``len(batches)`` timed events, finalize; appended to its lists."""
    assert contender.start is not None
    folder.mkdir(parents=True)
    with harness.quiet():
        run = contender.start(folder)
        logger = run.logger
        _ = logger.experiment  # what the trainer's setup hook does before training
        logger.log_hyperparams(dict(HYPERPARAMETERS))
        log_metrics, save = logger.log_metrics, logger.save
        start = time.perf_counter()
        log_metrics(batches[0], 0)
        save()
        first = time.perf_counter() - start
        for step in range(1, len(batches)):
            log_metrics(batches[step], step)
            save()
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        logger.finalize("success")
        end = time.perf_counter() - start
        recorded = run.recorded()
    contender.per_event_us.append(elapsed / len(batches) * 1e6)
    contender.first_ms.append(first * 1e3)
    contender.end_s.append(end)
    contender.recorded.append(recorded)


def bench(calls: int, repeats: int, only: list[str] | None, folder: Path) -> list[Contender]:
    everyone = harness.selected(contenders(), only, always=(FLOOR, OURS))
    batches = metric_batches(calls)
    for repeat in range(repeats):  # interleaved: noise hits every contender alike
        for index, contender in enumerate(everyone):
            if contender.name == FLOOR:
                contender.per_event_us.append(harness.time_floor(batches, KEYS) / calls * 1e6)
            if contender.start is None:
                continue
            run_once(contender, folder / f"c{index}" / f"r{repeat}", [dict(b) for b in batches])
    return everyone


# -- report --------------------------------------------------------------------------


def summarise(everyone: list[Contender], calls: int) -> dict[str, Any]:
    median = harness.median_or_none
    rows = []
    for contender in everyone:
        rows.append(
            {
                "name": contender.name,
                "note": contender.note,
                "us_per_event": median(contender.per_event_us),
                "all_us_per_event": contender.per_event_us,
                "first_event_ms": median(contender.first_ms),
                "end_s": median(contender.end_s),
                "recorded": contender.recorded,
                "all_recorded": harness.all_recorded(contender.recorded, calls),
            }
        )
    by_name = {row["name"]: row for row in rows}
    ours = by_name[OURS]["us_per_event"]
    floor = by_name[FLOOR]["us_per_event"]
    by_name[OURS]["ours_over_floor"] = ours / floor
    goals = []
    for row in rows:
        if row["name"] in (FLOOR, OURS):
            continue
        peer = row["us_per_event"]
        row["ours_over_peer"] = ours / peer if peer else None
        goals.append(
            {
                "goal": f"ours < {row['name']}",
                "pass": None if peer is None else ours < peer,
                "detail": row["note"] or f"{ours:.2f} vs {peer:.2f} µs = {ours / peer:.3g}x",
            }
        )
    if not by_name[OURS]["all_recorded"]:
        goals.append(
            {"goal": "ours recorded every value", "pass": False, "detail": str(by_name[OURS]["recorded"])}
        )
    return {"rows": rows, "goals": goals}


def print_tables(summary: dict[str, Any], calls: int, repeats: int) -> None:
    print(
        f"log_metrics + save, 4 keys: median over {repeats} interleaved repeats of the mean µs/event "
        f"over {calls:,} events (1st ms: the first event alone, included; end s: finalize, not included)"
    )
    rows = summary["rows"]
    width = max(len(row["name"]) for row in rows)
    header = f"{'contender':<{width}} {'µs/event':>9} {'ours/peer':>9} {'1st ms':>8} {'end s':>7}  recorded"
    harness.print_header(header)
    for row in rows:
        if row["us_per_event"] is None:
            print(f"{row['name']:<{width}} {row['note']}")
            continue
        ratio = harness.cell(row.get("ours_over_peer"), 8, ".4f", "x")
        first = harness.cell(row["first_event_ms"], 8, ".2f")
        end = harness.cell(row["end_s"], 7, ".3f")
        recorded = harness.recorded_text(row["recorded"], row["all_recorded"], COUNTED)
        if "ours_over_floor" in row:
            recorded += f"; {row['ours_over_floor']:.1f}x the floor"
        print(f"{row['name']:<{width}} {row['us_per_event']:>9.2f} {ratio} {first} {end}  {recorded}")
    print()
    print("goals")
    harness.print_goals(summary["goals"])


def versions() -> dict[str, str]:
    return harness.package_versions(
        ("lightning", "torch", "tensorboard", "tensorboardX", "mlflow-skinny", "sqlalchemy")
    )


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
    rows = []
    for row in result["rows"]:
        if row.get("us_per_event") is None:
            rows.append([row["name"], row.get("note") or "did not run", "", "", "", ""])
            continue
        rows.append(
            [
                row["name"],
                num(row["us_per_event"]),
                ratio(row.get("ours_over_peer")),
                num(row.get("first_event_ms")),
                num(row.get("end_s"), 3),
                harness.recorded_text(row.get("recorded") or [], row.get("all_recorded")),
            ]
        )
    goal_rows = [[goal["goal"], verdict(goal["pass"]), goal["detail"]] for goal in result["goals"]]
    lines = [
        f"`log_metrics(metrics, step)` + `save()` (what Lightning's logger connector calls every logging "
        f"step), a 4-key dict, {result['calls']:,} events a run, median over {result['repeats']} "
        "interleaved repeats of the mean µs per event; 1st ms: the first event alone (included); end s: "
        "`finalize` (not included); recorded: `train_loss` values read back.",
        "",
        *table(["contender", "µs/event", "ours/peer", "1st ms", "end s", "recorded"], rows),
        "",
        *table(["goal", "result", "measured"], goal_rows),
    ]
    goals: list[Goal] = []
    with contextlib.suppress(Exception):  # without its figures, no goal row; the section is still shown
        goals.append(
            harness.adapter_goal(
                result,
                "Lightning `log_metrics` + `save`: ours lower than every peer",
                "us_per_event",
                "",
                "pass",
            )
        )
    return lines, goals


def main() -> int:
    args = harness.contender_parser(__doc__, "logging events per timed run").parse_args()
    with harness.peers_folder(
        "bench-lightning-",
        # every contender writes where this benchmark tells it
        ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "CRAFT_CALLBACKS_STORE"),
        ("mlflow", "alembic", "lightning", "lightning.pytorch", "tensorboard"),
    ) as folder:
        everyone = bench(args.calls, args.repeats, args.only, folder)
    harness.report_contenders(args, versions(), summarise(everyone, args.calls), print_tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
