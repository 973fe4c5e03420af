"""Memory benchmark: the peak RSS of a long run logging 8 metrics a step through MetricRecorder.

One process per sink (``--sink local|platform|both``; ``both``, the default,
runs each in its own process, so one's memory never counts in the other's):

* ``local``: ``MetricRecorder(LocalStore(tmp/metrics.db))``;
* ``platform``: ``MetricRecorder()`` (``sink="auto"``) inside a Craft AI
  execution on the platform emulator (``tests/platform_emulator.py``, 0 ms of
  latency, real HTTP through ``craft_ai_sdk``). The emulator runs in a
  separate process: the values it stores are the platform's memory, not the
  training process's.

The run: ``--steps`` (1,000,000) ``log_step`` calls of 8 distinct Python
floats, as fast as the loop goes, the run's length not told to the recorder
(no ``expected_events``: the by-hand case), then ``close()``. The resident set
size (``VmRSS`` of ``/proc/self/status``) is sampled every ``--sample-every``
(10,000) steps; the baseline is taken after the recorder is created (imports,
the SDK, the store and the worker thread already there), the peak is the
largest of the samples and of the kernel's high-water mark (``VmHWM``: it
catches a peak between two samples). Growth = peak - baseline; goal: under
50 MB. The RSS at 10%, 50% and 100% of the steps shows whether memory grows
with the number of steps once values are delivered (it must not).

Lists are capped at 50,000 values (the platform's limit), so a 1,000,000-step
run is thinned (unknown length: the first 25,000 values as they come, then
every 2nd, every 4th...): the values delivered per list are read back from the
store (or the emulator) and reported.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--sink local|platform|both] [--steps N]
[--sample-every N] [--json PATH]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

os.environ["CRAFT_CALLBACKS_VERBOSITY"] = "warning"  # read when the first recorder is made

import harness
from craft_callbacks import LocalStore, MetricLimitWarning, MetricRecorder
from harness import Goal, num, table, verdict

KEYS = (
    "loss",
    "grad_norm",
    "learning_rate",
    "epoch",
    "accuracy",
    "loss_ema",
    "weight_norm",
    "samples_per_second",
)
GROWTH_GOAL_MB = 50.0
SINKS = ("local", "platform")
EXECUTION_ID = "bench-memory-1"
MB = harness.MB


def status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (VmRSS, VmHWM), or None where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    kb = status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    import psutil  # not Linux: psutil, when installed

    return int(psutil.Process().memory_info().rss)


def peak_bytes() -> int | None:
    kb = status_kb("VmHWM")
    return kb * 1024 if kb is not None else None


# -- the emulator, in its own process ------------------------------------------------


def serve_emulator(connection: Connection) -> None:
    """Child process: a PlatformEmulator, answering ``counts`` and ``stop`` over ``connection``."""
    sys.path.insert(0, str(harness.ROOT / "tests"))
    from platform_emulator import PlatformEmulator

    with PlatformEmulator() as emulator:
        emulator.latency_s = 0.0
        connection.send((emulator.url, emulator.token))
        while True:
            command = connection.recv()
            if command == "counts":
                lists = {name: len(values) for (run, name), values in emulator.store.lists.items()}
                connection.send(
                    {
                        "requests": emulator.request_count,
                        "per_route": dict(emulator.requests_per_route),
                        "bytes_received": emulator.bytes_received,
                        "lists": lists,
                        "scalars": len(emulator.store.scalars),
                    }
                )
            else:
                connection.send("stopped")
                return


# -- one run -------------------------------------------------------------------------


def buffered(recorder: MetricRecorder) -> int | None:
    """Values logged but not yet taken by the recorder's delivery worker (the buffers of its lists,
    private: a diagnostic of this benchmark, read without locking; None if the recorder no longer has
    them where this looks)."""
    lists = getattr(getattr(recorder, "_lists", None), "by_name", None)
    if not isinstance(lists, dict):
        return None
    return sum(len(getattr(one, "values", ())) for one in list(lists.values()))


def log_loop(recorder: MetricRecorder, steps: int, every: int) -> list[tuple[int, int, int | None]]:
    """``steps`` log_step calls of 8 distinct floats; (step, RSS, values buffered) every ``every`` steps."""
    samples: list[tuple[int, int, int | None]] = []
    log_step = recorder.log_step
    for step in range(1, steps + 1):
        log_step(
            {
                "loss": 1.0 / step,
                "grad_norm": 0.5 + step * 1e-7,
                "learning_rate": 1e-3 * (1.0 - step / (steps + 1)),
                "epoch": step / 1000,
                "accuracy": 1.0 - 0.5 / step,
                "loss_ema": 1.0 / step + 1e-9,
                "weight_norm": 10.0 + step * 1e-8,
                "samples_per_second": 1000.0 + step % 97,
            },
            step,
        )
        if step % every == 0:
            samples.append((step, rss_bytes(), buffered(recorder)))
    return samples


def run_sink(sink: str, steps: int, every: int) -> dict[str, Any]:
    """In this process: one recorder to ``sink``, ``steps`` steps, RSS samples, what was delivered."""
    emulator_process = None
    # the platform's spool goes to ./craft_metrics/spool.db
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-memory-{sink}-") as tmp,
        harness.working_directory(Path(tmp)),
    ):
        try:
            connection: Connection | None = None
            if sink == "platform":
                context = multiprocessing.get_context("spawn")
                connection, child = context.Pipe()
                emulator_process = context.Process(target=serve_emulator, args=(child,), daemon=True)
                emulator_process.start()
                url, token = connection.recv()
                harness.use_platform(token, url)
                os.environ["CRAFT_AI_EXECUTION_ID"] = EXECUTION_ID
                recorder = MetricRecorder()
                if recorder.execution_id != EXECUTION_ID:
                    raise SystemExit(f"FAIL platform: sink='auto' chose {recorder!r}, not the platform")
                store = None
            else:
                store = LocalStore(Path(tmp) / "metrics.db")
                recorder = MetricRecorder(store)
            baseline = rss_bytes()
            started = time.perf_counter()
            samples = log_loop(recorder, steps, every)
            loop_s = time.perf_counter() - started
            started = time.perf_counter()
            recorder.close()
            close_s = time.perf_counter() - started
            after_close = rss_bytes()
            high_water = peak_bytes()
            summary = recorder.summary()
            if store is not None:
                delivered = {key: len(store.list_series(recorder.execution_id, key)) for key in KEYS}
                traffic = None
                store.close()
            else:
                assert connection is not None
                connection.send("counts")
                traffic = connection.recv()
                delivered = {key: traffic["lists"].get(key, 0) for key in KEYS}
                connection.send("stop")
                connection.recv()
        finally:
            if emulator_process is not None:
                emulator_process.join(10)
    peak = max([rss for _, rss, _ in samples] + [after_close] + ([high_water] if high_water else []))
    fractions = {f"{fraction:.0%}": fraction * steps for fraction in (0.1, 0.5, 1.0)}
    at = {key: next((rss for step, rss, _ in samples if step >= at), None) for key, at in fractions.items()}
    buffered_at = {
        key: next((n for step, _, n in samples if step >= at), None) for key, at in fractions.items()
    }
    growth = peak - baseline
    return {
        "sink": sink,
        "steps": steps,
        "keys": len(KEYS),
        "sample_every": every,
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "peak_from": "VmHWM" if high_water and high_water >= peak else "samples",
        "growth_bytes": growth,
        "rss_at": at,
        "buffered_at": buffered_at,
        "max_buffered": max((n for _, _, n in samples if n is not None), default=None),
        "rss_after_close": after_close,
        "late_growth_bytes": (samples[-1][1] - at["10%"]) if samples and at["10%"] else None,
        "samples": samples,
        "loop_s": loop_s,
        "close_s": close_s,
        "delivered": delivered,
        "traffic": traffic,
        "summary": summary,
        "pass": growth < GROWTH_GOAL_MB * MB,
    }


# -- report --------------------------------------------------------------------------


def mb(value: int | None) -> str:
    return "-" if value is None else f"{value / MB:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    steps = results[0]["steps"]
    print(
        f"Peak RSS, {steps:,} log_step calls x {len(KEYS)} float metrics, run length not told to the "
        f"recorder; RSS sampled every {results[0]['sample_every']:,} steps (MB = MiB)"
    )
    header = (
        f"{'sink':<9} {'baseline':>9} {'peak':>8} {'growth':>7} {'@10%':>8} {'@50%':>8} {'@100%':>8} "
        f"{'closed':>8} {'loop s':>7} {'close s':>7}  delivered per list  goal < {GROWTH_GOAL_MB:g} MB"
    )
    harness.print_header(header)
    for result in results:
        if "error" in result:
            print(f"{result['sink']:<9} {result['error']}")
            continue
        delivered = sorted(set(result["delivered"].values()))
        print(
            f"{result['sink']:<9} {mb(result['baseline_bytes']):>9} {mb(result['peak_bytes']):>8} "
            f"{mb(result['growth_bytes']):>7} {mb(result['rss_at']['10%']):>8} "
            f"{mb(result['rss_at']['50%']):>8} {mb(result['rss_at']['100%']):>8} "
            f"{mb(result['rss_after_close']):>8} {result['loop_s']:>7.2f} "
            f"{result['close_s']:>7.2f}  {'/'.join(f'{count:,}' for count in delivered):<18}  "
            f"{harness.verdict(result['pass'])}"
        )
    for result in results:
        if "error" in result:
            continue
        print(f"{result['sink']}: {result['summary']}")
        waiting = "/".join("-" if n is None else f"{n:,}" for n in result["buffered_at"].values())
        print(
            f"{'':<{len(result['sink'])}}  values logged but not yet taken by the delivery worker at "
            f"10%/50%/100% of the steps: {waiting} (max {result['max_buffered'] or 0:,})"
        )
        if result["traffic"]:
            routes = ", ".join(
                f"{route} {count:,}" for route, count in sorted(result["traffic"]["per_route"].items())
            )
            print(f"{'':<{len(result['sink'])}}  requests {result['traffic']['requests']:,} ({routes})")


def run_children(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for sink in SINKS:
        arguments = ["--sink", sink, "--steps", str(args.steps), "--sample-every", str(args.sample_every)]
        child = harness.run_child(__file__, arguments, capture=True)
        if child.result is None:
            tail = child.output.strip().splitlines()[-5:]
            results.append({"sink": sink, "error": f"exit {child.returncode}: {' | '.join(tail)}"})
            continue
        results.extend(child.result["results"])
    return results


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
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


def main() -> int:
    parser = harness.arg_parser(__doc__)
    parser.add_argument("--sink", choices=(*SINKS, "both"), default="both")
    parser.add_argument("--steps", type=int, default=1_000_000, help="log_step calls")
    parser.add_argument("--sample-every", type=int, default=10_000, help="steps between RSS samples")
    args = parser.parse_args()
    if args.steps < 1 or args.sample_every < 1:
        parser.error("--steps and --sample-every must be at least 1")
    json_path = args.json.resolve() if args.json else None
    harness.clear_environ((*harness.PLATFORM_ENV, "CRAFT_CALLBACKS_STORE"))
    # Thinning is expected here (the lists pass the cap by design); the report says how much.
    warnings.filterwarnings("ignore", category=MetricLimitWarning)
    results = (
        run_children(args) if args.sink == "both" else [run_sink(args.sink, args.steps, args.sample_every)]
    )
    print_table(results)
    document = {
        **harness.running_here(),
        "steps": args.steps,
        "keys": list(KEYS),
        "sample_every": args.sample_every,
        "goal_mb": GROWTH_GOAL_MB,
        "results": results,
    }
    harness.write_json(json_path, document)
    return 0 if all("error" not in result for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
