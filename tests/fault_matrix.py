"""The fault matrix: each failure mode of the Craft AI platform (and of the spool) as a scenario.

A scenario records a short training run (two list metrics, one end-of-run
scalar) through the real ``craft-ai-sdk`` client into the platform emulator
(tests/platform_emulator.py), injects its fault part-way, closes the run,
and, where the fault outlasts the run, delivers the spool with
``craft-callbacks sync``. :class:`Outcome` holds what was logged, what the
platform holds, and what the run said about it, so a test (tests/test_faults.py)
can check each value arrived once, in order, and that every message told the
truth, and the reliability benchmark (benchmarks/bench_reliability.py) can
count values delivered, duplicated and lost per fault.

Used with the emulator's environment set (the ``platform`` fixture of
tests/conftest.py, or :func:`platform_environment`) and the working folder as
the place of ``./craft_metrics``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from craft_callbacks import MetricRecorder
from craft_callbacks.delivery.spool import Spool
from craft_callbacks.delivery.sync import SyncReport, sync_spool
from platform_emulator import PlatformEmulator

EXECUTION = "exec-test-1"
STORE_DIR = Path("craft_metrics")
SPOOL = STORE_DIR / "spool.db"
LISTS = ("loss", "acc")
STEPS = 1_500
INJECT_AT = 300


def logged_values(steps: int = STEPS) -> dict[str, list[float]]:
    """What a scenario logs: distinct values, so a duplicate or a gap shows."""
    return {"loss": [float(step) for step in range(steps)], "acc": [step / 7 for step in range(steps)]}


@dataclass
class Outcome:
    """What a scenario logged, what reached the platform, and what the run said."""

    fault: str
    logged: dict[str, list[float]]
    stored: dict[str, list[float]]  # the platform's lists once the run (and any sync) ended
    stored_at_close: dict[str, list[float]]  # before any sync
    spooled_at_close: int  # list values the spool held, not accepted, when the run closed
    summary: str
    warnings: list[str]
    statuses: Counter[int | None] = field(default_factory=Counter)  # the platform's answers, by status
    spool_failures: int = 0  # spool writes made to fail
    sync: SyncReport | None = None
    seconds: float = 0.0

    def warned(self, text: str) -> bool:
        return any(text in message for message in self.warnings)

    @property
    def values_logged(self) -> int:
        return sum(len(values) for values in self.logged.values())

    @property
    def delivered(self) -> int:
        return sum(len(values) for values in self.stored.values())

    @property
    def duplicated(self) -> int:
        return sum(
            count - 1 for values in self.stored.values() for count in Counter(values).values() if count > 1
        )

    @property
    def lost(self) -> int:
        return sum(len(set(self.logged[name]) - set(self.stored.get(name, []))) for name in self.logged)

    @property
    def exact(self) -> bool:
        """Every value once, in order, nothing else."""
        return all(self.stored.get(name) == values for name, values in self.logged.items())


@dataclass(frozen=True)
class Fault:
    """One failure mode: how to inject it, and how the run is configured around it."""

    name: str
    inject: Callable[[PlatformEmulator], None]
    prepare: Callable[[PlatformEmulator], contextlib.AbstractContextManager[Any]] | None = None
    flush_interval: float = 0.05
    close_timeout: float = 30.0
    request_timeout: float = 30.0
    ends_during_outage: bool = False  # the run closes while the fault lasts: sync delivers the rest
    evidence: Callable[[Outcome], bool] = lambda outcome: True  # that the fault really happened


class SpoolFaults:
    """Make chosen ``Spool`` methods raise a disk error for their next calls (one point of a round)."""

    def __init__(self, method: str, failures: int) -> None:
        self.method = method
        self.left = failures
        self.fired = 0
        self._original = getattr(Spool, method)

    @contextlib.contextmanager
    def active(self) -> Iterator[SpoolFaults]:
        original = self._original
        faults = self

        def failing(spool: Spool, *args: Any, **kwargs: Any) -> Any:
            if faults.left > 0:
                faults.left -= 1
                faults.fired += 1
                raise sqlite3.OperationalError("disk I/O error (injected)")
            return original(spool, *args, **kwargs)

        setattr(Spool, self.method, failing)
        try:
            yield self
        finally:
            setattr(Spool, self.method, original)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (tests run as root), unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(folder: Path) -> None:
    """Write a file into ``folder`` until its file system is full."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb") as filler:
        chunk = b"\0" * 4096
        while True:
            filler.write(chunk)
            filler.flush()


def _fail_spool(method: str, failures: int) -> Callable[[PlatformEmulator], Any]:
    def prepare(platform: PlatformEmulator) -> contextlib.AbstractContextManager[Any]:
        return SpoolFaults(method, failures).active()

    return prepare


def _full_disk(platform: PlatformEmulator) -> contextlib.AbstractContextManager[Any]:
    return tmpfs(STORE_DIR, "1m")


def _read_only(platform: PlatformEmulator) -> contextlib.AbstractContextManager[Any]:
    return tmpfs(STORE_DIR, "1m", read_only=True)


def _nothing(platform: PlatformEmulator) -> None:
    """The fault is in ``prepare`` (it acts from the run's start)."""


def _answered(status: int | None) -> Callable[[Outcome], bool]:
    return lambda outcome: outcome.statuses[status] > 0


def _spool_failed(outcome: Outcome) -> bool:
    return outcome.spool_failures > 0


def _no_durable_copy(outcome: Outcome) -> bool:
    return outcome.warned("without a durable copy")


FAULTS: tuple[Fault, ...] = (
    Fault("5xx before storing", lambda p: p.fail_next(3, 500), evidence=_answered(500)),
    Fault(
        "5xx after storing (JSON)",
        lambda p: p.fail_next(2, 502, after_store=True, body="json"),
        evidence=_answered(502),
    ),
    Fault(
        "5xx after storing (HTML)",
        lambda p: p.fail_next(2, 504, after_store=True, body="html"),
        evidence=_answered(504),
    ),
    Fault(
        "2xx with an unreadable body",
        lambda p: p.garble_next(2),
        evidence=lambda outcome: outcome.warned("Unable to decode response"),
    ),
    Fault(
        "lost answer",
        lambda p: (setattr(p, "drop_after_processing", True), p.drop_next(2)),
        evidence=_answered(None),
    ),
    Fault(
        "refused connection",
        lambda p: p.outage_refuse(1.0),
        evidence=lambda outcome: outcome.warned("Unable to perform the request"),
    ),
    Fault("5 s outage", lambda p: p.outage(5.0), evidence=_answered(503)),
    Fault(
        "60 s outage",
        lambda p: p.outage(60.0),
        close_timeout=2.0,
        ends_during_outage=True,
        evidence=_answered(503),
    ),
    Fault("401", lambda p: p.fail_next(2, 401), evidence=_answered(401)),
    Fault("429", lambda p: p.fail_next(2, 429), evidence=_answered(429)),
    Fault(
        "timeout after storing",
        lambda p: p.stall_after_store_next(1, 3.0),
        request_timeout=0.5,
        evidence=lambda outcome: outcome.warned("Unable to perform the request"),
    ),
    Fault("spool write fails: new values", _nothing, _fail_spool("add", 2), evidence=_spool_failed),
    Fault(
        "spool write fails: accepted count",
        _nothing,
        _fail_spool("mark_accepted", 2),
        evidence=_spool_failed,
    ),
    Fault("spool write fails: scalar done", _nothing, _fail_spool("scalar_done", 1), evidence=_spool_failed),
    Fault(
        "spool write fails: taking a list over",
        _nothing,
        _fail_spool("take_over", 1),
        evidence=_spool_failed,
    ),
    Fault("spool write fails: release at close", _nothing, _fail_spool("release", 1), evidence=_spool_failed),
    Fault("full spool disk", lambda p: fill_disk(STORE_DIR), _full_disk, evidence=_no_durable_copy),
    Fault("unwritable spool folder", _nothing, _read_only, evidence=_no_durable_copy),
)


def run_fault(fault: Fault, platform: PlatformEmulator, steps: int = STEPS) -> Outcome:
    """Record a short run through ``fault``; deliver the spool afterwards if the fault outlasted it."""
    started = time.monotonic()
    logged = logged_values(steps)
    prepared = fault.prepare(platform) if fault.prepare else contextlib.nullcontext()
    with warnings.catch_warnings(record=True) as caught, prepared as context:
        warnings.simplefilter("always")
        recorder = MetricRecorder(
            flush_interval=fault.flush_interval,
            close_timeout=fault.close_timeout,
            request_timeout=fault.request_timeout,
        )
        for step in range(steps):
            recorder.log_step({name: logged[name][step] for name in LISTS}, step=step)
            if step == INJECT_AT:
                recorder.flush(timeout=10)  # some values are on the platform before the fault
                fault.inject(platform)
            if step % 20 == 0:
                time.sleep(0.004)
        recorder.log_final({"accuracy": 0.75})
        recorder.close()
        stored_at_close = _stored(platform)
        spooled = _spooled()
    sync = None
    if fault.ends_during_outage:
        platform.reset()
        sync = sync_spool(SPOOL)
    return Outcome(
        fault=fault.name,
        logged=logged,
        stored=_stored(platform),
        stored_at_close=stored_at_close,
        spooled_at_close=spooled,
        summary=recorder.summary(),
        warnings=[str(warning.message) for warning in caught],
        statuses=Counter(entry.status for entry in platform.requests_log),
        spool_failures=context.fired if isinstance(context, SpoolFaults) else 0,
        sync=sync,
        seconds=time.monotonic() - started,
    )


def _stored(platform: PlatformEmulator) -> dict[str, list[float]]:
    return {name: values for (run, name), values in platform.store.lists.items() if run == EXECUTION}


def _spooled() -> int:
    """List values the spool holds and the platform has not accepted (0 without a spool)."""
    if not SPOOL.is_file():
        return 0
    try:
        spool = Spool(SPOOL)
    except Exception:
        return 0
    try:
        return sum(len(item.values) for item in spool.pending_lists())
    finally:
        spool.close()


_REACHED = re.compile(r"([\d,]+) list values and (\d+) scalars reached")
_IN_SPOOL = re.compile(r"([\d,]+) list values and (\d+) scalars are in (?:the|a) spool")
_LOST = re.compile(r"([\d,]+) values lost|(0) lost")


def said(text: str) -> tuple[int, int, int]:
    """(list values reached, list values in the spool, values lost) as a message states them."""
    reached, in_spool, lost = _REACHED.search(text), _IN_SPOOL.search(text), _LOST.search(text)
    if not (reached and in_spool and lost):
        raise AssertionError(f"the message does not say where the values are: {text!r}")
    return (
        int(reached.group(1).replace(",", "")),
        int(in_spool.group(1).replace(",", "")),
        int((lost.group(1) or lost.group(2)).replace(",", "")),
    )


def platform_environment(platform: PlatformEmulator) -> dict[str, str]:
    """The environment of a step running inside ``EXECUTION`` on the emulator."""
    return {
        "CRAFT_AI_SDK_TOKEN": platform.token,
        "CRAFT_AI_ENVIRONMENT_URL": platform.url,
        "CRAFT_AI_CONTROL_URL": platform.url,
        "CRAFT_AI_EXECUTION_ID": EXECUTION,
    }


@contextlib.contextmanager
def set_platform_environment(platform: PlatformEmulator) -> Iterator[None]:
    """Set :func:`platform_environment` for the duration (benchmarks have no monkeypatch)."""
    before = {name: os.environ.get(name) for name in platform_environment(platform)}
    os.environ.update(platform_environment(platform))
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- process kills ---------------------------------------------------------------------

KILL_FLUSH_INTERVAL = 0.25

_TRAINING = """
import sys, time
from craft_callbacks import MetricRecorder
recorder = MetricRecorder(flush_interval=float(sys.argv[1]))
step = 0
while True:
    recorder.log_step({"loss": float(step), "acc": step / 7}, step=step)
    step += 1
    time.sleep(0.001)
    if step % 20 == 0:
        print(step, flush=True)
"""


@dataclass
class KillOutcome:
    """A process killed part-way: what it had logged, what reached the platform, what sync did."""

    name: str
    logged: int  # values per list the process had logged when killed
    required: int  # values per list logged up to 3 x flush_interval before the kill
    stored: dict[str, list[float]]
    sync: SyncReport | None
    seconds: float

    @property
    def prefix(self) -> bool:
        """The platform holds, per list, the first values logged, each once, in order."""
        expected = logged_values(max(len(values) for values in self.stored.values()) if self.stored else 0)
        return bool(self.stored) and all(
            values == expected[name][: len(values)] for name, values in self.stored.items()
        )

    @property
    def delivered(self) -> int:
        return min((len(values) for values in self.stored.values()), default=0)

    @property
    def duplicated(self) -> int:
        return sum(len(values) - len(set(values)) for values in self.stored.values())


def kill_training_during_outage(platform: PlatformEmulator, outage_s: float = 4.0) -> KillOutcome:
    """Training in a child process, the platform down, then SIGKILL; sync delivers the spool.

    The platform must end with a prefix of the values that misses at most the
    last ``3 x flush_interval`` of training (the spool is written every
    ``flush_interval`` whatever the retry backoff).
    """
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", _TRAINING, str(KILL_FLUSH_INTERVAL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **platform_environment(platform)},
    )
    progress: list[tuple[float, int]] = []  # (when read, steps logged)

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            progress.append((time.monotonic(), int(line)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while not progress or progress[-1][1] < 500:
            if child.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError("the training process did not start")
            time.sleep(0.01)
        platform.outage(3600)
        time.sleep(outage_s)
    finally:
        child.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        child.wait(30)
        reader.join(5)
    cutoff = killed_at - 3 * KILL_FLUSH_INTERVAL
    required = max((steps for when, steps in progress if when <= cutoff), default=0)
    platform.reset()
    sync = sync_spool(SPOOL)
    return KillOutcome(
        "SIGKILL of the training during an outage",
        progress[-1][1],
        required,
        _stored(platform),
        sync,
        time.monotonic() - started,
    )


_SYNC = "import sys; from craft_callbacks.cli import main; raise SystemExit(main(sys.argv[1:]))"


def kill_sync(platform: PlatformEmulator, lists: int = 6, values: int = 20_000) -> KillOutcome:
    """A spool of ``lists`` x ``values`` values (under half the cap: none thinned); ``craft-callbacks
    sync`` killed mid-way, then run again."""
    started = time.monotonic()
    logged = {f"m{index}": [float(step) for step in range(values)] for index in range(lists)}
    platform.outage(3600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recorder = MetricRecorder(flush_interval=0.05, close_timeout=0.5)
        for step in range(values):
            recorder.log_step({name: series[step] for name, series in logged.items()}, step=step)
        recorder.close()
    platform.reset()
    platform.latency_s = 0.25
    child = subprocess.Popen(
        [sys.executable, "-c", _SYNC, "sync", "--spool", str(SPOOL)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **platform_environment(platform)},
    )
    try:
        deadline = time.monotonic() + 60
        while platform.requests_per_route["list_post"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # a request in flight: the platform stores it, the answer never arrives
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    # The request in flight when the process died is still stored by the platform: let it land
    # before the next sync reads the counts (no client can see a request that lands later still).
    time.sleep(platform.latency_s + 0.5)
    platform.latency_s = 0.0
    sync = sync_spool(SPOOL)
    stored = {name: found for (run, name), found in platform.store.lists.items() if run == EXECUTION}
    exact = all(stored.get(name) == series for name, series in logged.items())
    return KillOutcome(
        "SIGKILL of craft-callbacks sync",
        values,
        values if exact else -1,
        stored,
        sync,
        time.monotonic() - started,
    )
