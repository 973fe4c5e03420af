"""DigitalHub traffic and caller cost: ``DigitalHubSink`` vs a ``run.log_metrics`` call per log.

The backend is the DigitalHub Core emulator of ``tests/digitalhub_emulator.py``
(loopback HTTP, no added latency), reached by the real ``digitalhub`` SDK.
Both contenders log ``--steps`` (500) steps of 8 metrics into a fresh run:

* ours: ``MetricRecorder(DigitalHubSink(run))`` (default flush interval, 2 s),
  ``log_step`` every step, then ``close()``;
* per log: what a hand-written DigitalHub logging callback does on every
  ``on_log``: ``run.log_metrics(metrics)``.

Reported: HTTP requests and request-body bytes the emulator received, the
caller's time per step (median of the per-step times: what the training loop
pays), and the whole run's wall time. Every series must then hold exactly the
values logged, in order, or the script fails.

Goal, as on the Craft AI platform (``bench_traffic.py``): at least 100x fewer
requests than a call per log. Ours sends a fixed number of requests per flush
(26 here, one flush: the run ends within the flush interval); a call per log
sends several each step (17 with digitalhub 0.15), so the ratio grows with the
steps: about 130x at 200 steps, 330x at 500.

Run: ``.venv/bin/python benchmarks/bench_digitalhub.py [--steps N] [--json PATH]``
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ["CRAFT_CALLBACKS_VERBOSITY"] = "warning"

import harness
from craft_callbacks import DigitalHubSink, MetricRecorder
from digitalhub_emulator import DigitalHubEmulator, new_run, reset_sdk_state

KEYS = ("loss", "grad_norm", "learning_rate", "epoch", "accuracy", "loss_ema", "weight_norm", "throughput")
PROJECT = "bench"
REQUESTS_GOAL_RATIO = 100.0
OURS = "ours: MetricRecorder(DigitalHubSink(run))"
PER_LOG = "per log: run.log_metrics(metrics)"


def step_metrics(step: int) -> dict[str, float]:
    loss = 1.0 / (step + 1)
    return {key: loss * (index + 1) + step for index, key in enumerate(KEYS)}


def measure(
    emulator: DigitalHubEmulator, steps: int, log: Callable[[object], Callable[[int], None]], end: str
) -> dict[str, float]:
    """Log ``steps`` steps into a new run through ``log(run)``; requests, bytes and times."""
    run = new_run(PROJECT)
    emulator.clear_log()
    logger = log(run)
    per_step = []
    started = time.perf_counter()
    for step in range(steps):
        begin = time.perf_counter()
        logger(step)
        per_step.append(time.perf_counter() - begin)
    closing = getattr(logger, end, None)
    if closing is not None:
        closing()
    wall = time.perf_counter() - started
    stored = run.metrics
    for key in KEYS:
        expected = [step_metrics(step)[key] for step in range(steps)]
        if stored.get(key) != expected:
            raise SystemExit(f"{key}: {len(stored.get(key) or [])} values stored, {steps} logged")
    return {
        "requests": emulator.request_count,
        "body_mb": emulator.bytes_received / 1e6,
        "caller_us": statistics.median(per_step) * 1e6,
        "wall_s": wall,
    }


class Ours:
    def __init__(self, run: object) -> None:
        self.recorder = MetricRecorder(DigitalHubSink(run))

    def __call__(self, step: int) -> None:
        self.recorder.log_step(step_metrics(step), step=step)

    def close(self) -> None:
        self.recorder.close()


def per_log(run: object) -> Callable[[int], None]:
    def log(step: int) -> None:
        run.log_metrics(step_metrics(step))  # type: ignore[attr-defined]

    return log


def main() -> None:
    parser = harness.arg_parser(__doc__)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    json_path = args.json.resolve() if args.json else None
    os.environ["DH_CONFIG"] = str(Path(tempfile.mkdtemp()) / ".dhcore.ini")
    with DigitalHubEmulator() as emulator:
        os.environ["DHCORE_ENDPOINT"] = emulator.url
        os.environ["DHCORE_ACCESS_TOKEN"] = emulator.token
        reset_sdk_state()
        import digitalhub as dh

        dh.get_or_create_project(PROJECT)
        results = {
            OURS: measure(emulator, args.steps, Ours, "close"),
            PER_LOG: measure(emulator, args.steps, per_log, ""),
        }
    print(f"DigitalHub: {args.steps:,} steps x {len(KEYS)} metrics into one run, every value checked")
    print(f"{'contender':45} {'requests':>9} {'body MB':>9} {'caller µs/step':>15} {'wall s':>8}")
    for name, row in results.items():
        print(
            f"{name:45} {row['requests']:>9,.0f} {row['body_mb']:>9.2f} "
            f"{row['caller_us']:>15,.1f} {row['wall_s']:>8.2f}"
        )
    ours, peer = results.values()
    requests_ratio = peer["requests"] / ours["requests"]
    passed = requests_ratio >= REQUESTS_GOAL_RATIO
    print(
        f"ours against a call per log: {requests_ratio:,.0f}x fewer requests, "
        f"{peer['body_mb'] / max(ours['body_mb'], 1e-9):,.0f}x fewer body bytes, "
        f"caller cost {ours['caller_us'] / peer['caller_us']:.4f}x"
    )
    print(
        f"goal: at least {REQUESTS_GOAL_RATIO:g}x fewer requests than a call per log: "
        f"{peer['requests']:,} / {ours['requests']:,} = {requests_ratio:,.0f}x  {harness.verdict(passed)}"
    )
    document = {
        **harness.running_here(),
        "steps": args.steps,
        "keys": list(KEYS),
        "goal_ratio": REQUESTS_GOAL_RATIO,
        "contenders": results,
        "requests_ratio": requests_ratio,
        "pass": passed,
    }
    harness.write_json(json_path, document)


if __name__ == "__main__":
    main()
