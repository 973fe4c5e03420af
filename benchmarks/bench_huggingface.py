"""Benchmark of the HuggingFace adapter: µs per ``on_log`` call against HF's own integrations.

Each contender is a real ``transformers`` callback driven through its real API,
as ``Trainer`` drives it: real ``TrainingArguments`` (``output_dir`` in a temp
dir, ``report_to="none"``), a ``TrainerState`` and a ``TrainerControl``,
``on_train_begin`` with a tiny model built from a config in code, then
``--calls`` ``on_log`` calls of a typical 4-key log (loss, grad_norm,
learning_rate, epoch; distinct values, ``state.global_step`` advancing; ``model=``
passed as the Trainer passes it, its other keyword arguments left out alike for all) timed,
then ``on_train_end`` timed apart (outside the per-call figure: it is where
asynchronous loggers wait for their queue). Each repeat builds every contender
afresh; repeats are interleaved (floor, ours, MLflow..., floor, ours...) so
noise hits all alike. Every call is timed on its own (``perf_counter_ns``
around it, the timer's own cost measured in the same run and taken off), and
two figures are kept per run: the median call (robust to the scheduler: on a
busy 2-core machine one preemption adds µs to the mean of a 10 ms loop) and the
mean call (the whole cost, periodic slow calls included); each is then the
median over the repeats. After each run what the contender wrote is read back
and its ``loss`` values counted (the "recorded" column).

Contenders: ours (``CraftAiCallback(store_path=...)``, the local store);
``transformers.integrations.MLflowCallback`` on a local ``file:`` store and on
a local ``sqlite:`` store (mlflow-skinny; the sqlite store also needs
sqlalchemy and alembic); ``transformers.integrations.TensorBoardCallback``
(tensorboard); ``transformers.integrations.DVCLiveCallback`` and the
deprecated ``dvclive.huggingface.DVCLiveCallback`` (dvclive,
``save_dvc_exp=False``); and the floor: a bare loop doing ``float()`` and
``list.append`` per key, the floor of ``bench_recorder.py``. All offline, local
files only; a contender that is not installed is printed as skipped.

Goals: ours lower than every peer, and at most 3x the floor; each judged on the
median call and on the mean call. DVCLive takes most of the run time (it
re-parses its whole history every step: ~35 ms a call over 2,000 calls);
``--only MLflow TensorBoard`` leaves it out.

Run: ``.venv/bin/python benchmarks/bench_huggingface.py [--calls N] [--repeats R] [--only NAME ...]
[--json PATH]`` (peers: ``pip install -c constraints.txt mlflow-skinny sqlalchemy alembic tensorboard
dvclive``)
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Offline and quiet, before any of these libraries is imported.
os.environ["CRAFT_CALLBACKS_VERBOSITY"] = "warning"  # read when the first recorder is made
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["ITERATIVE_DO_NOT_TRACK"] = "1"
os.environ["DVC_STUDIO_OFFLINE"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # tensorboard imports TensorFlow where it is installed
# MLflow 3.x refuses the file store (in "maintenance mode") unless told to allow it.
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

import harness
from craft_callbacks import LocalStore
from craft_callbacks.huggingface import CraftAiCallback
from harness import Goal, num, ratio, table, verdict

KEYS = ("loss", "grad_norm", "learning_rate", "epoch")
FLOOR_GOAL_RATIO = 3.0
FLOOR = "floor: float() + append"
OURS = "ours: CraftAiCallback"

Logs = dict[str, float]


@dataclass
class Run:
    """One contender's callback for one repeat, and how to count the ``loss`` values it recorded."""

    callback: TrainerCallback
    recorded: Callable[[], int]
    after_begin: Callable[[], None] = lambda: None


@dataclass
class Contender:
    name: str
    start: Callable[[Path, TrainingArguments], Run] | None  # None: the floor, or skipped (see note)
    note: str = ""
    median_us: list[float] = field(default_factory=list)  # per repeat: the median call
    mean_us: list[float] = field(default_factory=list)  # per repeat: the mean call
    begin_s: list[float] = field(default_factory=list)
    end_s: list[float] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)


def log_batches(calls: int) -> list[Logs]:
    """``calls`` distinct 4-key logs, as ``Trainer`` logs them (Python floats)."""
    return [
        {
            "loss": 2.0 / (i + 1) + 0.1,
            "grad_norm": 0.5 + i * 1e-6,
            "learning_rate": 5e-5 * (1 - i / (calls + 1)),
            "epoch": round((i + 1) / 500, 4),
        }
        for i in range(calls)
    ]


def tiny_model() -> Any:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def training_arguments(folder: Path, calls: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(folder / "out"),
        report_to="none",
        max_steps=calls,
        logging_steps=1,
        per_device_train_batch_size=4,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )


# -- contenders ----------------------------------------------------------------------


def start_ours(folder: Path, args: TrainingArguments) -> Run:
    path = folder / "metrics.db"
    callback = CraftAiCallback(store_path=path)

    def recorded() -> int:
        assert callback.recorder is not None
        store = LocalStore(path)
        try:
            return len(store.list_series(callback.recorder.execution_id, "loss"))
        finally:
            store.close()

    return Run(callback, recorded)


def mlflow_starter(uri_of: Callable[[Path], str]) -> Callable[[Path, TrainingArguments], Run]:
    def start(folder: Path, args: TrainingArguments) -> Run:
        import mlflow
        from mlflow.tracking import MlflowClient
        from transformers.integrations import MLflowCallback

        uri = uri_of(folder)
        os.environ["MLFLOW_TRACKING_URI"] = uri  # what HF's setup() reads
        mlflow.set_tracking_uri(uri)  # setup() keeps a URI set earlier in the process: switch it here
        callback = MLflowCallback()
        run_ids: list[str] = []

        def recorded() -> int:
            if not run_ids:
                return 0
            return len(MlflowClient(uri).get_metric_history(run_ids[0], "loss"))

        def after_begin() -> None:  # the run that setup() started
            active = mlflow.active_run()
            if active is not None:
                run_ids.append(active.info.run_id)

        return Run(callback, recorded, after_begin)

    return start


def start_tensorboard(folder: Path, args: TrainingArguments) -> Run:
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()  # logs to args.output_dir/runs/<date_host>, in the temp dir

    def recorded() -> int:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        assert callback.logging_dir is not None
        events = EventAccumulator(callback.logging_dir, size_guidance={"scalars": 0})
        events.Reload()
        return len(events.Scalars("train/loss"))

    return Run(callback, recorded)


def dvclive_reader(folder: Path) -> Callable[[], int]:
    def recorded() -> int:
        lines = (folder / "dvclive" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
        return len(lines) - 1  # a header line, then one line per value

    return recorded


def start_dvclive_hf(folder: Path, args: TrainingArguments) -> Run:
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    live = Live(dir=str(folder / "dvclive"), save_dvc_exp=False)
    return Run(DVCLiveCallback(live=live), dvclive_reader(folder))


def start_dvclive_own(folder: Path, args: TrainingArguments) -> Run:
    from dvclive.huggingface import DVCLiveCallback

    return Run(DVCLiveCallback(dir=str(folder / "dvclive"), save_dvc_exp=False), dvclive_reader(folder))


def contenders() -> list[Contender]:
    mlflow = harness.not_installed("mlflow")
    sqlite = mlflow or harness.not_installed("sqlalchemy", "alembic")
    tensorboard = harness.not_installed("tensorboard")
    dvclive = harness.not_installed("dvclive")
    table: list[tuple[str, Callable[[Path, TrainingArguments], Run] | None, str | None]] = [
        (FLOOR, None, None),
        (OURS, start_ours, None),
        ("MLflowCallback (file store)", mlflow_starter(harness.mlflow_file_uri), mlflow),
        ("MLflowCallback (sqlite store)", mlflow_starter(harness.mlflow_sqlite_uri), sqlite),
        ("TensorBoardCallback", start_tensorboard, tensorboard),
        ("DVCLiveCallback (transformers)", start_dvclive_hf, dvclive),
        ("DVCLiveCallback (dvclive.huggingface)", start_dvclive_own, dvclive),
    ]
    return [
        Contender(name, None if missing else start, f"skipped ({missing})" if missing else "")
        for name, start, missing in table
    ]


# -- timing --------------------------------------------------------------------------


def timer_overhead_ns(samples: int = 20_000) -> float:
    """The median cost of the timing itself (``t0 = ns(); ns() - t0`` around nothing)."""
    ns = time.perf_counter_ns
    durations = [0] * samples
    for index in range(samples):
        t0 = ns()
        durations[index] = ns() - t0
    return statistics.median(durations)


def per_call(durations: list[int], overhead_ns: float) -> tuple[float, float]:
    """(median, mean) µs per call of timed calls, the timer's own cost taken off."""
    return (
        (statistics.median(durations) - overhead_ns) / 1e3,
        (statistics.fmean(durations) - overhead_ns) / 1e3,
    )


def time_floor(batches: list[Logs], overhead_ns: float) -> tuple[float, float, float]:
    """The floor, float() and list.append per key: (median, mean) µs per timed call, and the
    µs per call of one untimed loop over all of them (as ``bench_recorder.py`` times it)."""
    ns = time.perf_counter_ns
    lists: dict[str, list[float]] = {key: [] for key in KEYS}
    durations = [0] * len(batches)
    for index, logs in enumerate(batches):
        t0 = ns()
        for key, value in logs.items():
            lists[key].append(float(value))
        durations[index] = ns() - t0
    bare = harness.time_floor(batches, KEYS) / len(batches) * 1e6
    return (*per_call(durations, overhead_ns), bare)


def run_once(contender: Contender, folder: Path, batches: list[Logs], model: Any, overhead_ns: float) -> None:
    """One timed run of one contender: begin, ``len(batches)`` on_log calls, end; appended to its lists."""
    assert contender.start is not None
    folder.mkdir(parents=True)
    calls = len(batches)
    args = training_arguments(folder, calls)
    state = TrainerState()
    state.max_steps, state.logging_steps, state.num_train_epochs = calls, 1, 1
    state.is_world_process_zero = state.is_local_process_zero = True
    control = TrainerControl()
    with harness.working_directory(folder), harness.quiet():
        run = contender.start(folder, args)
        callback = run.callback
        start = time.perf_counter()
        callback.on_train_begin(args, state, control, model=model)
        begin = time.perf_counter() - start
        run.after_begin()
        on_log = callback.on_log
        ns = time.perf_counter_ns
        durations = [0] * calls
        for index, logs in enumerate(batches):
            state.global_step = index + 1
            t0 = ns()
            on_log(args, state, control, logs=logs, model=model)
            durations[index] = ns() - t0
        start = time.perf_counter()
        callback.on_train_end(args, state, control, model=model)
        end = time.perf_counter() - start
        recorded = run.recorded()
    median, mean = per_call(durations, overhead_ns)
    contender.median_us.append(median)
    contender.mean_us.append(mean)
    contender.begin_s.append(begin)
    contender.end_s.append(end)
    contender.recorded.append(recorded)


def bench(calls: int, repeats: int, only: list[str] | None, folder: Path) -> tuple[list[Contender], Any]:
    everyone = harness.selected(contenders(), only, always=(FLOOR, OURS))
    batches = log_batches(calls)
    model = tiny_model()
    overheads: list[float] = []
    bare_floor: list[float] = []
    for repeat in range(repeats):  # interleaved: noise hits every contender alike
        overhead_ns = timer_overhead_ns()
        overheads.append(overhead_ns)
        for index, contender in enumerate(everyone):
            if contender.name == FLOOR:
                median, mean, bare = time_floor(batches, overhead_ns)
                contender.median_us.append(median)
                contender.mean_us.append(mean)
                bare_floor.append(bare)
            if contender.start is None:
                continue
            try:
                run_once(
                    contender,
                    folder / f"c{index}" / f"r{repeat}",
                    [dict(b) for b in batches],
                    model,
                    overhead_ns,
                )
            except Exception as error:  # a peer that fails here is reported, not fatal
                contender.start = None
                contender.note = f"failed: {type(error).__name__}: {str(error)[:200]}"
                contender.median_us.clear()
                contender.mean_us.clear()
    timing = {"timer_overhead_ns": overheads, "bare_floor_us": bare_floor}
    return everyone, timing


# -- report --------------------------------------------------------------------------


def summarise(everyone: list[Contender], calls: int, timing: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for contender in everyone:
        rows.append(
            {
                "name": contender.name,
                "note": contender.note,
                "median_us": harness.median_or_none(contender.median_us),
                "mean_us": harness.median_or_none(contender.mean_us),
                "all_median_us": contender.median_us,
                "all_mean_us": contender.mean_us,
                "begin_s": harness.median_or_none(contender.begin_s),
                "end_s": harness.median_or_none(contender.end_s),
                "recorded": contender.recorded,
                "all_recorded": harness.all_recorded(contender.recorded, calls),
            }
        )
    by_name = {row["name"]: row for row in rows}
    ours, floor = by_name[OURS], by_name[FLOOR]
    goals = []
    for row in rows:
        if row["name"] in (FLOOR, OURS):
            continue
        if row["median_us"] is None:
            goals.append(
                {"goal": f"ours < {row['name']}", "median": None, "mean": None, "detail": row["note"]}
            )
            continue
        row["ours_over_peer"] = ours["median_us"] / row["median_us"]
        goals.append(
            {
                "goal": f"ours < {row['name']}",
                "median": ours["median_us"] < row["median_us"],
                "mean": ours["mean_us"] < row["mean_us"],
                "detail": f"median {ours['median_us']:.2f} vs {row['median_us']:.2f} µs, "
                f"mean {ours['mean_us']:.2f} vs {row['mean_us']:.2f} µs",
            }
        )
    goals.append(
        {
            "goal": f"ours <= {FLOOR_GOAL_RATIO:g}x floor",
            "median": ours["median_us"] <= FLOOR_GOAL_RATIO * floor["median_us"],
            "mean": ours["mean_us"] <= FLOOR_GOAL_RATIO * floor["mean_us"],
            "detail": f"median {ours['median_us']:.2f} vs {floor['median_us']:.2f} µs "
            f"= {ours['median_us'] / floor['median_us']:.1f}x, "
            f"mean {ours['mean_us']:.2f} vs {floor['mean_us']:.2f} µs "
            f"= {ours['mean_us'] / floor['mean_us']:.1f}x",
        }
    )
    return {
        "rows": rows,
        "goals": goals,
        "timer_overhead_ns": harness.median_or_none(timing["timer_overhead_ns"]),
        "bare_floor_us": harness.median_or_none(timing["bare_floor_us"]),
    }


def print_tables(summary: dict[str, Any], calls: int, repeats: int) -> None:
    print(
        f"on_log, 4 keys, {calls:,} calls a run, {repeats} interleaved repeats: µs per call (the median "
        "call and the mean call of each run, median over the repeats); ours/peer on the medians; "
        "begin/end: s in on_train_begin / on_train_end, not in µs/call"
    )
    rows = summary["rows"]
    width = max(len(row["name"]) for row in rows)
    header = (
        f"{'contender':<{width}} {'median µs':>10} {'mean µs':>10} {'ours/peer':>9} "
        f"{'begin s':>8} {'end s':>8}  recorded"
    )
    harness.print_header(header)
    for row in rows:
        if row["median_us"] is None:
            print(f"{row['name']:<{width}} {row['note']}")
            continue
        ratio = harness.cell(row.get("ours_over_peer"), 8, ".4f", "x")
        begin = harness.cell(row["begin_s"], 8, ".3f")
        end = harness.cell(row["end_s"], 8, ".3f")
        recorded = harness.recorded_text(row["recorded"], row["all_recorded"], "loss")
        print(
            f"{row['name']:<{width}} {row['median_us']:>10.2f} {row['mean_us']:>10.2f} {ratio} "
            f"{begin} {end}  {recorded}"
        )
    print(
        f"(timer's own cost taken off every call: {summary['timer_overhead_ns']:.0f} ns; the floor timed "
        f"as bench_recorder.py does, one untimed loop: {summary['bare_floor_us']:.2f} µs/call)"
    )
    print()
    print("goals (judged on the median call / on the mean call)")
    harness.print_goals(
        summary["goals"],
        lambda goal: f"{harness.verdict(goal['median'])} / {harness.verdict(goal['mean'])}",
        width=11,
    )


def versions() -> dict[str, str]:
    return harness.package_versions(
        ("transformers", "torch", "mlflow-skinny", "sqlalchemy", "tensorboard", "dvclive")
    )


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
    rows = []
    for row in result["rows"]:
        if row.get("median_us") is None:
            rows.append([row["name"], row.get("note") or "did not run", "", "", "", "", ""])
            continue
        rows.append(
            [
                row["name"],
                num(row["median_us"]),
                num(row["mean_us"]),
                ratio(row.get("ours_over_peer")),
                num(row.get("begin_s"), 3),
                num(row.get("end_s"), 3),
                harness.recorded_text(row.get("recorded") or [], row.get("all_recorded")),
            ]
        )
    goal_rows = [
        [goal["goal"], f"{verdict(goal['median'])} / {verdict(goal['mean'])}", goal["detail"]]
        for goal in result["goals"]
    ]
    lines = [
        f"`on_log` of a 4-key log driven through the real `TrainerCallback` API, {result['calls']:,} calls a "
        f"run, {result['repeats']} interleaved repeats; µs per call: the median call and the mean call of "
        "each run, each the median over the repeats; ours/peer on the medians; begin/end: seconds in "
        "`on_train_begin` / `on_train_end` (not in µs per call: where asynchronous loggers wait); "
        "recorded: `loss` values read back after each run.",
        "",
        *table(["contender", "median µs", "mean µs", "ours/peer", "begin s", "end s", "recorded"], rows),
        "",
        *table(["goal", "median / mean", "measured"], goal_rows),
    ]
    goals: list[Goal] = []
    with contextlib.suppress(Exception):  # without its figures, no goal row; the section is still shown
        goals.append(
            harness.adapter_goal(
                result,
                "HuggingFace `on_log`: ours lower than every peer",
                "median_us",
                " (median call)",
                "median",
            )
        )
    return lines, goals


def main() -> int:
    args = harness.contender_parser(__doc__, "on_log calls per timed run").parse_args()
    with harness.peers_folder(
        "bench-huggingface-",
        # every peer writes where this benchmark tells it
        ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "TENSORBOARD_LOGGING_DIR"),
        ("mlflow", "alembic", "dvclive", "dvc", "transformers", "tensorboard"),
    ) as folder:
        everyone, timing = bench(args.calls, args.repeats, args.only, folder)
    harness.report_contenders(args, versions(), summarise(everyone, args.calls, timing), print_tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
