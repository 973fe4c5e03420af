"""Run every benchmark, each in its own process, and write BENCHMARKS.md from their results.

The one entry command of the benchmark suite (overhead, requests and memory,
against the trackers users would pick instead):

    .venv/bin/python benchmarks/run_all.py            # the full run, writes BENCHMARKS.md (15-30 min)
    .venv/bin/python benchmarks/run_all.py --quick    # a smoke run: fewer calls and repeats

Each script runs in a subprocess with ``--json`` into a temporary folder; its
output is printed as it goes. A script that fails is reported (with the end
of its output) and the runner goes on. Then the report is written: the
machine, the versions, the command, one section per workload with its table
of medians and ratios (ours / each peer), what each number means, and each
goal with PASS or MISS and the measured figure. Each script renders its own
section from the JSON it wrote (its ``render(result)``, with the cells and
tables of ``harness.py``); this file runs the scripts and assembles their
sections, the head of the report and its goals table.

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
import importlib
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
from types import ModuleType
from typing import Any

import harness
from harness import Goal, Rendered, num, pct, ratio, table, verdict, yes_no

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
                yes_no(noise),
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


# The heading of the goals table, as BENCHMARKS.md has it: --reliability and --ui find the table by it.
GOALS_HEADING = "## Goals"
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


def script_module(script: str) -> ModuleType:
    """``script``, a file beside this one, imported as a module. Some scripts set the environment
    variables their framework reads, then import it, at their top (seconds): this process's
    environment and ``sys.path`` are put back as they were after."""
    environ, path = dict(os.environ), list(sys.path)
    sys.path.insert(0, str(HERE))
    try:
        return importlib.import_module(Path(script).stem)
    finally:
        sys.path[:] = path
        os.environ.clear()
        os.environ.update(environ)


def renderer(script: str) -> Callable[[Any], Rendered]:
    """The ``render(result)`` of ``script``: each script renders its own section from the JSON it
    wrote. Imported only when a section is rendered, once every script has run."""
    render_result: Callable[[Any], Rendered] = script_module(script).render
    return render_result


def render(bench: Bench) -> Rendered:
    """``bench``'s section, rendered by its script; what went wrong in its place when it did not run,
    failed, or its result could not be rendered."""
    if bench.result is None:
        return [f"**Did not run**: {bench.error}.", "", "```", *bench.tail[-15:], "```"], []
    try:
        lines, goals = renderer(bench.script)(bench.result)
    except Exception as error:
        lines = [f"**Could not render the results** ({type(error).__name__}: {error}).", ""]
        lines += ["```", *traceback.format_exc().splitlines()[-6:], "```"]
        goals = []
    if bench.error:
        lines = [f"**Failed**: {bench.error}; the figures below are what it wrote.", "", *lines]
        lines += ["", "```", *bench.tail[-15:], "```"]
    return lines, goals


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
    goals: list[Goal] = []
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
                "**A quick smoke run (`--quick`): fewer calls, steps and repeats than the full workloads. "
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
        GOALS_HEADING,
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
    if GOALS_HEADING in new:
        at = new.index(GOALS_HEADING) + 1
        while at < len(new) and not new[at].startswith("|"):
            at += 1
        while at < len(new) and new[at].startswith("|"):
            at += 1
        new[at:at] = rows
        refresh_missed(new, new.index(GOALS_HEADING))
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


def run_alone(names: tuple[str, ...], args: argparse.Namespace) -> dict[str, Bench]:
    """Run the named benchmarks only (``--reliability``, ``--ui``), each in its own process."""
    selected = [bench for bench in benches() if bench.name in names]
    with tempfile.TemporaryDirectory(prefix=f"bench-{'-'.join(names)}-") as tmp:
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
    return {bench.name: bench for bench in selected}


def write_alone(
    args: argparse.Namespace,
    output: Path,
    lines: list[str],
    goals: list[Goal],
    note: str,
    letter: str,
    *where: str,
) -> Path:
    """Put a section generated on its own (its ``note`` says so) and its goal rows into ``output``,
    keeping the rest of the report; a quick run writes to a temporary folder unless told where."""
    if args.quick:
        note += " **A quick smoke run: not the figures of record.**"
    lines[2:2] = [note, ""]
    for goal in goals:
        goal.measured += f" (the separate run of section ({letter}))"
    text = output.read_text() if output.exists() else ""
    if not text:
        text = "# Benchmarks\n"
    if args.quick and not args.output:
        output = Path(tempfile.mkdtemp(prefix="bench-quick-")) / "BENCHMARKS.md"
    output.write_text(splice(text, lines, goals, *where))
    return output


def reliability_only(args: argparse.Namespace, output: Path, previous: PreviousReport | None) -> int:
    """``--reliability``: bench_recorder.py and bench_reliability.py, their section put into ``output``."""
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.perf_counter()
    load_start = load()
    commit = source_commit()
    command = ".venv/bin/python benchmarks/run_all.py --reliability" + (" --quick" if args.quick else "")
    if args.baseline:
        command += f" --baseline {args.baseline}"
    runs = run_alone(("recorder", "reliability"), args)
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
    output = write_alone(args, output, lines, goals, note, "e")
    print(f"\n=== done in {seconds / 60:.1f} min; section (e) written into {output}")
    failed = [bench.name for bench in runs.values() if bench.error]
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
    runs = run_alone(("ui",), args)
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
    output = write_alone(args, output, lines, goals, note, "f", UI_TITLE, f"| {UI_GOAL} |")
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
