"""Reliability benchmark: the fault matrix, counted. Values logged, delivered, duplicated and lost per fault.

Every scenario of ``tests/fault_matrix.py`` (``FAULTS``: platform errors before
and after storing, unreadable answers, lost answers, refused connections,
outages shorter and longer than the run's close, 401, 429, timeouts after
storing, spool writes that fail, a full or unwritable spool disk) records a
short training run (two list metrics of distinct values, one end-of-run
scalar) through the real ``craft-ai-sdk`` client into the platform emulator
(``tests/platform_emulator.py``), injects its fault part-way, closes the run
and, where the fault outlasted the run, delivers the spool with
``craft-callbacks sync``. Each fault runs in a fresh empty working folder (the
run's ``./craft_metrics`` lands there) against a fresh emulator, with the
environment of a step inside a Craft AI execution on it.

Per fault: the list values logged, delivered (on the platform once the run
and any sync ended), duplicated (extra copies of a value), lost (values
logged that the platform does not hold), whether the lists are exact (every
value once, in order, nothing else), whether the fault was seen (the
platform's answers or the run's warnings show it happened), the values left in
the spool at close and delivered by sync, whether the end-of-run scalars
arrived, the seconds the scenario took, and the time of each ``log_step``
call on the training thread during it (median, p99, worst: the caller must not
wait for the platform or the spool, even during a fault).

Two process kills run too, when ``tests/fault_matrix.py`` defines them
(``kill_training_during_outage``, ``kill_sync``; the report names any it does
not): a training process logging during an outage, SIGKILLed, its spool then
delivered by sync; and ``craft-callbacks sync`` SIGKILLed part-way through a
spool of 6 x 20,000 values, then run again. The killed training logs until it
dies: its "logged" is what it had reported logging when killed, or what the
platform holds when that is more (the platform's lists are a prefix of its
values); the values of its last 3 flush intervals may be lost by design (they
were not yet in the spool): its goal is every value logged before then, as a
prefix, each once.

Goal: every scenario, each value delivered once, nothing lost (the
killed training: nothing but its last 3 flush intervals).

Run: ``.venv/bin/python benchmarks/bench_reliability.py [--only NAME ...] [--steps N] [--list]
[--json PATH]`` (the process runs as root: two faults mount a small tmpfs).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ["CRAFT_CALLBACKS_VERBOSITY"] = "warning"  # read when the first recorder is made

import harness
from harness import Goal, num, table, verdict, yes_no

sys.path.insert(0, str(harness.ROOT / "tests"))  # the fault matrix and the emulator live with the tests

import fault_matrix
from fault_matrix import FAULTS, Fault, run_fault, set_platform_environment
from platform_emulator import PlatformEmulator

PACKAGES = ("craft-callbacks", "craft-ai-sdk")


# -- the caller's cost during a fault ------------------------------------------------


class CallerClock:
    """Times every ``log_step`` call of the recorders a scenario makes (on the training thread).

    ``run_fault`` builds its recorder as ``fault_matrix.MetricRecorder``; for the duration, that name
    is a subclass whose ``log_step`` is the real one with a clock around it (the clock's own cost,
    a few hundred ns, is included)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    @contextmanager
    def around_log_step(self) -> Iterator[CallerClock]:
        original = getattr(fault_matrix, "MetricRecorder", None)
        if original is None:  # the matrix no longer builds its recorder by that name: not timed
            yield self
            return
        clock = self.seconds
        perf = time.perf_counter

        class TimedRecorder(original):  # type: ignore[misc, valid-type]
            def log_step(self, *args: Any, **kwargs: Any) -> Any:
                start = perf()
                try:
                    return super().log_step(*args, **kwargs)
                finally:
                    clock.append(perf() - start)

        fault_matrix.MetricRecorder = TimedRecorder
        try:
            yield self
        finally:
            fault_matrix.MetricRecorder = original

    def summary(self) -> dict[str, Any] | None:
        if not self.seconds:
            return None
        ordered = sorted(self.seconds)
        return {
            "calls": len(ordered),
            "median_us": statistics.median(ordered) * 1e6,
            "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
            "max_us": ordered[-1] * 1e6,
            "over_1ms": sum(1 for seconds in ordered if seconds > 1e-3),
        }


# -- one scenario ----------------------------------------------------------------------


@contextmanager
def fresh_folder() -> Iterator[Path]:
    """A fresh empty working folder (the run's ``./craft_metrics`` lands there), removed after."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp,
        harness.working_directory(Path(tmp)),
    ):
        yield Path(tmp)


def counted(name: str, outcome: Any, platform: PlatformEmulator, seen: bool | None) -> dict[str, Any]:
    """The row of one scenario from its ``Outcome``."""
    sync = getattr(outcome, "sync", None)
    scalars = platform.store.scalars
    logged = getattr(outcome, "logged", {}) or {}
    loss = logged.get("loss") or [None]
    return {
        "name": name,
        "fault_seen": seen,
        "values_logged": outcome.values_logged,
        "delivered": outcome.delivered,
        "duplicated": outcome.duplicated,
        "lost": outcome.lost,
        "allowed_lost": 0,
        "exact": outcome.exact,
        "spooled_at_close": getattr(outcome, "spooled_at_close", None),
        "synced": None if sync is None else sum(sync.values.values()),
        "sync_complete": None if sync is None else sync.complete,
        "scalars_ok": scalars.get((fault_matrix.EXECUTION, "accuracy")) == 0.75
        and scalars.get((fault_matrix.EXECUTION, "loss")) == loss[-1],
        "summary": getattr(outcome, "summary", ""),
        "seconds": getattr(outcome, "seconds", None),
    }


def failed_row(name: str, error: BaseException, started: float) -> dict[str, Any]:
    print(traceback.format_exc(), file=sys.stderr, flush=True)
    return {"name": name, "error": harness.error_text(error, 200), "seconds": time.monotonic() - started}


def run_one_fault(fault: Fault, steps: int) -> dict[str, Any]:
    """``fault`` in a fresh folder, against a fresh emulator, inside an execution on it."""
    started = time.monotonic()
    clock = CallerClock()
    try:
        with (
            fresh_folder(),
            PlatformEmulator() as platform,
            set_platform_environment(platform),
            clock.around_log_step(),
        ):
            outcome = run_fault(fault, platform, steps)
            row = counted(fault.name, outcome, platform, bool(fault.evidence(outcome)))
    except Exception as error:  # the other faults still run; the row says what went wrong
        return failed_row(fault.name, error, started)
    row["caller"] = clock.summary()
    row["kind"] = "fault"
    return row


@dataclass(frozen=True)
class KillScenario:
    """A process-kill scenario of the matrix, as this benchmark calls and counts it."""

    name: str  # the function of tests/fault_matrix.py
    title: str
    lists: tuple[str, ...]  # the lists the killed process logged
    arguments: dict[str, Any]
    # the fault really happened: (values sync delivered, values logged in all)
    seen: Callable[[int, int], bool]


KILL_SCENARIOS = (
    KillScenario(
        "kill_training_during_outage",
        "SIGKILL of the training during an outage",
        fault_matrix.LISTS,
        {},
        lambda synced, logged: synced > 0,  # the outage left values that only the spool held
    ),
    KillScenario(
        "kill_sync",
        "SIGKILL of craft-callbacks sync",
        tuple(f"m{index}" for index in range(6)),
        {"lists": 6},
        lambda synced, logged: 0 < synced < logged,  # the killed sync had delivered a part
    ),
)


def run_kill_scenario(kill: KillScenario, scenario: Callable[..., Any]) -> dict[str, Any]:
    """A process-kill scenario: ``scenario(emulator, **kill.arguments)`` returns a ``KillOutcome``
    (``logged``: values per list logged when killed; ``required``: per list, those logged up to
    3 flush intervals before the kill, or ``logged`` when the lists are exact, -1 when not)."""
    started = time.monotonic()
    try:
        with fresh_folder(), PlatformEmulator() as platform, set_platform_environment(platform):
            outcome = scenario(platform, **kill.arguments)
    except Exception as error:
        return failed_row(kill.title, error, started)
    stored = {name: outcome.stored.get(name, []) for name in kill.lists}
    # Every list is a prefix of what was logged (``exact`` below checks it): what the platform holds
    # was logged, so a killed training logged at least that much, past what it last reported.
    per_list = max([outcome.logged, *(len(values) for values in stored.values())])
    logged = per_list * len(kill.lists)
    delivered = sum(len(values) for values in stored.values())
    sync = outcome.sync
    synced = None if sync is None else sum(sync.values.values())
    lost = sum(max(0, per_list - len(set(values))) for values in stored.values())
    if kill.name == "kill_sync":
        exact = outcome.required == outcome.logged
        allowed = 0
    else:
        exact = bool(outcome.prefix)
        allowed = max(0, per_list - outcome.required) * len(kill.lists)
    return {
        "name": kill.title,
        "kind": "kill",
        "logged_at_least": kill.name != "kill_sync",  # the training was killed while it logged
        "logged_reported": outcome.logged * len(kill.lists),
        "fault_seen": kill.seen(synced or 0, logged),
        "values_logged": logged,
        "delivered": delivered,
        "duplicated": outcome.duplicated,
        "lost": lost,
        "allowed_lost": allowed,
        "exact": exact,
        "spooled_at_close": None,
        "synced": synced,
        "sync_complete": None if sync is None else sync.complete,
        "scalars_ok": None,
        "caller": None,  # the training ran in a process of its own
        "seconds": getattr(outcome, "seconds", time.monotonic() - started),
    }


# -- the whole matrix -------------------------------------------------------------------


def wanted(name: str, only: list[str] | None) -> bool:
    return not only or any(part.lower() in name.lower() for part in only)


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [row for row in rows if "error" not in row]
    total: dict[str, Any] = {
        key: sum(row[key] for row in done) for key in ("values_logged", "delivered", "duplicated", "lost")
    }
    total["exact"] = sum(1 for row in done if row["exact"])
    total["passed"] = sum(1 for row in rows if row.get("pass"))
    total["scenarios"] = len(rows)
    total["errors"] = len(rows) - len(done)
    total["seconds"] = sum(row.get("seconds") or 0.0 for row in rows)
    return total


def row_passed(row: dict[str, Any]) -> bool:
    """One scenario's goal: it ran and its fault happened; nothing duplicated; nothing lost (a killed
    training: none logged before its last 3 flush intervals); the lists exact (a killed training: a
    prefix); a sync that ran completed."""
    return (
        "error" not in row
        and row["fault_seen"] is not False
        and row["duplicated"] == 0
        and row["lost"] <= row["allowed_lost"]
        and row["delivered"] + row["allowed_lost"] >= row["values_logged"]
        and bool(row["exact"])
        and row["sync_complete"] is not False
    )


def judged(rows: list[dict[str, Any]]) -> bool | None:
    """The goal: every scenario passes its own (None when none ran)."""
    return all(row["pass"] for row in rows) if rows else None


def print_table(rows: list[dict[str, Any]], total: dict[str, Any]) -> None:
    width = max([len(row["name"]) for row in rows] + [8])
    header = (
        f"{'scenario':<{width}} {'seen':>4} {'logged':>9} {'delivered':>9} {'dup':>4} {'lost':>9} "
        f"{'exact':>5} {'spooled/synced':>14} {'scalars':>7} {'log_step µs med/p99/max':>23} {'s':>6}  result"
    )
    harness.print_header(header)
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<{width}} FAILED: {row['error']}")
            continue
        synced = "-" if row["synced"] is None else f"{row['synced']:,}"
        spooled = "-" if row["spooled_at_close"] is None else f"{row['spooled_at_close']:,}"
        lost = f"{row['lost']:,}" + (f" (<={row['allowed_lost']:,})" if row["allowed_lost"] else "")
        logged = (">=" if row.get("logged_at_least") else "") + f"{row['values_logged']:,}"
        caller = row.get("caller")
        cost = f"{caller['median_us']:.1f}/{caller['p99_us']:.1f}/{caller['max_us']:.0f}" if caller else "-"
        seen, exact, scalars = (yes_no(row[key], "NO") for key in ("fault_seen", "exact", "scalars_ok"))
        print(
            f"{row['name']:<{width}} {seen:>4} {logged:>9} "
            f"{row['delivered']:>9,} {row['duplicated']:>4,} {lost:>9} {exact:>5} "
            f"{spooled + '/' + synced:>14} {scalars:>7} {cost:>23} {row['seconds']:>6.2f}  "
            f"{harness.verdict(row['pass'])}"
        )
    exact = f"{total['exact']}/{total['scenarios']}"
    print(
        f"{'total':<{width}} {'':>4} {total['values_logged']:>9,} {total['delivered']:>9,} "
        f"{total['duplicated']:>4,} {total['lost']:>9,} {exact:>5} {'':>14} {'':>7} {'':>23} "
        f"{total['seconds']:>6.2f}  {total['passed']}/{total['scenarios']}"
    )


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
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


def main() -> int:
    parser = harness.arg_parser(__doc__)
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="the scenarios whose name (see --list) or function (kill_sync...) contains NAME, any case",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=fault_matrix.STEPS,
        help=f"steps of each run (default {fault_matrix.STEPS:,}; more than {fault_matrix.INJECT_AT}, "
        "where the fault is injected)",
    )
    parser.add_argument("--list", action="store_true", help="print the scenarios' names and exit")
    args = parser.parse_args()
    if args.steps <= fault_matrix.INJECT_AT:
        parser.error(f"--steps must be more than {fault_matrix.INJECT_AT}")
    present = [(kill, getattr(fault_matrix, kill.name, None)) for kill in KILL_SCENARIOS]
    kills = [(kill, scenario) for kill, scenario in present if callable(scenario)]
    absent = [kill.name for kill, scenario in present if not callable(scenario)]
    if args.list:
        for name in [fault.name for fault in FAULTS] + [kill.title for kill, _ in kills]:
            print(name)
        return 0
    json_path = args.json.resolve() if args.json else None  # each scenario changes the working folder
    harness.clear_environ((*harness.PLATFORM_ENV, "CRAFT_CALLBACKS_STORE"))
    runs: list[Callable[[], dict[str, Any]]] = [
        lambda fault=fault: run_one_fault(fault, args.steps)
        for fault in FAULTS
        if wanted(fault.name, args.only)
    ]
    runs += [
        lambda kill=kill, scenario=scenario: run_kill_scenario(kill, scenario)
        for kill, scenario in kills
        if any(wanted(name, args.only) for name in (kill.title, kill.name, kill.name.replace("_", " ")))
    ]
    if not runs:
        parser.error(f"no scenario matches --only {' '.join(args.only or [])} (see --list)")
    rows: list[dict[str, Any]] = []
    for run in runs:
        row = run()
        row["pass"] = row_passed(row)
        rows.append(row)
        print(f"  {row['name']}: {row.get('error') or harness.verdict(row['pass'])} ({row['seconds']:.1f} s)")
    versions = harness.package_versions(PACKAGES)
    print(harness.versions_line(versions))
    total = totals(rows)
    print_table(rows, total)
    passed = judged(rows)
    print(f"goal: every scenario delivered each value once, nothing lost: {harness.verdict(passed)}")
    if absent:
        print(f"not run (not in tests/fault_matrix.py): {', '.join(absent)}")
    document = {
        **harness.running_here(),
        "versions": versions,
        "steps": args.steps,
        "inject_at": fault_matrix.INJECT_AT,
        "lists": list(fault_matrix.LISTS),
        "only": args.only,
        "faults": rows,
        "kill_scenarios_absent": absent,
        "totals": total,
        "pass": passed,
    }
    harness.write_json(json_path, document)
    return 0 if total["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
