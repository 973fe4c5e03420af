"""Platform traffic benchmark: requests and bytes a run sends to the platform, ours vs one SDK call per value.

The platform is the emulator of ``tests/platform_emulator.py`` (0 ms of added
latency), reached by the real ``craft_ai_sdk`` client over real HTTP on the
loopback, this process being made "inside a Craft AI execution" through the
environment (as ``bench_platform.py`` does). Between the client and the
emulator sits a loopback TCP relay that counts the bytes each way, so
"wire bytes" include the HTTP request lines and headers (the bearer token in
every request); "body bytes" are the request bodies alone, as the emulator
counts them.

The loop: ``--steps`` (10,000) steps of a real tiny torch training step (the
MLP of ``bench_platform.py``, about a millisecond, one thread), each logging 8
metrics (loss, grad_norm, learning_rate, epoch and four derived from them).

* ours: ``MetricRecorder()`` (``sink="auto"``, the default flush interval of
  2 s), ``log_step`` every step, then ``close()``. Requests and bytes are
  measured over the whole run (auth, list POSTs, the list-count GETs, the
  scalars at close). Every list must then hold exactly the run's 10,000 values
  in order, and the 8 scalars their last values, or the script fails.
* naive: ``CraftAiSdk().record_list_metric_values(name, value)`` for every
  value, what a hand-written callback does: one request per value. Sending
  80,000 requests takes minutes, so this runs for the first ``--naive-steps``
  (500) steps only (4,000 requests, measured and checked the same way). Its
  count for the whole run is computed, and exact: one request per value plus
  the auth requests of the sample; its bytes are extrapolated from the
  sample's mean bytes per value request.

Goal: at least 100x fewer requests than one call per value.

Run: ``.venv/bin/python benchmarks/bench_traffic.py [--steps N] [--naive-steps N] [--json PATH]``
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_platform and harness, beside this file

import torch
from craft_ai_sdk import CraftAiSdk

import harness
from bench_platform import (
    Trainer,
    check_delivered,
    counts_since,
    emulated_platform,
    inside_execution,
    new_execution_id,
    snapshot,
)
from craft_callbacks import MetricRecorder
from craft_callbacks.sinks.craft_ai import is_craft_ai_sdk
from harness import Goal, num, ratio, table
from platform_emulator import PlatformEmulator  # tests/, put on the path by bench_platform

KEYS = (
    "loss",
    "grad_norm",
    "learning_rate",
    "epoch",
    "loss_ema",
    "grad_norm_ema",
    "loss_delta",
    "log_loss",
)
REQUESTS_GOAL_RATIO = 100.0


class CountingRelay:
    """A loopback TCP relay in front of ``upstream_port``: counts the bytes each way, headers included."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.sent = 0  # client -> platform
        self.received = 0  # platform -> client
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="counting-relay", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> tuple[int, int, int]:
        with self._lock:
            return self.sent, self.received, self.connections

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
                with self._lock:
                    if upstream:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            sock.close()


@dataclass
class Traffic:
    requests: int
    per_route: dict[str, int]
    body_bytes: int
    wire_bytes: int
    wire_bytes_back: int
    connections: int
    failed: int


class Meter:
    """Requests and bytes caused between ``start()`` and ``stop()``: the emulator's and the relay's counts."""

    def __init__(self, emulator: PlatformEmulator, relay: CountingRelay) -> None:
        self.emulator, self.relay = emulator, relay

    def start(self) -> None:
        self._before = snapshot(self.emulator)
        self._wire = self.relay.counts()

    def stop(self) -> Traffic:
        counts = counts_since(self.emulator, self._before)
        sent, received, connections = self.relay.counts()
        return Traffic(
            requests=counts.requests,
            per_route=counts.per_route,
            body_bytes=counts.bytes,
            wire_bytes=sent - self._wire[0],
            wire_bytes_back=received - self._wire[1],
            connections=connections - self._wire[2],
            failed=counts.failed,
        )


def eight_metrics(trainer: Trainer, steps: int) -> Any:
    """Per step: the 4 metrics of the training step and 4 derived ones (8 distinct floats)."""
    loss_ema = grad_ema = None
    previous = 0.0
    for step in range(steps):
        metrics = trainer.step(step)
        loss, grad = metrics["loss"], metrics["grad_norm"]
        loss_ema = loss if loss_ema is None else 0.98 * loss_ema + 0.02 * loss
        grad_ema = grad if grad_ema is None else 0.98 * grad_ema + 0.02 * grad
        metrics.update(
            loss_ema=loss_ema,
            grad_norm_ema=grad_ema,
            loss_delta=loss - previous,
            log_loss=float(torch.log(torch.tensor(loss + 1e-12))),
        )
        previous = loss
        yield step, metrics


def run_ours(meter: Meter, emulator: PlatformEmulator, steps: int, seed: int) -> dict[str, Any]:
    trainer = Trainer(hidden=64, batch=32, seed=seed)
    history: list[dict[str, float]] = []
    with inside_execution(new_execution_id("traffic-ours", "0")) as execution_id:
        meter.start()
        recorder = MetricRecorder()
        if not is_craft_ai_sdk(recorder.sink) or recorder.execution_id != execution_id:
            raise SystemExit(f"FAIL ours: sink='auto' chose {recorder!r}, not the platform")
        started = time.perf_counter()
        for step, metrics in eight_metrics(trainer, steps):
            history.append(metrics)
            recorder.log_step(metrics, step)
        loop_s = time.perf_counter() - started
        recorder.close()
        total_s = time.perf_counter() - started
        traffic = meter.stop()
    check_delivered(emulator, execution_id, history, "ours", scalars=True, keys=KEYS)
    return {"steps": steps, "loop_s": loop_s, "total_s": total_s, **vars(traffic)}


def run_naive(meter: Meter, emulator: PlatformEmulator, steps: int, seed: int) -> dict[str, Any]:
    trainer = Trainer(hidden=64, batch=32, seed=seed)
    history: list[dict[str, float]] = []
    with inside_execution(new_execution_id("traffic-naive", "0")) as execution_id:
        meter.start()
        sdk = CraftAiSdk()
        record_list = sdk.record_list_metric_values
        started = time.perf_counter()
        for _, metrics in eight_metrics(trainer, steps):
            history.append(metrics)
            for name, value in metrics.items():
                record_list(name, value)
        loop_s = time.perf_counter() - started
        traffic = meter.stop()
    check_delivered(emulator, execution_id, history, "naive", scalars=False, keys=KEYS)
    return {"steps": steps, "loop_s": loop_s, **vars(traffic)}


def extrapolate(sample: dict[str, Any], steps: int) -> dict[str, Any]:
    """The naive run of ``steps`` steps: requests computed exactly, bytes from the sample's mean per value."""
    value_requests = sample["per_route"].get("list_post", 0)
    other_requests = sample["requests"] - value_requests  # the auth refresh
    if value_requests != sample["steps"] * len(KEYS):
        raise SystemExit(
            f"FAIL naive: {value_requests} list requests for {sample['steps']} steps x {len(KEYS)}"
        )
    full_values = steps * len(KEYS)
    result: dict[str, Any] = {"steps": steps, "requests": full_values + other_requests, "computed": True}
    for key in ("body_bytes", "wire_bytes"):
        # the sample's mean over all its requests (its one auth included) times the computed count
        per_request = sample[key] / sample["requests"]
        result[f"{key}_per_request"] = per_request
        result[key] = round(per_request * (full_values + other_requests))
    result["seconds_per_request"] = sample["loop_s"] / sample["requests"]
    return result


def print_report(results: dict[str, Any]) -> None:
    ours, sample, naive = results["ours"], results["naive_sample"], results["naive"]
    steps = ours["steps"]
    print(
        f"Platform traffic: {steps:,} steps x {len(KEYS)} metrics, emulator with 0 ms latency, real HTTP "
        f"through craft_ai_sdk; wire bytes = client -> platform incl. HTTP headers (loopback relay), body "
        f"bytes = request bodies"
    )
    header = f"{'variant':<34} {'requests':>9} {'wire bytes':>12} {'body bytes':>12} {'time s':>8}  by route"
    harness.print_header(header)
    routes = ", ".join(f"{route} {count:,}" for route, count in sorted(ours["per_route"].items()))
    print(
        f"{'ours (MetricRecorder)':<34} {ours['requests']:>9,} {ours['wire_bytes']:>12,} "
        f"{ours['body_bytes']:>12,} {ours['total_s']:>8.2f}  {routes}"
    )
    routes = ", ".join(f"{route} {count:,}" for route, count in sorted(sample["per_route"].items()))
    label = f"naive, measured: first {sample['steps']:,} steps"
    print(
        f"{label:<34} {sample['requests']:>9,} {sample['wire_bytes']:>12,} {sample['body_bytes']:>12,} "
        f"{sample['loop_s']:>8.2f}  {routes}"
    )
    label = f"naive, {steps:,} steps (computed*)"
    print(
        f"{label:<34} {naive['requests']:>9,} {naive['wire_bytes']:>12,} {naive['body_bytes']:>12,} "
        f"{naive['seconds_per_request'] * naive['requests']:>8.0f}  one list_post per value + auth"
    )
    print(
        f"* requests computed (exact: {steps:,} x {len(KEYS)} values, one request each, plus the auth of the "
        f"sample); bytes extrapolated from the sample's mean ({naive['wire_bytes_per_request']:.0f} wire / "
        f"{naive['body_bytes_per_request']:.0f} body bytes per request); time at the sample's pace"
    )
    print(
        f"ratio naive/ours: requests {results['requests_ratio']:,.0f}x, wire bytes "
        f"{results['wire_bytes_ratio']:,.1f}x, body bytes {results['body_bytes_ratio']:,.1f}x"
    )
    print(
        f"goal: at least {REQUESTS_GOAL_RATIO:g}x fewer requests than one call per value: "
        f"{naive['requests']:,} / {ours['requests']:,} = {results['requests_ratio']:,.0f}x  "
        f"{harness.verdict(results['pass'])}"
    )


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: dict[str, Any]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
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


def main() -> int:
    parser = harness.arg_parser(__doc__)
    parser.add_argument("--steps", type=int, default=10_000, help="training steps of the run")
    parser.add_argument("--naive-steps", type=int, default=500, help="steps of the measured naive sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps < 1 or not 1 <= args.naive_steps <= args.steps:
        parser.error("--steps must be at least 1, --naive-steps between 1 and --steps")
    torch.set_num_threads(1)
    json_path = args.json.resolve() if args.json else None
    with emulated_platform("bench-traffic-") as emulator:
        emulator.latency_s = 0.0
        relay = CountingRelay(emulator.port)
        harness.use_platform(emulator.token, relay.url)
        meter = Meter(emulator, relay)
        try:
            ours = run_ours(meter, emulator, args.steps, args.seed)
            sample = run_naive(meter, emulator, args.naive_steps, args.seed)
        finally:
            relay.close()
    naive = extrapolate(sample, args.steps)
    results: dict[str, Any] = {"ours": ours, "naive_sample": sample, "naive": naive}
    results["requests_ratio"] = naive["requests"] / ours["requests"]
    results["wire_bytes_ratio"] = naive["wire_bytes"] / ours["wire_bytes"]
    results["body_bytes_ratio"] = naive["body_bytes"] / ours["body_bytes"]
    results["pass"] = results["requests_ratio"] >= REQUESTS_GOAL_RATIO
    print_report(results)
    if json_path:
        document = {
            **harness.running_here(),
            "torch": torch.__version__,
            "keys": list(KEYS),
            "latency_s": 0.0,
            "goal_ratio": REQUESTS_GOAL_RATIO,
            **results,
        }
        harness.write_json(json_path, document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
