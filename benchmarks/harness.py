"""What the benchmark scripts share: the floor, medians, verdicts, printed tables, JSON, child processes,
and the formatting of their sections of BENCHMARKS.md.

Each script of this folder imports it as ``harness``: run as ``python benchmarks/bench_x.py`` (as
``run_all.py`` runs them), a script's own folder is the first entry of ``sys.path``. Importing it
imports the standard library only (``count_local`` imports ``craft_callbacks`` when called), so it
changes nothing of what a script sets up before its own imports: the environment that the
libraries it measures read when imported.

The workloads, the repeats and their interleaving stay in each script; the floor loop is here
because several scripts time the same one. Each script renders its own section of the report
(its ``render(result)``, from the JSON it writes); the cells, tables and goal rows those sections
are made of are here, written once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
# What makes a process "inside a Craft AI execution" (the SDK's credentials, the run).
PLATFORM_ENV = (
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
    "CRAFT_AI_EXECUTION_ID",
)

GoalDict = dict[str, Any]  # a goal as a script's JSON holds it: "goal", "pass" and "detail"


# -- command line, machine, JSON -------------------------------------------------------


def arg_parser(doc: str | None, json_option: bool = True) -> argparse.ArgumentParser:
    """A script's parser: its docstring's first line as description, and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    if json_option:
        parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def contender_parser(doc: str | None, calls_help: str) -> argparse.ArgumentParser:
    """The parser of a benchmark of contenders (the floor, ours, peers): ``--calls``, ``--repeats``,
    ``--only`` and ``--json``."""
    parser = arg_parser(doc)
    parser.add_argument("--calls", type=int, default=2_000, help=calls_help)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per contender")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="peers whose name contains NAME (ours and the floor always)"
    )
    return parser


def python_version() -> str:
    return sys.version.split()[0]


def running_here() -> dict[str, str]:
    """The head of every result: the Python version and the platform."""
    return {"python": python_version(), "machine": platform.platform()}


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """The installed version of each of ``packages``, in their order; those not installed left out."""
    found: dict[str, str] = {}
    for package in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def not_installed(*modules: str) -> str | None:
    """None when every module can be imported, else ``"not installed: ..."`` (why a peer is skipped)."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def versions_line(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {number}" for name, number in versions.items())


def write_json(path: Path | None, document: Any) -> None:
    """The results, indented, to ``path`` (nothing when there is no path)."""
    if path is not None:
        path.write_text(json.dumps(document, indent=2) + "\n")


# -- the process's surroundings ----------------------------------------------------------


@contextlib.contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    """Run in ``folder``: what a peer writes to its working directory (DVCLive's dvc.yaml, the
    recorder's spool) lands there."""
    here = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The frameworks' and peers' prints and warnings (deprecations, 'View run at...', 'Creating
    experiment'...) kept off the table: stdout, stderr and warnings."""
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


def quiet_logging(names: Iterable[str]) -> None:
    """The named loggers' info messages ("GPU available", tips...) off the table."""
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)


def clear_environ(names: Iterable[str]) -> None:
    for name in names:
        os.environ.pop(name, None)


@contextlib.contextmanager
def restored_environ(*names: str) -> Iterator[None]:
    """The environment variables ``names`` as they were before, once the block ends."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def peers_folder(prefix: str, cleared_env: Iterable[str], loggers: Iterable[str]) -> Iterator[Path]:
    """A temporary working folder for a run of peers, with the environment variables that would send
    a peer elsewhere (``cleared_env``) cleared and the peers' ``loggers`` quiet."""
    clear_environ(cleared_env)
    quiet_logging(loggers)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, working_directory(Path(tmp)):
        yield Path(tmp)


def use_platform(token: str, url: str) -> None:
    """This process talks to the platform at ``url`` (the emulator): ``sink="auto"`` and
    ``CraftAiSdk()`` read these; a local store named in the environment would take precedence."""
    os.environ.pop("CRAFT_CALLBACKS_STORE", None)
    os.environ.update(CRAFT_AI_SDK_TOKEN=token, CRAFT_AI_ENVIRONMENT_URL=url, CRAFT_AI_CONTROL_URL=url)


def import_quietly(module: str) -> None:
    """Import ``module`` (when installed) with the warning filters restored after: ``craft_ai_sdk``
    sets a process-wide "always" filter for DeprecationWarning when imported."""
    if importlib.util.find_spec(module) is not None:
        with warnings.catch_warnings():
            importlib.import_module(module)


def error_text(error: BaseException, limit: int) -> str:
    """``Type: first line of the message`` (at most ``limit`` characters of it)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:limit] if lines else ''}".rstrip(": ")


# -- peers -----------------------------------------------------------------------------


def selected(contenders: list[Any], only: list[str] | None, always: Sequence[str]) -> list[Any]:
    """``contenders`` whose ``name`` is in ``always`` or contains one of ``only`` (all without ``only``)."""
    if not only:
        return contenders
    return [c for c in contenders if c.name in always or any(o in c.name for o in only)]


def mlflow_file_uri(folder: Path) -> str:
    return (folder.parent / "mlruns").resolve().as_uri()  # one file store for every repeat


def mlflow_sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{(folder.parent / 'mlflow.db').resolve()}"  # one database for every repeat


def count_local(path: Path, name: str) -> int:
    """Values of list ``name`` in the only run of the local store at ``path`` (what ours recorded)."""
    from craft_callbacks import LocalStore  # here: a script sets the environment before it is imported

    store = LocalStore(path)
    try:
        runs = store.executions()
        return len(store.list_series(runs[0]["execution_id"], name)) if runs else 0
    finally:
        store.close()


# -- timing ----------------------------------------------------------------------------


def time_floor(batches: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> float:
    """Seconds for the floor over ``batches``: float() and list.append per key, nothing else."""
    lists: dict[str, list[float]] = {key: [] for key in keys}
    start = time.perf_counter()
    for metrics in batches:
        for key, value in metrics.items():
            lists[key].append(float(value))
    return time.perf_counter() - start


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def all_recorded(counts: Sequence[int], expected: int) -> bool | None:
    """Whether every run recorded ``expected`` values (None when no run was read back)."""
    return all(count == expected for count in counts) if counts else None


# -- report ----------------------------------------------------------------------------


def verdict(passed: bool | None) -> str:
    return "-" if passed is None else "PASS" if passed else "MISS"


def recorded_text(counts: Sequence[int], every: bool | None, what: str = "") -> str:
    """``all (2000 loss)`` / ``NOT all (1999/2000 loss)``: the values read back; "" when none was."""
    if every is None:
        return ""
    numbers = "/".join(str(count) for count in sorted(set(counts)))
    return f"{'all' if every else 'NOT all'} ({numbers}{' ' + what if what else ''})"


def cell(value: float | None, width: int, spec: str, suffix: str = "") -> str:
    """``value`` right-aligned in ``width`` with ``spec`` and ``suffix``, or as many blanks."""
    return f"{value:>{width}{spec}}{suffix}" if value is not None else " " * (width + len(suffix))


def print_header(header: str) -> None:
    print(header)
    print("-" * len(header))


def print_goals(
    goals: list[GoalDict], judged: Callable[[GoalDict], str] | None = None, width: int = 4
) -> None:
    """One line per goal: its name, the verdict (``judged(goal)``, by default on ``pass``), the detail."""
    goal_width = max(len(goal["goal"]) for goal in goals)
    for goal in goals:
        result = judged(goal) if judged else verdict(goal["pass"])
        print(f"  {goal['goal']:<{goal_width}}  {result:<{width}}  {goal['detail']}")


def report_contenders(
    args: argparse.Namespace,
    versions: dict[str, str],
    summary: dict[str, Any],
    print_tables: Callable[[dict[str, Any], int, int], None],
) -> None:
    """The end of a benchmark of contenders: the versions and its tables printed, its JSON written (the
    machine, the versions, ``--calls``, ``--repeats`` and ``summary``)."""
    print(versions_line(versions))
    print_tables(summary, args.calls, args.repeats)
    document = {**running_here(), "versions": versions, "calls": args.calls, "repeats": args.repeats}
    write_json(args.json, {**document, **summary})


# -- BENCHMARKS.md: the cells, tables and goal rows of each script's section ----------------


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


def yes_no(value: Any, no: str = "**no**") -> str:
    return "-" if value is None else "yes" if value else no


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; a ``|`` inside a cell escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(entry.replace("|", "\\|") for entry in row) + " |" for row in rows]
    return lines


@dataclass
class Goal:
    """One row of the report's goals table: PASS, MISS, or ``-`` (None: not judged)."""

    workload: str
    goal: str
    measured: str
    passed: bool | None


Rendered = tuple[list[str], list[Goal]]  # what each script's ``render(result)`` returns


def lower_than_every_peer(goal: str, ours: str, figures: list[str], lost: list[str], judged: bool) -> Goal:
    """A goal of section (a): ``ours`` and each peer's figure measured; PASS when no peer that ran is
    lower (``lost``: the peers that were)."""
    measured = f"{ours}; " + ", ".join(figures) + (f"; not lower than {', '.join(lost)}" if lost else "")
    return Goal("(a) per event", goal, measured, (not lost) if judged else None)


def adapter_goal(result: dict[str, Any], goal: str, figure: str, ours_note: str, judged_on: str) -> Goal:
    """HuggingFace's or Lightning's goal of section (a) from its ``ours < peer`` goals, each judged on
    ``judged_on``; the figures are the column ``figure`` of its rows."""
    peers = [g for g in result["goals"] if g["goal"].startswith("ours < ") and g[judged_on] is not None]
    ours = next(r for r in result["rows"] if r["name"].startswith("ours"))
    return lower_than_every_peer(
        goal,
        f"ours {num(ours[figure])} µs{ours_note}",
        [f"{r['name']} {num(r[figure])}" for r in result["rows"] if "ours_over_peer" in r],
        [g["goal"][7:] for g in peers if not g[judged_on]],
        bool(peers),
    )


# -- child processes -------------------------------------------------------------------


@dataclass
class Child:
    returncode: int
    result: Any  # what it wrote to --json; None when it exited non-zero or wrote nothing
    output: str  # its stdout and stderr when captured, else ""


def run_child(
    script: str, arguments: list[str], env: Mapping[str, str] | None = None, capture: bool = False
) -> Child:
    """``script`` in a process of its own with ``arguments`` and ``--json`` into a temporary folder;
    its JSON read back. Its output goes to this process's, unless ``capture``."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(script).resolve()), *arguments, "--json", str(out)]
        done = subprocess.run(command, env=env, capture_output=capture, text=True, check=False)
        result = json.loads(out.read_text()) if done.returncode == 0 and out.exists() else None
    return Child(done.returncode, result, (done.stdout or "") + (done.stderr or ""))
