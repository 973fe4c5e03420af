"""Run every benchmark, each in its own process, and write BENCHMARKS.md from their results.

The one entry command of the benchmark suite (the issue: overhead, requests and
memory against the trackers users would pick instead):

    .venv/bin/python benchmarks/run_all.py            # the full run, writes BENCHMARKS.md (15-30 min)
    .venv/bin/python benchmarks/run_all.py --quick    # a smoke run: fewer calls and repeats

Each script runs in a subprocess with ``--json`` into a temporary folder; its
output is printed as it goes. A script that fails is reported (with the end
of its output) and the runner goes on. Then the report is written: the
machine, the versions, the command, one section per workload with its table
of medians and ratios (ours / each peer), what each number means, and each
goal of the issue with PASS or MISS and the measured figure.

``--quick`` writes its report beside the JSON files in a temporary folder (it
prints the path), never over ``BENCHMARKS.md``, unless ``--output`` says where.
``--only NAME ...`` runs some of the benchmarks (names below). ``--reliability``
runs ``bench_reliability.py`` and ``bench_recorder.py`` only and replaces the
section "(e) Reliability" of ``BENCHMARKS.md`` (or ``--output``) with theirs,
keeping the rest of the file as it was generated (two minutes instead of the
whole run):

    .venv/bin/python benchmarks/run_all.py --reliability

``--ui`` does the same for the dashboard: it runs ``bench_ui.py`` only and replaces
the section "(f) Dashboard" (and its rows of the goals table), keeping the rest
(a few minutes: the store of 50 runs x 4 lists x 50,000 values is written
first; TensorBoard is measured where the ``bench`` extra installed it):

    .venv/bin/python benchmarks/run_all.py --ui

Section (e) puts the hot path's ratios (``bench_recorder.py``) beside the fault
matrix; with both in the run, ``bench_recorder.py`` also runs alternately from
this tree and from a baseline commit (``--baseline COMMIT``, by default the
commit the report being replaced measured; ``--baseline-pairs N``, 3), so that
"unchanged" is judged on runs of the same minutes.

Peers are
installed by the ``bench`` extra: ``pip install -c constraints.txt -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import MB, verdict

HERE = Path(__file__).resolve().parent
ROOT = harness.ROOT
PACKAGES = (
    "craft-callbacks",
    "craft-ai-sdk",
    "torch",
    "transformers",
    "accelerate",
    "lightning",
    "keras",
    "numpy",
    "mlflow-skinny",
    "sqlalchemy",
    "tensorboard",
    "tensorflow-cpu",
    "dvclive",
)


@dataclass
class Bench:
    name: str
    script: str
    full: list[str]
    quick: list[str]
    returncode: int | None = None
    seconds: float = 0.0
    tail: list[str] = field(default_factory=list)
    result: Any = None
    error: str | None = None


def benches() -> list[Bench]:
    return [
        Bench("recorder", "bench_recorder.py", [], ["--calls", "2000", "--repeats", "2"]),
        Bench("huggingface", "bench_huggingface.py", [], ["--calls", "200", "--repeats", "1"]),
        Bench("lightning", "bench_lightning.py", [], ["--calls", "200", "--repeats", "1"]),
        Bench("keras", "bench_keras.py", ["--backend", "torch"], ["--backend", "torch", "--calls", "200"]),
        Bench(
            "platform", "bench_platform.py", [], ["--steps", "200", "--repeats", "1", "--naive-repeats", "1"]
        ),
        Bench(
            "end_to_end",
            "bench_end_to_end.py",
            [],
            ["--steps", "100", "--repeats", "1", "--warmup-steps", "5"],
        ),
        Bench("traffic", "bench_traffic.py", [], ["--steps", "1000", "--naive-steps", "50"]),
        Bench("memory", "bench_memory.py", [], ["--steps", "100000"]),
        Bench("reliability", "bench_reliability.py", [], []),  # the whole matrix: about 40 s
        Bench(
            "ui",
            "bench_ui.py",
            [],
            ["--runs", "20", "--values", "10000", "--repeats", "2", "--plot-repeats", "1"],
        ),
    ]


# -- running -------------------------------------------------------------------------


def run_bench(bench: Bench, quick: bool, folder: Path) -> None:
    """Run one script in its own process, its output printed live; its JSON read back."""
    out = folder / f"{bench.name}.json"
    command = [sys.executable, str(HERE / bench.script), *(bench.quick if quick else bench.full)]
    command += ["--json", str(out)]
    print(f"\n=== {bench.name}: {' '.join(command[1:])}", flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=25)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))
        bench.returncode = process.wait()
    bench.seconds = time.perf_counter() - started
    bench.tail = list(tail)
    if out.exists():
        try:
            bench.result = json.loads(out.read_text())
        except ValueError as error:
            bench.error = f"its JSON could not be read: {error}"
    if bench.returncode != 0:
        bench.error = f"exited with status {bench.returncode}"
    elif bench.result is None and bench.error is None:
        bench.error = "wrote no JSON"
    status = "ok" if bench.error is None else f"FAILED ({bench.error})"
    print(f"=== {bench.name}: {status} in {bench.seconds:.0f} s", flush=True)


# -- the machine ---------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, {platform.platform()}"
    return platform.platform()


def load() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return "unknown"


def source_commit() -> str:
    """The commit measured (``git rev-parse``), and whether the tree differs from it where the code
    measured lives; "unknown" outside a git checkout."""
    try:
        git = ["git", "-C", str(ROOT)]
        where = ("src", "benchmarks", "tests", "pyproject.toml")
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", *where], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = " with uncommitted changes in src/, benchmarks/, tests/ or pyproject.toml"
    return head.stdout.strip() + (dirty if changed.stdout.strip() else "")


def versions() -> list[tuple[str, str]]:
    return [("python", harness.python_version()), *harness.package_versions(PACKAGES).items()]


# -- formatting ----------------------------------------------------------------------


def num(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def pct(value: Any) -> str:
    return "-" if value is None else f"{value:+.2%}"


def ratio(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}x" if value < 10 else f"{value:,.0f}x"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


@dataclass
class Goal:
    workload: str
    goal: str
    measured: str
    passed: bool | None


# -- one renderer per benchmark: (markdown lines, goals of the issue) --------------------

Renderer = Callable[[Any], tuple[list[str], list[Goal]]]


def render_recorder(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
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


def render_huggingface(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
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
    goals = [
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
        *table(["goal (adapter issue)", "median / mean", "measured"], goals),
    ]
    return lines, []


def render_lightning(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
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
    goals = [[goal["goal"], verdict(goal["pass"]), goal["detail"]] for goal in result["goals"]]
    lines = [
        f"`log_metrics(metrics, step)` + `save()` (what Lightning's logger connector calls every logging "
        f"step), a 4-key dict, {result['calls']:,} events a run, median over {result['repeats']} "
        "interleaved repeats of the mean µs per event; 1st ms: the first event alone (included); end s: "
        "`finalize` (not included); recorded: `train_loss` values read back.",
        "",
        *table(["contender", "µs/event", "ours/peer", "1st ms", "end s", "recorded"], rows),
        "",
        *table(["goal (adapter issue)", "result", "measured"], goals),
    ]
    return lines, []


def render_keras(result: list[dict[str, Any]]) -> tuple[list[str], list[Goal]]:
    lines: list[str] = []
    for backend in result:
        if "rows" not in backend:
            lines.append(f"Backend {backend.get('versions', {}).get('backend')}: {backend.get('error')}")
            continue
        rows = backend["rows"]
        mine = [row["case"] for row in rows if row["role"] == "ours"]
        table_rows = []
        for row in rows:
            if "error" in row:
                table_rows.append([row["case"], row["error"], "", *["" for _ in mine]])
                continue
            judged = row.get("vs", {})
            table_rows.append(
                [
                    row["case"],
                    num(row["end_median_us"], 3),
                    num(row["pair_median_us"], 3),
                    *[
                        f"{ratio(judged[case]['ratio'])} {verdict(judged[case]['pass'])}"
                        if case in judged
                        else ""
                        for case in mine
                    ],
                ]
            )
        lines += [
            f"Backend **{backend['versions'].get('backend')}**: `on_train_batch_end` with a 2-key log, "
            f"{backend['calls']:,} calls, median µs per call over {backend['repeats']} interleaved repeats; "
            "begin+end: `on_train_batch_begin` + `on_train_batch_end` per batch (information); "
            "ours/peer judged on `on_train_batch_end` (PASS: ours lower). Keras's `CSVLogger` and "
            "DVCLive's Keras callback do nothing per batch (they write once per epoch): their figure is "
            "the cost of calling an empty method.",
            "",
            *table(
                ["case", "end µs", "begin+end µs", *[f"{case} / peer" for case in mine]],
                table_rows,
            ),
            "",
        ]
    return lines, []


def render_platform(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    summaries = result["summaries"]
    none = summaries["none"]
    rows = []
    for name, summary in summaries.items():
        rows.append(
            [
                name,
                str(len(summary["loop_all_s"])),
                num(summary["loop_s"], 3),
                pct(summary["loop_s"] / none["loop_s"] - 1) if name != "none" else "",
                num(summary["loop_cpu_s"], 3),
                f"{summary['requests']:,}",
                f"{summary['bytes']:,}",
                num(summary["worst_call_s"] * 1e3, 3),
                num(summary["p99_call_s"] * 1e3, 3),
            ]
        )
    goals = result["goals"]
    paired = ", ".join(pct(p) for p in goals.get("paired_overheads", []))
    lines = [
        f"A real tiny torch training loop ({result['steps']:,} steps, 4 metrics a step) inside a Craft AI "
        f"execution on the platform emulator ({result['latency_s'] * 1e3:g} ms per request), recording "
        "nothing (`none`), one SDK call per value (`naive`) or through `MetricRecorder` (`recorder`); loop = "
        "first step to end of last (`close()` not included), median over interleaved repeats; requests and "
        "bytes (request bodies) = everything the variant caused; worst/p99 call: the time of one "
        "`record()` call in the loop.",
        "",
        *table(
            [
                "variant",
                "repeats",
                "loop s",
                "vs none",
                "cpu s",
                "requests",
                "body bytes",
                "worst ms",
                "p99 ms",
            ],
            rows,
        ),
        "",
        f"Requests naive/recorder: {ratio(goals.get('requests_ratio'))} "
        f"({verdict(goals.get('requests_pass'))} against 100x); recorder loop vs none: "
        f"{pct(goals.get('overhead'))} (paired per repeat: {paired}; "
        f"{verdict(goals.get('overhead_pass'))} against 5%).",
    ]
    return lines, []


def render_end_to_end(result: list[dict[str, Any]]) -> tuple[list[str], list[Goal]]:
    names = {"hf": "HuggingFace", "lightning": "Lightning", "keras": "Keras"}
    lines: list[str] = []
    goals: list[Goal] = []
    for framework in result:
        title = names.get(framework.get("framework", ""), framework.get("framework", "?"))
        if "rows" not in framework:
            lines += [f"### {title}", "", f"Did not run: {framework.get('error')}", ""]
            goals.append(Goal("(b) end-to-end", f"{title}: ours overhead <= 1%", "did not run", None))
            continue
        rows = []
        for row in framework["rows"]:
            if "wall_s" not in row:
                rows.append([row["name"], row.get("error", ""), "", "", "", "", "", ""])
                continue
            counts = "/".join(str(c) for c in sorted({c for c in row["recorded"] if c is not None}))
            is_none = row["role"] == "none"
            rows.append(
                [
                    row["name"],
                    num(row["wall_s"], 3),
                    "" if is_none else pct(row["overhead"]),
                    "" if is_none else pct(row["paired_overhead"]),
                    "" if is_none else pct(row["min_overhead"]),
                    num(row["cpu_s"], 3),
                    ratio(row.get("ours_over_peer_overhead")) if row["role"] == "peer" else "",
                    f"{counts} {row['loss_list']}" if counts else "",
                ]
            )
        versions_text = ", ".join(f"{key} {value}" for key, value in framework["versions"].items())
        lines += [
            f"### {title}",
            "",
            f"{framework['steps']:,} optimizer steps, logging every step; median of {framework['repeats']} "
            f"interleaved repeats; the no-logger runs spread **{framework['noise']:.1%}** (max/min - 1) in "
            f"this run. {versions_text}.",
            "",
            *table(
                [
                    "variant",
                    "wall s",
                    "overhead",
                    "paired",
                    "min/min",
                    "cpu s",
                    "ours/peer overhead",
                    "recorded",
                ],
                rows,
            ),
            "",
        ]
        ours = next(row for row in framework["rows"] if row["role"] == "ours")
        goals.append(
            Goal(
                "(b) end-to-end",
                f"{title}: ours overhead <= 1% of the no-logger wall time",
                f"{pct(ours['overhead'])} (paired {pct(ours['paired_overhead'])}, min/min "
                f"{pct(ours['min_overhead'])}; no-logger spread {framework['noise']:.1%})",
                framework["goals"][0]["pass"],
            )
        )
        peers = [goal for goal in framework["goals"][1:] if goal["pass"] is not None]
        lost = [goal["goal"].removeprefix("ours < ") for goal in peers if not goal["pass"]]
        skipped = [
            goal["goal"].removeprefix("ours < ") for goal in framework["goals"][1:] if goal["pass"] is None
        ]
        measured = f"ours {pct(ours['overhead'])}; " + ", ".join(
            f"{row['name']} {pct(row['overhead'])}"
            for row in framework["rows"]
            if row["role"] == "peer" and "overhead" in row
        )
        if lost:
            measured += f"; not lower than: {', '.join(lost)}"
        if skipped:
            measured += f"; did not run: {', '.join(skipped)}"
        goals.append(
            Goal(
                "(b) end-to-end",
                f"{title}: ours overhead lower than every peer's",
                measured,
                (not lost) if peers else None,
            )
        )
    return lines, goals


def render_traffic(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    ours, sample, naive = result["ours"], result["naive_sample"], result["naive"]
    steps, keys = ours["steps"], len(result["keys"])

    def routes(per_route: dict[str, int]) -> str:
        return ", ".join(f"{route} {count:,}" for route, count in sorted(per_route.items()))

    rows = [
        [
            "ours (`MetricRecorder`)",
            f"{steps:,}",
            f"{ours['requests']:,}",
            f"{ours['wire_bytes']:,}",
            f"{ours['body_bytes']:,}",
            routes(ours["per_route"]),
        ],
        [
            "naive, measured sample",
            f"{sample['steps']:,}",
            f"{sample['requests']:,}",
            f"{sample['wire_bytes']:,}",
            f"{sample['body_bytes']:,}",
            routes(sample["per_route"]),
        ],
        [
            "naive, whole run (**computed**)",
            f"{steps:,}",
            f"{naive['requests']:,}",
            f"{naive['wire_bytes']:,} (extrapolated)",
            f"{naive['body_bytes']:,} (extrapolated)",
            "one list_post per value + auth",
        ],
    ]
    lines = [
        f"{steps:,} steps x {keys} metrics ({', '.join(result['keys'])}) of a real tiny torch training loop "
        "inside a Craft AI execution on the platform emulator (0 ms latency, real HTTP through "
        "`craft_ai_sdk`). Wire bytes: client to platform, HTTP request lines and headers included "
        "(counted by a loopback relay); body bytes: request bodies, as the emulator counts them.",
        "",
        *table(["variant", "steps", "requests", "wire bytes", "body bytes", "requests by route"], rows),
        "",
        f"The naive whole-run request count is **computed, not measured**: one request per value "
        f"({steps:,} x {keys} = {steps * keys:,}) plus the auth request of the sample; it is exact, as the "
        f"measured sample of {sample['steps']:,} steps confirms ({sample['requests']:,} requests). Its bytes "
        f"are extrapolated from the sample's mean ({num(naive['wire_bytes_per_request'], 0)} wire / "
        f"{num(naive['body_bytes_per_request'], 0)} body bytes per request). Ours delivered every value "
        f"({steps:,} per list, checked in order) and the 8 end-of-run scalars. Ratios naive/ours: requests "
        f"**{ratio(result['requests_ratio'])}**, wire bytes {ratio(result['wire_bytes_ratio'])}, body bytes "
        f"{ratio(result['body_bytes_ratio'])}.",
    ]
    goals = [
        Goal(
            "(c) platform traffic",
            "at least 100x fewer requests than one call per value",
            f"{naive['requests']:,} / {ours['requests']:,} = {ratio(result['requests_ratio'])}",
            result["pass"],
        )
    ]
    return lines, goals


def render_memory(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    rows = []
    goals = []
    for run in result["results"]:
        if "error" in run:
            rows.append([run["sink"], run["error"], *[""] * 9])
            goals.append(Goal("(d) memory", f"peak RSS growth < 50 MB ({run['sink']})", "did not run", None))
            continue
        delivered = "/".join(f"{count:,}" for count in sorted(set(run["delivered"].values())))
        waiting = "/".join("-" if n is None else f"{n:,}" for n in run.get("buffered_at", {}).values())
        rows.append(
            [
                run["sink"],
                num(run["baseline_bytes"] / MB, 1),
                num(run["peak_bytes"] / MB, 1),
                f"**{num(run['growth_bytes'] / MB, 1)}**",
                " / ".join(num(v / MB if v else None, 1) for v in run["rss_at"].values()),
                num(run["rss_after_close"] / MB, 1),
                waiting,
                num(run["loop_s"], 2),
                num(run["close_s"], 2),
                delivered,
                verdict(run["pass"]),
            ]
        )
        goals.append(
            Goal(
                "(d) memory",
                f"peak RSS growth < 50 MB over {run['steps']:,} steps x {run['keys']} metrics "
                f"({'LocalStore' if run['sink'] == 'local' else 'platform emulator'})",
                f"{num(run['growth_bytes'] / MB, 1)} MB (RSS at 10/50/100% of the steps: "
                f"{' / '.join(num(v / MB if v else None, 1) for v in run['rss_at'].values())} MB)",
                run["pass"],
            )
        )
    steps = result["steps"]
    lines = [
        f"{steps:,} `log_step` calls of {len(result['keys'])} distinct floats, as fast as the loop goes, the "
        "run's length not told to the recorder; one process per sink (`local`: a `LocalStore` in a temp "
        'folder; `platform`: `sink="auto"` inside an execution on the emulator, which runs in another '
        f"process). RSS (`VmRSS`) sampled every {result['sample_every']:,} steps; baseline after the "
        "recorder is created; peak = the largest sample or the kernel's high-water mark (`VmHWM`); MB = MiB.",
        "",
        *table(
            [
                "sink",
                "baseline MB",
                "peak MB",
                "growth MB",
                "RSS at 10/50/100% MB",
                "after close MB",
                "values waiting at 10/50/100%",
                "loop s",
                "close s",
                "delivered per list",
                "< 50 MB",
            ],
            rows,
        ),
        "",
        '"Values waiting" is the number of values logged but not yet taken from the recorder\'s buffers by '
        "its delivery worker (read from the recorder's private buffers by the benchmark). "
        + " ".join(memory_trend(run) for run in result["results"] if "error" not in run)
        + ' The list cap (50,000 values per list) thins what is delivered: "delivered per list" is read '
        "back from the store or the emulator.",
    ]
    return lines, goals


def memory_trend(run: dict[str, Any]) -> str:
    """What one sink's samples say about memory over the steps. The recorder's buffers are named as the
    cause of a missed goal only where this run measured it: the values waiting grew from 10% to 50% to
    100% of the steps."""
    rss = [num(run["rss_at"][at] / MB, 1) if run["rss_at"][at] else "-" for at in ("10%", "100%")]
    waiting = [run.get("buffered_at", {}).get(at) for at in ("10%", "50%", "100%")]
    text = f"`{run['sink']}`: from 10% to 100% of the steps the RSS went from {rss[0]} to {rss[1]} MB"
    if None in waiting:
        return text + "; the values waiting were not read."
    text += f"; the values waiting at 10/50/100% were {' / '.join(f'{n:,}' for n in waiting)} (at most "
    text += f"{run.get('max_buffered') or 0:,} at a sample)"
    if run["pass"]:
        return text + "."
    if waiting[0] < waiting[1] < waiting[2]:
        return text + (
            ": they grew with the steps, so the delivery worker fell behind the loop and what it had not "
            "taken yet stayed in memory."
        )
    return text + ": they did not grow with the steps, so they do not account for the growth."


def yes_no(value: Any) -> str:
    return "-" if value is None else "yes" if value else "**no**"


def render_reliability(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    rows = []
    for row in result["faults"]:
        if "error" in row:
            rows.append([row["name"], f"**did not run**: {row['error']}", *[""] * 9, "MISS"])
            continue
        caller = row.get("caller")
        spooled = "-" if row["spooled_at_close"] is None else f"{row['spooled_at_close']:,}"
        synced = "-" if row["synced"] is None else f"{row['synced']:,}"
        rows.append(
            [
                row["name"],
                yes_no(row["fault_seen"]),
                ("≥ " if row.get("logged_at_least") else "") + f"{row['values_logged']:,}",
                f"{row['delivered']:,}",
                f"{row['duplicated']:,}",
                f"{row['lost']:,}" + (f" (≤ {row['allowed_lost']:,} allowed)" if row["allowed_lost"] else ""),
                yes_no(row["exact"]),
                f"{spooled} / {synced}",
                yes_no(row["scalars_ok"]),
                " / ".join(num(caller[key], 1) for key in ("median_us", "p99_us", "max_us"))
                if caller
                else "-",
                num(row["seconds"], 1),
                verdict(row["pass"]),
            ]
        )
    total = result["totals"]
    rows.append(
        [
            f"**total** ({total['scenarios']} scenarios)",
            "",
            f"{total['values_logged']:,}",
            f"{total['delivered']:,}",
            f"**{total['duplicated']:,}**",
            f"**{total['lost']:,}**",
            f"{total['exact']}/{total['scenarios']}",
            "",
            "",
            "",
            num(total["seconds"], 1),
            f"{total['passed']}/{total['scenarios']} {verdict(result['pass'])}",
        ]
    )
    absent = result.get("kill_scenarios_absent") or []
    lists = " and ".join(f"`{name}`" for name in result["lists"])
    lines = [
        f"Each scenario of `tests/fault_matrix.py` records a short training run ({result['steps']:,} steps "
        f"logging {lists}, distinct values, and one end-of-run scalar) through the real `craft-ai-sdk` "
        f"client into the platform emulator, injects its fault at step {result['inject_at']}, closes the "
        "run and, when the fault outlasts the run, delivers the spool with `craft-callbacks sync`; each in "
        "a fresh working folder against a fresh emulator. The two SIGKILL scenarios kill a training process "
        "during an outage (then sync delivers its spool) and `craft-callbacks sync` part-way through a "
        "spool of 6 x 20,000 values (then sync runs again).",
        "",
        *table(
            [
                "scenario",
                "fault seen",
                "values logged",
                "delivered",
                "duplicated",
                "lost",
                "exact",
                "spooled at close / synced",
                "end scalars",
                "`log_step` µs median / p99 / worst",
                "s",
                "result",
            ],
            rows,
        ),
        "",
        "What the columns mean: *fault seen*: the fault really happened (the platform's answers or the "
        "run's warnings show it; for the SIGKILLs: sync found values that only the spool held, or the "
        "killed sync had delivered a part); *values logged*: the list values the run logged (the killed "
        "training: at least what it had reported logging when killed, or what the platform holds when more); "
        "*delivered*: the list values the platform holds once the run and any sync ended; *duplicated*: "
        "extra copies of a value on the platform; *lost*: values logged that the platform does not hold "
        "(the killed training may lose the values of its last 3 flush intervals, never in the spool: the "
        "bound is shown); *exact*: every list holds each value once, in order, nothing else (the killed "
        "training: a prefix of its values); *spooled at close / synced*: list values the spool held, not "
        "accepted by the platform, when the run closed / values `craft-callbacks sync` delivered after it "
        "(`-`: no sync ran); *end scalars*: the run's end-of-run scalars reached the platform; *`log_step` "
        "µs*: each `log_step` call on the training thread during the scenario, a clock around it included: "
        "the caller's cost while the fault lasts (calls that waited for the network or the spool would "
        "show as milliseconds at the p99; a lone worst call can be the machine running another process); "
        "*s*: the scenario's seconds; *result*: PASS when the fault was seen, "
        "nothing was duplicated or lost (beyond the bound), the lists are exact and any sync completed.",
    ]
    if absent:
        lines += [
            "",
            f"Not run: {', '.join(f'`{name}`' for name in absent)} (not defined in `tests/fault_matrix.py` "
            "when this ran).",
        ]
    seen = [row for row in result["faults"] if "error" not in row]
    goals = [
        Goal(
            "(e) reliability",
            "every fault of the matrix and both SIGKILLs: each value delivered once, nothing lost (a killed "
            "training: nothing logged before its last 3 flush intervals)",
            f"{total['scenarios']} scenarios: {total['values_logged']:,} values logged, "
            f"{total['delivered']:,} delivered, {total['duplicated']:,} duplicated, {total['lost']:,} lost; "
            f"{total['passed']}/{total['scenarios']} pass"
            + (f"; did not run: {total['errors']}" if total["errors"] else "")
            + (f"; not in the matrix: {', '.join(absent)}" if absent else ""),
            result["pass"] if seen else None,
        )
    ]
    return lines, goals


# -- the caller's cost beside the fault matrix -------------------------------------------

HOT_PATH_HEADING = "### The recorder's hot path"


@dataclass
class PreviousReport:
    """The hot path's figures of a report this run replaces (its section (a)), to compare against."""

    rows: dict[str, tuple[float, float]]  # case -> (floor µs, ours µs)
    commit: str
    generated: str


def previous_report(path: Path) -> PreviousReport | None:
    """The recorder's hot-path table of the report at ``path`` (None when there is none to read)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    lines = text.splitlines()
    if HOT_PATH_HEADING not in lines:
        return None
    rows: dict[str, tuple[float, float]] = {}
    for line in lines[lines.index(HOT_PATH_HEADING) + 1 :]:
        if line.startswith("#"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and " -> " in cells[0]:
            with contextlib.suppress(ValueError):
                rows[cells[0]] = (float(cells[1].replace(",", "")), float(cells[2].replace(",", "")))
    commit = re.search(r"^\| commit measured \| (.*) \|$", text, re.MULTILINE)
    generated = re.search(r"^Generated by `[^`]*` on ([^;]*UTC)", text, re.MULTILINE)
    if not rows:
        return None
    return PreviousReport(
        rows, commit.group(1) if commit else "unknown", generated.group(1) if generated else "unknown"
    )


@dataclass
class HotPathAB:
    """``bench_recorder.py`` run alternately from this tree and from ``commit`` (its ``src`` and
    ``benchmarks`` taken with ``git archive``): the ours/floor ratios of each run, per case."""

    commit: str
    pairs: int = 0
    now: dict[str, list[float]] = field(default_factory=dict)
    baseline: dict[str, list[float]] = field(default_factory=dict)
    imported: str = ""  # where the baseline's processes imported craft_callbacks from
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def baseline_commit(requested: str | None, previous: PreviousReport | None) -> str | None:
    """The commit to compare the hot path against: ``--baseline``, else the one the report replaced
    measured; None for ``--baseline none`` or when there is none."""
    if requested:
        return None if requested == "none" else requested
    if previous and previous.commit.split() and previous.commit != "unknown":
        return previous.commit.split()[0]
    return None


def run_hot_path_ab(commit: str, pairs: int, quick: bool) -> HotPathAB:
    """``pairs`` x (this tree, ``commit``) runs of ``bench_recorder.py``, alternating, each in its own
    process: the same machine, the same minutes, so that the load hits both alike."""
    ab = HotPathAB(commit)
    started = time.perf_counter()
    arguments = next(bench for bench in benches() if bench.name == "recorder")
    arguments_used = arguments.quick if quick else arguments.full
    print(f"\n=== hot path A/B: bench_recorder.py here and at {commit}, {pairs} pair(s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        folder = Path(tmp)
        try:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "src", "benchmarks"],
                capture_output=True,
                check=True,
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                if hasattr(tarfile, "data_filter"):  # Python 3.12, and 3.10.12 / 3.11.4 on
                    tar.extractall(folder / "tree", filter="data")
                else:
                    tar.extractall(folder / "tree")  # our own repository's archive
        except (OSError, subprocess.CalledProcessError, tarfile.TarError) as error:
            ab.errors.append(f"could not take {commit} from git: {error}")
            return ab
        tree = folder / "tree"
        baseline_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tree / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        found = subprocess.run(
            [sys.executable, "-c", "import craft_callbacks; print(craft_callbacks.__file__)"],
            cwd=tree,
            env=baseline_env,
            capture_output=True,
            text=True,
            check=False,
        )
        ab.imported = found.stdout.strip().replace(str(tree), f"<{commit}>")
        if not found.stdout.strip().startswith(str(tree)):
            ab.errors.append(
                f"the baseline processes would import craft_callbacks from {found.stdout.strip()}"
            )
            return ab
        for index in range(pairs):
            for which, script, env, cwd in (
                ("now", HERE / "bench_recorder.py", os.environ, ROOT),
                ("baseline", tree / "benchmarks" / "bench_recorder.py", baseline_env, tree),
            ):
                out = folder / f"{which}-{index}.json"
                done = subprocess.run(
                    [sys.executable, str(script), *arguments_used, "--json", str(out)],
                    cwd=cwd,
                    env=dict(env),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0 or not out.exists():
                    ab.errors.append(f"{which} run {index + 1} failed: {(done.stderr or done.stdout)[-300:]}")
                    continue
                ratios = ab.now if which == "now" else ab.baseline
                for row in json.loads(out.read_text())["log_step"]:
                    if row.get("ratio") is not None:
                        ratios.setdefault(row["case"], []).append(row["ratio"])
                print(f"=== hot path A/B: {which} run {index + 1} done", flush=True)
            ab.pairs = index + 1
    ab.seconds = time.perf_counter() - started
    return ab


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{ratio(statistics.median(values))} ({ratio(low)}-{ratio(high)})"


def within_noise(now: list[float], before: list[float]) -> bool | None:
    """Whether either side's range (min-max over its runs) holds the other side's median; None with
    fewer than two runs a side (no range to judge by)."""
    if len(now) < 2 or len(before) < 2:
        return None
    return min(now) <= statistics.median(before) <= max(now) or min(before) <= statistics.median(now) <= max(
        before
    )


def caller_cost_goal(ab: HotPathAB | None) -> list[Goal]:
    """(e): the hot path's goal rows (floats) unchanged within noise against the baseline commit."""
    if ab is None:
        return []
    cases = [case for case in ab.now if case.startswith("floats")]
    judged = {case: within_noise(ab.now[case], ab.baseline.get(case, [])) for case in cases}
    measured = "; ".join(
        f"{case}: {spread(ab.now[case])} here, {spread(ab.baseline.get(case, []))} at {ab.commit}"
        for case in cases
    )
    passed = None if not judged or None in judged.values() else all(judged.values())
    return [
        Goal(
            "(e) reliability",
            f"the hot path's ours/floor unchanged within noise against {ab.commit} (A/B, {ab.pairs} pairs)",
            measured or "; ".join(ab.errors) or "no runs",
            passed,
        )
    ]


def render_caller_cost(
    recorder: Bench | None, previous: PreviousReport | None, ab: HotPathAB | None = None
) -> list[str]:
    """The hot path's ratios of ``bench_recorder.py`` in this run, beside the same script's at the
    baseline commit run alternately with this tree (or, without them, the report replaced)."""
    if recorder is None or recorder.result is None:
        why = "it did not run" if recorder is None else f"it failed ({recorder.error})"
        return [f"`bench_recorder.py` measured nothing in this run: {why}."]
    result = recorder.result
    compared = ab is not None and ab.pairs > 0 and bool(ab.now) and bool(ab.baseline)
    header = ["case", "floor µs", "ours µs", "ours/floor", "goal", "result"]
    if compared:
        assert ab is not None
        header += ["A/B here", f"A/B at {ab.commit}", "change", "within noise"]
    else:
        header += ["before", "change"]
    rows = []
    for row in result["log_step"]:
        if "note" in row:
            rows.append([row["case"], *["-"] * (len(header) - 2), row["note"]])
            continue
        cells = [
            row["case"],
            num(row["floor_us"], 3),
            num(row["ours_us"], 3),
            f"**{ratio(row['ratio'])}**",
            "<= 3x floor" if row["goal"] else "(info)",
            verdict(row["pass"]),
        ]
        if compared:
            assert ab is not None
            now, before = ab.now.get(row["case"], []), ab.baseline.get(row["case"], [])
            change = statistics.median(now) / statistics.median(before) - 1 if now and before else None
            noise = within_noise(now, before)
            cells += [
                spread(now),
                spread(before),
                pct(change),
                "-" if noise is None else "yes" if noise else "**no**",
            ]
        else:
            earlier = previous.rows.get(row["case"]) if previous else None
            before_ratio = earlier[1] / earlier[0] if earlier and earlier[0] else None
            cells += [ratio(before_ratio), pct(row["ratio"] / before_ratio - 1) if before_ratio else "-"]
        rows.append(cells)
    lines = [
        f"`benchmarks/bench_recorder.py`, {recorder.seconds:.0f} s, in this same run: `log_step` with a "
        f"4-key dict, {result['calls']:,} calls, median µs per call over {result['repeats']} interleaved "
        "repeats, next to the floor (a bare loop doing `float()` and `list.append` per key) timed in the "
        "same process; ours/floor is the hot path's ratio (goal of (a): at most 3x).",
        "",
    ]
    if compared:
        assert ab is not None
        lines += [
            f"*A/B*: the same script, {ab.pairs} more time(s) from this tree and as many from commit "
            f"**{ab.commit}** (its `src` and `benchmarks` from `git archive`, `craft_callbacks` imported "
            f"from `{ab.imported}`), alternately, one process each, in the same minutes "
            f"({ab.seconds:.0f} s): ours/floor as median (min-max) over those runs. *change*: median here / "
            "median there - 1; *within noise*: yes when either side's range (min-max) holds the other "
            "side's median: the runs of one commit vary that much between themselves (`-` with one run a "
            "side).",
            "",
        ]
    else:
        where = (
            f"the report this run replaced (commit {previous.commit}, {previous.generated}), from its "
            "section (a)"
            if previous
            else "no earlier report (none was found)"
        )
        lines += [f"*before*: ours/floor in {where}.", ""]
    lines += [*table(header, rows), ""]
    if ab is not None and ab.errors:
        lines += [f"The A/B against {ab.commit} is incomplete: " + "; ".join(ab.errors), ""]
    lines += [
        "The recorder's caller appends to in-memory buffers and wakes its worker thread; delivery, retries "
        "and the spool run on that thread (the caller waits for it only when its backlog passes the limit "
        "that bounds memory), so a fault of the platform or of the spool does not reach `log_step` (the "
        "matrix's `log_step` column above shows its calls during each fault). A ratio measured in one "
        "process is what compares across runs; absolute µs vary with the machine's load.",
    ]
    return lines


def render_ui(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """Section (f): ``bench_ui.py`` renders its own section; its goals become rows of the goals table."""
    sys.path.insert(0, str(HERE))
    try:
        import bench_ui  # imports only the standard library and harness at its top
    finally:
        sys.path.remove(str(HERE))
    lines, goals = bench_ui.render(result)
    return lines, [Goal(UI_GOAL, goal, measured, passed) for goal, measured, passed in goals]


RENDERERS: dict[str, Renderer] = {
    "recorder": render_recorder,
    "huggingface": render_huggingface,
    "lightning": render_lightning,
    "keras": render_keras,
    "platform": render_platform,
    "end_to_end": render_end_to_end,
    "traffic": render_traffic,
    "memory": render_memory,
    "reliability": render_reliability,
    "ui": render_ui,
}

RELIABILITY_TITLE = "(e) Reliability: the fault matrix, and the caller's cost beside it"
UI_TITLE = "(f) Dashboard: `craft-callbacks ui` against `plot` and TensorBoard"
UI_GOAL = "(f) dashboard"
SECTIONS: list[tuple[str, list[tuple[str, str, str]]]] = [
    (
        "(a) Per-event overhead on the training thread",
        [
            ("recorder", "The recorder's hot path", "bench_recorder.py"),
            (
                "huggingface",
                "HuggingFace: `CraftAiCallback.on_log` against HF's integrations",
                "bench_huggingface.py",
            ),
            ("lightning", "Lightning: `CraftAiLogger` against Lightning's loggers", "bench_lightning.py"),
            (
                "keras",
                "Keras: `CraftAiKerasCallback.on_train_batch_end` against Keras callbacks",
                "bench_keras.py",
            ),
            ("platform", "The recorder in a training loop on the platform emulator", "bench_platform.py"),
        ],
    ),
    (
        "(b) End to end: a tiny real training, logging every step",
        [("end_to_end", "", "bench_end_to_end.py")],
    ),
    ("(c) Platform traffic: ours against one SDK call per value", [("traffic", "", "bench_traffic.py")]),
    ("(d) Memory: a long run through the recorder", [("memory", "", "bench_memory.py")]),
    (
        RELIABILITY_TITLE,
        [
            (
                "reliability",
                "The fault matrix: values logged, delivered, duplicated and lost",
                "bench_reliability.py",
            )
        ],
    ),
    (UI_TITLE, [("ui", "", "bench_ui.py")]),
]

MEANINGS = {
    "(b)": [
        "What the numbers mean: *wall s* is the median wall time of the training call alone "
        "(`trainer.train()` / `trainer.fit()` / `model.fit()`), which includes what the framework runs "
        "inside it: starting the logger's run and closing or finalizing it (our recorder's `close()`, "
        "MLflow's `end_run()`). Building the model and trainer is not timed; every variant runs once as a "
        "warm-up first. *overhead* = median wall / median no-logger wall - 1 (the figure the goal is judged "
        "on); *paired* = the median over repeats of each run against the no-logger run of the same repeat; "
        "*min/min* = the fastest run against the fastest no-logger run (the least disturbed by other "
        "processes); *cpu s* = the process's CPU time, all threads (a logger's background threads "
        "included); *ours/peer overhead* = our overhead / the peer's (shown when both are positive); "
        "*recorded* = the loss list's values read back after each run (ours must hold one per step). "
        "Keras's `CSVLogger` and DVCLive's Keras callback write once per epoch only (one value here), so "
        "they do less work than ours with `log_every_n_steps=1`. The *spread* of the no-logger runs is the "
        "run-to-run noise of this machine: an overhead smaller than it is not resolved by this run.",
    ],
}


def render(bench: Bench) -> tuple[list[str], list[Goal]]:
    if bench.result is None:
        return [f"**Did not run**: {bench.error}.", "", "```", *bench.tail[-15:], "```"], []
    try:
        lines, goals = RENDERERS[bench.name](bench.result)
    except Exception as error:
        lines = [f"**Could not render the results** ({type(error).__name__}: {error}).", ""]
        lines += ["```", *traceback.format_exc().splitlines()[-6:], "```"]
        goals = []
    if bench.error:
        lines = [f"**Failed**: {bench.error}; the figures below are what it wrote.", "", *lines]
        lines += ["", "```", *bench.tail[-15:], "```"]
    return lines, goals


def lower_than_every_peer(goal: str, ours: str, figures: list[str], lost: list[str], judged: bool) -> Goal:
    """An (a) goal: ``ours`` and each peer's figure measured; PASS when no peer that ran is lower."""
    measured = f"{ours}; " + ", ".join(figures) + (f"; not lower than {', '.join(lost)}" if lost else "")
    return Goal("(a) per event", goal, measured, (not lost) if judged else None)


def adapter_goal(result: dict[str, Any], goal: str, figure: str, ours_note: str, judged_on: str) -> Goal:
    """HuggingFace's or Lightning's (a) goal from its ``ours < peer`` goals, each judged on ``judged_on``;
    the figures are the column ``figure`` of its rows."""
    peers = [g for g in result["goals"] if g["goal"].startswith("ours < ") and g[judged_on] is not None]
    ours = next(r for r in result["rows"] if r["name"].startswith("ours"))
    return lower_than_every_peer(
        goal,
        f"ours {num(ours[figure])} µs{ours_note}",
        [f"{r['name']} {num(r[figure])}" for r in result["rows"] if "ours_over_peer" in r],
        [g["goal"][7:] for g in peers if not g[judged_on]],
        bool(peers),
    )


def per_event_goals(runs: dict[str, Bench]) -> list[Goal]:
    """(a): ours lower than every peer of its framework, per event (the adapter issues' goal)."""
    goals: list[Goal] = []
    with contextlib.suppress(Exception):
        goals.append(
            adapter_goal(
                runs["huggingface"].result,
                "HuggingFace `on_log`: ours lower than every peer",
                "median_us",
                " (median call)",
                "median",
            )
        )
    with contextlib.suppress(Exception):
        goals.append(
            adapter_goal(
                runs["lightning"].result,
                "Lightning `log_metrics` + `save`: ours lower than every peer",
                "us_per_event",
                "",
                "pass",
            )
        )
    with contextlib.suppress(Exception):
        for backend in runs["keras"].result:
            rows = backend["rows"]
            for own in [r for r in rows if r["role"] == "ours"]:
                judged = [(r["case"], r["end_median_us"], r["vs"][own["case"]]) for r in rows if "vs" in r]
                goals.append(
                    lower_than_every_peer(
                        f"Keras ({backend['versions']['backend']}) `on_train_batch_end`, {own['case']}: ours "
                        "lower than every peer that runs",
                        f"ours {num(own['end_median_us'], 3)} µs",
                        [f"{case} {num(us, 3)}" for case, us, _ in judged],
                        [case for case, _, v in judged if not v["pass"]],
                        bool(judged),
                    )
                )
    return goals


def section(
    title: str,
    parts: list[tuple[str, str, str]],
    runs: dict[str, Bench],
    previous: PreviousReport | None,
    ab: HotPathAB | None = None,
) -> tuple[list[str], list[Goal]]:
    """One ``## title`` section: a subsection per benchmark of ``parts`` that ran; nothing when none did."""
    present = [(name, sub, script) for name, sub, script in parts if name in runs]
    if not present:
        return [], []
    lines: list[str] = [f"## {title}", ""]
    goals: list[Goal] = []
    for name, subtitle, script in present:
        bench = runs[name]
        if subtitle:
            lines += [f"### {subtitle}", ""]
        lines += [f"`benchmarks/{script}`, {bench.seconds:.0f} s.", ""]
        rendered, found = render(bench)
        lines += [*rendered, ""]
        goals += found
    if title == RELIABILITY_TITLE:
        lines += [
            "### The caller's cost: the recorder's hot path, measured in the same run",
            "",
            *render_caller_cost(runs.get("recorder"), previous, ab),
            "",
        ]
        goals += caller_cost_goal(ab)
    for paragraph in MEANINGS.get(title[:3], []):
        lines += [paragraph, ""]
    return lines, goals


def report(
    runs: dict[str, Bench],
    command: str,
    started: datetime.datetime,
    seconds: float,
    loads: tuple[str, str],
    quick: bool,
    commit: str,
    previous: PreviousReport | None = None,
    ab: HotPathAB | None = None,
) -> str:
    sections: list[str] = []
    goals: list[Goal] = per_event_goals(runs)
    for title, parts in SECTIONS:
        lines, found = section(title, parts, runs, previous, ab)
        sections += lines
        goals += found
    if "traffic" in runs and runs["traffic"].result is None:
        goals.append(Goal("(c) platform traffic", "at least 100x fewer requests", "did not run", None))
    if "memory" in runs and runs["memory"].result is None:
        goals.append(Goal("(d) memory", "peak RSS growth < 50 MB", "did not run", None))
    if "reliability" in runs and runs["reliability"].result is None:
        goals.append(Goal("(e) reliability", "each value delivered once, nothing lost", "did not run", None))
    if "ui" in runs and runs["ui"].result is None:
        goals.append(Goal(UI_GOAL, "the dashboard's three goals", "did not run", None))
    failed = [bench for bench in runs.values() if bench.error]
    head = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {started:%Y-%m-%d %H:%M} UTC; the whole run took "
        f"{seconds / 60:.1f} minutes. Every figure below is from that one run: run the command again to "
        "regenerate this file (absolute times vary from run to run; ratios measured in one process are "
        "what to compare). Peers come from the `bench` extra (`pip install -c constraints.txt -e "
        "'.[bench]'`), all offline: local files, and a loopback server for the platform.",
        "",
        *(
            [
                "**A quick smoke run (`--quick`): fewer calls, steps and repeats than the issue's workloads. "
                "Not the figures of record.**",
                "",
            ]
            if quick
            else []
        ),
        "## Machine and versions",
        "",
        *table(
            ["", ""],
            [
                ["CPU", f"{cpu_model()}, {os.cpu_count()} logical cores"],
                ["memory", memory_total()],
                ["OS", os_name()],
                ["load average (1, 5, 15 min)", f"at the start {loads[0]}; at the end {loads[1]}"],
                ["versions", ", ".join(f"{name} {version}" for name, version in versions())],
                ["commit measured", commit],
            ],
        ),
        "",
        "The machine may be shared with other processes (see the load average), so timings carry noise; "
        "every comparison interleaves its variants in one process so that noise hits them alike, and "
        "medians are reported.",
        "",
        "## Goals of the issue",
        "",
        *table(
            ["workload", "goal", "measured", "result"],
            [[goal.workload, goal.goal, goal.measured, verdict(goal.passed)] for goal in goals],
        ),
        "",
    ]
    missed = [goal for goal in goals if goal.passed is False]
    if missed:
        head += [missed_line([(goal.workload, goal.goal) for goal in missed]), ""]
    if failed:
        head += [
            "**Benchmarks that failed:** "
            + ", ".join(f"`{bench.script}` ({bench.error})" for bench in failed)
            + "; their sections show the end of their output.",
            "",
        ]
    timing = [
        "## How long each benchmark took",
        "",
        *table(
            ["script", "seconds", "status"],
            [[f"`{bench.script}`", f"{bench.seconds:.0f}", bench.error or "ok"] for bench in runs.values()],
        ),
        "",
    ]
    return "\n".join([*head, *sections, *timing]).rstrip() + "\n"


SPLICE_GOAL = "| (e) reliability |"


def splice(
    text: str,
    lines: list[str],
    goals: list[Goal],
    title: str = RELIABILITY_TITLE,
    goal_row: str = SPLICE_GOAL,
) -> str:
    """``text`` (a report) with its section ``title`` (by default (e); found by its letter) replaced by
    ``lines`` (added before the timings when it has none) and its rows of the goals table that start with
    ``goal_row`` replaced by ``goals``; the rest as it was."""
    old = text.splitlines()
    heading = f"## {title[:3]}"
    start = next((i for i, line in enumerate(old) if line.startswith(heading)), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
    else:
        start = end = next(
            (i for i, line in enumerate(old) if line == "## How long each benchmark took"), len(old)
        )
    new = [*old[:start], *lines, *old[end:]]
    rows = [f"| {g.workload} | {g.goal} | {g.measured} | {verdict(g.passed)} |" for g in goals]
    new = [line for line in new if not line.startswith(goal_row)]
    if "## Goals of the issue" in new:
        at = new.index("## Goals of the issue") + 1
        while at < len(new) and not new[at].startswith("|"):
            at += 1
        while at < len(new) and new[at].startswith("|"):
            at += 1
        new[at:at] = rows
        refresh_missed(new, new.index("## Goals of the issue"))
    return "\n".join(new).rstrip() + "\n"


MISSED_TAIL = (
    ". The measured figures are in the table above and in each section below; the benchmarks were not "
    "tuned to pass."
)


def missed_line(misses: list[tuple[str, str]]) -> str:
    """The report's "Missed" paragraph for ``misses`` (workload, goal)."""
    return f"**Missed ({len(misses)}):** " + "; ".join(f"{w}: {g}" for w, g in misses) + MISSED_TAIL


def refresh_missed(lines: list[str], goals_at: int) -> None:
    """The "Missed" paragraph under the goals table (heading at ``goals_at``) rewritten from the table's
    MISS rows, in place: added where there is none, removed where nothing is missed."""
    at = goals_at + 1
    while at < len(lines) and not lines[at].startswith("|"):
        at += 1
    misses = []
    while at < len(lines) and lines[at].startswith("|"):
        cells = [cell.strip() for cell in lines[at].strip().strip("|").split(" | ")]
        if len(cells) >= 4 and cells[-1] == "MISS":
            misses.append((cells[0], cells[1]))
        at += 1
    end = next((i for i in range(at, len(lines)) if lines[i].startswith("## ")), len(lines))
    found = next((i for i in range(at, end) if lines[i].startswith("**Missed (")), None)
    if found is not None and misses:
        lines[found] = missed_line(misses)
    elif found is not None:
        del lines[found : found + 2 if found + 1 < len(lines) and not lines[found + 1] else found + 1]
    elif misses:
        lines[at:at] = ["", missed_line(misses)]


def hot_path_ab(
    args: argparse.Namespace, previous: PreviousReport | None, names: set[str]
) -> HotPathAB | None:
    """The A/B of the hot path against the baseline commit, when this run has sections (e) and (a)."""
    commit = baseline_commit(args.baseline, previous)
    if commit is None or not {"recorder", "reliability"} <= names or args.baseline_pairs < 1:
        return None
    return run_hot_path_ab(commit, 1 if args.quick else args.baseline_pairs, args.quick)


def reliability_only(args: argparse.Namespace, output: Path, previous: PreviousReport | None) -> int:
    """``--reliability``: bench_recorder.py and bench_reliability.py, their section put into ``output``."""
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    load_start = load()
    commit = source_commit()
    command = ".venv/bin/python benchmarks/run_all.py --reliability" + (" --quick" if args.quick else "")
    if args.baseline:
        command += f" --baseline {args.baseline}"
    selected = [bench for bench in benches() if bench.name in ("recorder", "reliability")]
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        for bench in selected:
            try:
                run_bench(bench, args.quick, Path(tmp))
            except Exception as error:  # the report says so
                bench.error = f"could not be run: {type(error).__name__}: {error}"
                print(f"=== {bench.name}: {bench.error}", flush=True)
        if args.keep_json:
            args.keep_json.mkdir(parents=True, exist_ok=True)
            for file in Path(tmp).glob("*.json"):
                shutil.copy(file, args.keep_json / file.name)
    runs = {bench.name: bench for bench in selected}
    ab = hot_path_ab(args, previous, set(runs))
    title, parts = next((title, parts) for title, parts in SECTIONS if title == RELIABILITY_TITLE)
    lines, goals = section(title, parts, runs, previous, ab)
    seconds = time.perf_counter() - clock
    note = (
        f"*This section was generated on its own by `{command}` on {started:%Y-%m-%d %H:%M} UTC "
        f"({seconds:.0f} s; commit measured: {commit}; load average at the start {load_start}, at the end "
        f"{load()}), not by the run the head of this file describes: the other sections are from that "
        "run. Run the same command to regenerate this section alone, or the full run to regenerate "
        "everything.*"
    )
    if args.quick:
        note += " **A quick smoke run: not the figures of record.**"
    lines[2:2] = [note, ""]
    for goal in goals:
        goal.measured += " (the separate run of section (e))"
    text = output.read_text() if output.exists() else ""
    if not text:
        text = "# Benchmarks\n"
    if args.quick and not args.output:
        output = Path(tempfile.mkdtemp(prefix="bench-quick-")) / "BENCHMARKS.md"
    output.write_text(splice(text, lines, goals))
    print(f"\n=== done in {seconds / 60:.1f} min; section (e) written into {output}")
    failed = [bench.name for bench in selected if bench.error]
    if failed:
        print(f"=== failed: {', '.join(failed)}")
    return 0


def ui_only(args: argparse.Namespace, output: Path) -> int:
    """``--ui``: bench_ui.py alone, its section (f) and goal rows put into ``output``, the rest kept."""
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    load_start = load()
    commit = source_commit()
    command = ".venv/bin/python benchmarks/run_all.py --ui" + (" --quick" if args.quick else "")
    selected = [bench for bench in benches() if bench.name == "ui"]
    with tempfile.TemporaryDirectory(prefix="bench-ui-all-") as tmp:
        for bench in selected:
            try:
                run_bench(bench, args.quick, Path(tmp))
            except Exception as error:  # the report says so
                bench.error = f"could not be run: {type(error).__name__}: {error}"
                print(f"=== {bench.name}: {bench.error}", flush=True)
        if args.keep_json:
            args.keep_json.mkdir(parents=True, exist_ok=True)
            for file in Path(tmp).glob("*.json"):
                shutil.copy(file, args.keep_json / file.name)
    runs = {bench.name: bench for bench in selected}
    title, parts = next((title, parts) for title, parts in SECTIONS if title == UI_TITLE)
    lines, goals = section(title, parts, runs, None)
    if runs["ui"].result is None:
        goals.append(Goal(UI_GOAL, "the dashboard's three goals", "did not run", None))
    seconds = time.perf_counter() - clock
    note = (
        f"*This section was generated on its own by `{command}` on {started:%Y-%m-%d %H:%M} UTC "
        f"({seconds:.0f} s; commit measured: {commit}; load average at the start {load_start}, at the end "
        f"{load()}; {cpu_model()}, {os.cpu_count()} logical cores), not by the run the head of this file "
        "describes. Run the same command to regenerate this section alone, or the full run to regenerate "
        "everything.*"
    )
    if args.quick:
        note += " **A quick smoke run: not the figures of record.**"
    lines[2:2] = [note, ""]
    for goal in goals:
        goal.measured += " (the separate run of section (f))"
    text = output.read_text() if output.exists() else ""
    if not text:
        text = "# Benchmarks\n"
    if args.quick and not args.output:
        output = Path(tempfile.mkdtemp(prefix="bench-quick-")) / "BENCHMARKS.md"
    output.write_text(splice(text, lines, goals, UI_TITLE, f"| {UI_GOAL} |"))
    print(f"\n=== done in {seconds / 60:.1f} min; section (f) written into {output}")
    if runs["ui"].error:
        print(f"=== failed: ui ({runs['ui'].error})")
        return 1
    return 0


def main() -> int:
    parser = harness.arg_parser(__doc__, json_option=False)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer calls and repeats")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[bench.name for bench in benches()])
    parser.add_argument(
        "--reliability",
        action="store_true",
        help="run bench_reliability.py and bench_recorder.py only and replace section (e) of the report, "
        "keeping the rest of it",
    )
    parser.add_argument(
        "--ui",
        action="store_true",
        help="run bench_ui.py only and replace section (f) of the report (the dashboard), keeping the rest",
    )
    parser.add_argument(
        "--baseline",
        metavar="COMMIT",
        help="section (e): run bench_recorder.py alternately from this tree and from COMMIT (default: the "
        "commit the report replaced measured; 'none': no A/B)",
    )
    parser.add_argument(
        "--baseline-pairs",
        type=int,
        default=3,
        metavar="N",
        help="A/B pairs of bench_recorder.py (default 3)",
    )
    parser.add_argument("--output", type=Path, help="where to write the report (default: BENCHMARKS.md)")
    parser.add_argument("--keep-json", type=Path, metavar="DIR", help="copy every script's JSON here")
    args = parser.parse_args()
    if args.reliability and args.only:
        parser.error("--reliability runs its two benchmarks: no --only with it")
    if args.ui and (args.only or args.reliability):
        parser.error("--ui runs bench_ui.py alone: no --only or --reliability with it")
    # The report replaced: its hot-path figures are the "before" of section (e).
    previous = previous_report(
        args.output if args.output and args.output.exists() else ROOT / "BENCHMARKS.md"
    )
    if args.reliability:
        return reliability_only(args, args.output or ROOT / "BENCHMARKS.md", previous)
    if args.ui:
        return ui_only(args, args.output or ROOT / "BENCHMARKS.md")
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    load_start = load()
    commit = source_commit()  # at the start: what the scripts below import
    command = ".venv/bin/python benchmarks/run_all.py" + (" --quick" if args.quick else "")
    if args.only:
        command += " --only " + " ".join(args.only)
    if args.baseline:
        command += f" --baseline {args.baseline}"
    selected = [bench for bench in benches() if not args.only or bench.name in args.only]
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        folder = Path(tmp)
        for bench in selected:
            try:
                run_bench(bench, args.quick, folder)
            except Exception as error:  # the runner goes on
                bench.error = f"could not be run: {type(error).__name__}: {error}"
                print(f"=== {bench.name}: {bench.error}", flush=True)
        if args.keep_json:
            args.keep_json.mkdir(parents=True, exist_ok=True)
            for file in folder.glob("*.json"):
                shutil.copy(file, args.keep_json / file.name)
        runs = {bench.name: bench for bench in selected}
        ab = hot_path_ab(args, previous, set(runs))
        seconds = time.perf_counter() - clock
        text = report(runs, command, started, seconds, (load_start, load()), args.quick, commit, previous, ab)
        if args.output:
            output = args.output
        elif args.quick:
            output = Path(tempfile.mkdtemp(prefix="bench-quick-")) / "BENCHMARKS.md"
        else:
            output = ROOT / "BENCHMARKS.md"
        output.write_text(text)
    print(f"\n=== all done in {seconds / 60:.1f} min; report written to {output}")
    failed = [bench.name for bench in selected if bench.error]
    if failed:
        print(f"=== failed: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
