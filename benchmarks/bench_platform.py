"""Benchmark against the platform emulator: a training loop recording naively vs through MetricRecorder.

One ``PlatformEmulator`` (from ``tests/``) answers every request with 2 ms of
latency; this process is made "inside a Craft AI execution" through the
environment (``CRAFT_AI_SDK_TOKEN``, ``CRAFT_AI_ENVIRONMENT_URL``,
``CRAFT_AI_CONTROL_URL``, ``CRAFT_AI_EXECUTION_ID``), so ``CraftAiSdk()`` and
``sink="auto"`` talk to it over real HTTP. Each variant and repeat gets its own
execution id (its lists never mix with another's nor reach the 50,000 cap), and
the spool goes to ``./craft_metrics/spool.db`` in a temporary working folder.

The loop: a real tiny torch training step per iteration (MLP 64->64->1 on a
fixed random batch of 32, SGD, gradient clipping, one thread), then four
metrics (loss, grad_norm, learning_rate, epoch), 2,000 steps. Variants, all in
this process, the same loop with a different ``record(metrics, step)``:

0. ``none``: records nothing (a no-op call, so every variant has the same loop);
a. ``naive``: ``CraftAiSdk().record_list_metric_values(name, value)`` once per
   value, as a hand-written callback does (one HTTP request each);
b. ``recorder``: ``MetricRecorder()`` (``sink="auto"``) and ``log_step`` per
   step; ``close()`` after the timed loop, timed apart.

Loop time is from the first step to the end of the last (``close()`` not
included), median over the repeats, which are interleaved (the order of
``none`` and ``recorder`` alternates); ``naive`` takes 30 s or more a repeat
(2 ms of latency plus ~2 ms of client and in-process server CPU per request),
so it runs in the first ``--naive-repeats`` repeats only. Requests and bytes are the
emulator's counts over everything a variant caused (auth refresh, the
recorder's list-count GETs and ``close()`` included). Every variant that
records must have delivered exactly the loop's values, in order, or the script
fails. Goals: the recorder sends at least 100x fewer requests than naive, and
its loop runs within 5% of the loop that records nothing.

Run: ``.venv/bin/python benchmarks/bench_platform.py [--steps N] [--repeats R] [--naive-repeats R]
[--flush-interval S] [--json PATH]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import Goal, num, pct, ratio, table, verdict

os.environ["CRAFT_CALLBACKS_VERBOSITY"] = "warning"  # read when the first recorder is made
sys.path.insert(0, str(harness.ROOT / "tests"))

import torch
from craft_ai_sdk import CraftAiSdk

from craft_callbacks import MetricRecorder
from craft_callbacks.sinks.craft_ai import is_craft_ai_sdk
from platform_emulator import PlatformEmulator

KEYS = ("loss", "grad_norm", "learning_rate", "epoch")
LATENCY_S = 0.002
STEPS_PER_EPOCH = 100
BASE_LR = 0.01
LR_DECAY = 0.9995
REQUESTS_GOAL_RATIO = 100.0
OVERHEAD_GOAL = 0.05
VARIANTS = ("none", "naive", "recorder")

Metrics = dict[str, float]
Record = Callable[[Metrics, int], None]


class Trainer:
    """A tiny MLP regression, one SGD step per call: about a millisecond of real torch work."""

    def __init__(self, hidden: int, batch: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )
        self.params = list(self.model.parameters())
        self.optimizer = torch.optim.SGD(self.params, lr=BASE_LR)
        self.x = torch.randn(batch, 64, generator=generator)
        self.y = torch.randn(batch, 1, generator=generator)

    def step(self, step: int) -> Metrics:
        lr = BASE_LR * LR_DECAY**step
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm=1.0)
        self.optimizer.step()
        return {
            "loss": loss.item(),
            "grad_norm": grad_norm.item(),
            "learning_rate": lr,
            "epoch": step / STEPS_PER_EPOCH,
        }


@dataclass
class LoopResult:
    seconds: float
    cpu_seconds: float  # the loop thread's CPU time: below ``seconds`` when it waited (GIL, host)
    call_latencies: list[float]  # seconds spent in record(), one per step
    history: list[Metrics]  # what the loop produced, to check what the platform holds


def run_loop(trainer: Trainer, steps: int, record: Record) -> LoopResult:
    """The timed loop, identical for every variant but for ``record``."""
    history: list[Metrics] = []
    latencies = [0.0] * steps
    perf = time.perf_counter
    cpu_start = time.thread_time()
    start = perf()
    for step in range(steps):
        metrics = trainer.step(step)
        history.append(metrics)
        before = perf()
        record(metrics, step)
        latencies[step] = perf() - before
    seconds = perf() - start
    cpu_seconds = time.thread_time() - cpu_start
    return LoopResult(seconds, cpu_seconds, latencies, history)


def record_nothing(metrics: Metrics, step: int) -> None:
    return None


def naive_callback(sdk: Any) -> Record:
    """What a hand-written callback does: one SDK call (one HTTP request) per value."""
    record_list = sdk.record_list_metric_values

    def record(metrics: Metrics, step: int) -> None:
        for name, value in metrics.items():
            record_list(name, value)

    return record


@dataclass
class Counts:
    requests: int
    per_route: dict[str, int]
    bytes: int
    failed: int  # answers other than 2xx (retries, refusals): should be 0


def snapshot(emulator: PlatformEmulator) -> tuple[int, dict[str, int], int]:
    return emulator.request_count, dict(emulator.requests_per_route), emulator.bytes_received


def counts_since(emulator: PlatformEmulator, before: tuple[int, dict[str, int], int]) -> Counts:
    count, per_route, received = before
    log = emulator.requests_log[count:]
    now = emulator.requests_per_route
    return Counts(
        requests=len(log),
        per_route={
            route: now[route] - per_route.get(route, 0)
            for route in now
            if now[route] != per_route.get(route, 0)
        },
        bytes=emulator.bytes_received - received,
        failed=sum(1 for request in log if request.status is None or not 200 <= request.status < 300),
    )


@contextmanager
def inside_execution(execution_id: str) -> Iterator[str]:
    """This process runs in Craft AI execution ``execution_id`` (as the platform's env says)."""
    previous = os.environ.get("CRAFT_AI_EXECUTION_ID")
    os.environ["CRAFT_AI_EXECUTION_ID"] = execution_id
    try:
        yield execution_id
    finally:
        if previous is None:
            del os.environ["CRAFT_AI_EXECUTION_ID"]
        else:
            os.environ["CRAFT_AI_EXECUTION_ID"] = previous


@contextmanager
def emulated_platform(prefix: str) -> Iterator[PlatformEmulator]:
    """A PlatformEmulator, this process in a temporary working folder (the recorder's spool goes to
    ./craft_metrics/spool.db), and the platform's environment variables as they were, after."""
    with (
        harness.restored_environ(*harness.PLATFORM_ENV, "CRAFT_CALLBACKS_STORE"),
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        PlatformEmulator() as emulator,
        harness.working_directory(Path(tmp)),
    ):
        yield emulator


def new_execution_id(variant: str, label: str) -> str:
    return f"bench-{variant}-{label}-{uuid.uuid4().hex[:8]}"


def check_delivered(
    emulator: PlatformEmulator,
    execution_id: str,
    history: list[Metrics],
    variant: str,
    scalars: bool,
    keys: tuple[str, ...] = KEYS,
) -> None:
    """Fail loudly unless the execution holds exactly the loop's values of ``keys``, in order (and, with
    ``scalars``, each key's last value as a scalar)."""
    lists = {name: values for (run, name), values in emulator.store.lists.items() if run == execution_id}
    if sorted(lists) != sorted(keys):
        raise SystemExit(f"FAIL {variant}: execution {execution_id} holds lists {sorted(lists)}, not {keys}")
    for key in keys:
        expected = [metrics[key] for metrics in history]
        got = lists[key]
        if got != expected:
            first = next(
                (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                min(len(got), len(expected)),
            )
            raise SystemExit(
                f"FAIL {variant}: list {key!r} of {execution_id} holds {len(got)} values, expected "
                f"{len(expected)}; first difference at index {first}"
            )
    if scalars:
        held = {name: value for (run, name), value in emulator.store.scalars.items() if run == execution_id}
        expected_scalars = {key: history[-1][key] for key in keys}
        if held != expected_scalars:
            raise SystemExit(
                f"FAIL {variant}: scalars of {execution_id} are {held}, expected {expected_scalars}"
            )


def measure(
    variant: str,
    emulator: PlatformEmulator,
    args: argparse.Namespace,
    label: str,
    steps: int,
) -> dict[str, Any]:
    """One run of one variant: a fresh model, a fresh execution, counts around everything it caused."""
    trainer = Trainer(args.hidden, args.batch, seed=args.seed)
    row: dict[str, Any] = {"variant": variant, "label": label}
    with inside_execution(new_execution_id(variant, label)) as execution_id:
        before = snapshot(emulator)
        if variant == "none":
            loop = run_loop(trainer, steps, record_nothing)
        elif variant == "naive":
            loop = run_loop(trainer, steps, naive_callback(CraftAiSdk()))
        else:
            recorder = MetricRecorder(flush_interval=args.flush_interval)
            if not is_craft_ai_sdk(recorder.sink) or recorder.execution_id != execution_id:
                raise SystemExit(f"FAIL recorder: sink='auto' chose {recorder!r}, not the platform")
            loop = run_loop(trainer, steps, recorder.log_step)
            during = counts_since(emulator, before)
            started = time.perf_counter()
            recorder.close()
            row["close_s"] = time.perf_counter() - started
            row["requests_during_loop"] = during.requests
            row["summary"] = recorder.summary()
        counts = counts_since(emulator, before)
    if variant != "none":
        check_delivered(emulator, execution_id, loop.history, variant, scalars=variant == "recorder")
    row.update(
        execution_id=execution_id,
        loop_s=loop.seconds,
        loop_cpu_s=loop.cpu_seconds,
        requests=counts.requests,
        per_route=counts.per_route,
        bytes=counts.bytes,
        failed_requests=counts.failed,
        worst_call_s=max(loop.call_latencies),
        call_latencies=loop.call_latencies,
    )
    return row


def run_all(emulator: PlatformEmulator, args: argparse.Namespace) -> list[dict[str, Any]]:
    # Warm-up (not counted): torch's first steps, the SDK's and the recorder's first use.
    for variant in VARIANTS:
        measure(variant, emulator, args, "warmup", steps=min(args.steps, 100))
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        order = ["none", "recorder"] if repeat % 2 == 0 else ["recorder", "none"]
        if repeat < args.naive_repeats:
            order.insert(1, "naive")
        for variant in order:
            runs.append(measure(variant, emulator, args, str(repeat), steps=args.steps))
            print(
                f"  repeat {repeat} {variant:<9} loop {runs[-1]['loop_s']:7.3f} s, "
                f"{runs[-1]['requests']:,} requests",
                file=sys.stderr,
                flush=True,
            )
    return runs


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Summary:
    variant: str
    loop_s: float
    loop_all_s: list[float]
    loop_cpu_s: float
    requests: int
    requests_all: list[int]
    bytes: int
    worst_call_s: float
    p99_call_s: float
    failed_requests: int
    per_route: dict[str, int] = field(default_factory=dict)
    close_s: float | None = None
    requests_during_loop: list[int] | None = None

    @property
    def repeats(self) -> int:
        return len(self.loop_all_s)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Summary]:
    summaries = {}
    for variant in VARIANTS:
        rows = [run for run in runs if run["variant"] == variant]
        if not rows:
            continue
        latencies = [latency for run in rows for latency in run["call_latencies"]]
        summary = Summary(
            variant=variant,
            loop_s=statistics.median(run["loop_s"] for run in rows),
            loop_all_s=[run["loop_s"] for run in rows],
            loop_cpu_s=statistics.median(run["loop_cpu_s"] for run in rows),
            requests=max(run["requests"] for run in rows),
            requests_all=[run["requests"] for run in rows],
            bytes=max(run["bytes"] for run in rows),
            worst_call_s=max(latencies),
            p99_call_s=percentile(latencies, 0.99),
            failed_requests=sum(run["failed_requests"] for run in rows),
            per_route=max((run["per_route"] for run in rows), key=lambda routes: sum(routes.values())),
        )
        if variant == "recorder":
            summary.close_s = statistics.median(run["close_s"] for run in rows)
            summary.requests_during_loop = [run["requests_during_loop"] for run in rows]
        summaries[variant] = summary
    return summaries


def paired_overheads(runs: list[dict[str, Any]]) -> list[float]:
    """Per repeat: recorder loop / none loop - 1 (the two ran back to back)."""
    by_repeat: dict[str, dict[str, float]] = {}
    for run in runs:
        by_repeat.setdefault(run["label"], {})[run["variant"]] = run["loop_s"]
    return [
        loops["recorder"] / loops["none"] - 1
        for loops in by_repeat.values()
        if {"none", "recorder"} <= set(loops)
    ]


def print_report(
    summaries: dict[str, Summary], runs: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    none, naive, ours = summaries["none"], summaries.get("naive"), summaries["recorder"]
    print(
        f"Platform emulator, {LATENCY_S * 1e3:g} ms per request; {args.steps:,} steps x {len(KEYS)} keys; "
        f"torch MLP 64->{args.hidden}->1, batch {args.batch}, 1 thread; recorder flush interval "
        f"{args.flush_interval:g} s"
    )
    print(
        f"loop = first step to end of last step (close() not included), median over interleaved repeats: "
        f"none {none.repeats}, recorder {ours.repeats}, naive {naive.repeats if naive else 0} "
        f"(naive: fewer repeats, tens of seconds each)"
    )
    print(
        "cpu = the loop thread's CPU time (wall above it: waits for the GIL or for the host); requests/bytes"
        "\n= everything the variant caused (max over repeats); call latency = per record() call, pooled"
    )
    header = (
        f"{'variant':<10} {'repeats':>7} {'loop med s':>10} {'vs none':>9} {'cpu med s':>9} {'requests':>9} "
        f"{'bytes':>10} {'worst call':>11} {'p99 call':>10}"
    )
    harness.print_header(header)
    for summary in summaries.values():
        overhead = summary.loop_s / none.loop_s - 1
        print(
            f"{summary.variant:<10} {summary.repeats:>7} {summary.loop_s:>10.3f} {overhead:>+8.1%} "
            f"{summary.loop_cpu_s:>9.3f} "
            f"{summary.requests:>9,} {summary.bytes:>10,} {summary.worst_call_s * 1e3:>8.3f} ms "
            f"{summary.p99_call_s * 1e3:>7.3f} ms"
        )
    print()
    for summary in summaries.values():
        routes = ", ".join(f"{route} {count:,}" for route, count in sorted(summary.per_route.items()))
        print(f"{summary.variant:<10} loops s: {', '.join(f'{s:.3f}' for s in summary.loop_all_s)}")
        if summary.requests:
            print(f"{'':<10} requests per repeat: {summary.requests_all}; by route (max): {routes}")
        if summary.failed_requests:
            print(f"{'':<10} WARNING: {summary.failed_requests} requests answered other than 2xx")
    paired = paired_overheads(runs)
    print(
        f"recorder   close() median {ours.close_s:.3f} s; requests sent while the loop ran, per repeat: "
        f"{ours.requests_during_loop} (the rest at close)"
    )
    print(f"recorder vs none, paired per repeat: {', '.join(f'{p:+.1%}' for p in paired)}")
    if ours.requests_during_loop and not any(ours.requests_during_loop):
        print(
            f"note: no delivery round overlapped the timed loop (loop {ours.loop_s:.2f} s < flush interval "
            f"{args.flush_interval:g} s): the loop figure is log_step alone; all HTTP and spool work ran in "
            "close(). Use --flush-interval or more --steps to time the loop with delivery running."
        )
    print()
    overhead = ours.loop_s / none.loop_s - 1
    results: dict[str, Any] = {"overhead": overhead, "paired_overheads": paired}
    if naive is not None:
        naive_requests = min(naive.requests_all)
        ratio = naive_requests / ours.requests
        results["requests_ratio"] = ratio
        results["requests_pass"] = ratio >= REQUESTS_GOAL_RATIO
        print(
            f"goal: naive/recorder requests >= {REQUESTS_GOAL_RATIO:g}x: {naive_requests:,} / "
            f"{ours.requests:,} = {ratio:,.0f}x (fewest naive / most recorder)  "
            f"{harness.verdict(results['requests_pass'])}"
        )
    else:
        print("goal: naive/recorder requests: not measured (--naive-repeats 0)")
    results["overhead_pass"] = overhead <= OVERHEAD_GOAL
    print(
        f"goal: recorder loop within {OVERHEAD_GOAL:.0%} of no recording: {ours.loop_s:.3f} s vs "
        f"{none.loop_s:.3f} s = {overhead:+.1%}  {harness.verdict(results['overhead_pass'])} "
        f"(median of the paired per-repeat overheads: {statistics.median(paired):+.1%})"
    )
    return results


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
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


def main() -> int:
    parser = harness.arg_parser(__doc__)
    parser.add_argument("--steps", type=int, default=2_000, help="training steps per timed loop")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of none and recorder")
    parser.add_argument("--naive-repeats", type=int, default=2, help="repeats of naive (30+ s each)")
    parser.add_argument("--flush-interval", type=float, default=2.0, help="the recorder's flush interval, s")
    parser.add_argument("--hidden", type=int, default=64, help="hidden width of the MLP")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.repeats < 1 or args.naive_repeats < 0 or args.steps < 1:
        parser.error("--repeats and --steps must be at least 1, --naive-repeats at least 0")
    args.naive_repeats = min(args.naive_repeats, args.repeats)
    torch.set_num_threads(1)
    json_path = args.json.resolve() if args.json else None
    with emulated_platform("bench-platform-") as emulator:
        harness.use_platform(emulator.token, emulator.url)
        emulator.latency_s = LATENCY_S
        runs = run_all(emulator, args)
    summaries = summarize(runs)
    results = print_report(summaries, runs, args)
    if json_path:
        document = {
            **harness.running_here(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "latency_s": LATENCY_S,
            "steps": args.steps,
            "keys": list(KEYS),
            "repeats": args.repeats,
            "naive_repeats": args.naive_repeats,
            "flush_interval": args.flush_interval,
            "hidden": args.hidden,
            "batch": args.batch,
            "summaries": {
                name: {key: value for key, value in vars(summary).items()}
                for name, summary in summaries.items()
            },
            "goals": results,
            "runs": [{key: value for key, value in run.items() if key != "call_latencies"} for run in runs],
        }
        harness.write_json(json_path, document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
