"""The 50,000 cap is per list per execution: several runs in one execution fit into it together.

Each run logs 30,000 values per list through the real craft-ai-sdk into the
platform emulator, one run after another or all at once. No request may be
refused, no list may pass 50,000 values, at least 90% of the cap is used, each
run's values are spread evenly over its steps, and each run's last value is kept.
"""

from __future__ import annotations

import warnings
from itertools import pairwise

import pytest

from craft_callbacks import MetricLimitWarning, MetricRecorder
from platform_emulator import PlatformEmulator

EXECUTION = "exec-test-1"
STEPS = 30_000
CAP = 50_000


def _value(run: int, step: int) -> float:
    """Run ``run``'s value at ``step``: runs never share a value, so the list splits back by run."""
    return run * 1_000_000 + step


def _log(recorders: list[MetricRecorder], runs: list[int]) -> None:
    for step in range(STEPS):
        for recorder, run in zip(recorders, runs, strict=True):
            recorder.log_step({"loss": _value(run, step), "lr": _value(run, step) + 0.5}, step=step)


def _steps_of(run: int, values: list[float]) -> list[int]:
    return [int(value - run * 1_000_000) for value in values if run * 1_000_000 <= value < (run + 1) * 1e6]


def _check(platform: PlatformEmulator, runs: int) -> list[int]:
    """The platform's lists against the rules; returns how many values each run kept."""
    assert all(entry.status == 200 for entry in platform.requests_log), "a request was refused"
    kept = []
    for name in ("loss", "lr"):
        values = platform.store.lists[(EXECUTION, name)]
        assert len(values) <= CAP
        assert len(values) >= 0.9 * CAP, len(values)
        for run in range(runs):
            steps = _steps_of(run, [value - (0.5 if name == "lr" else 0) for value in values])
            assert steps == sorted(set(steps)), "a run's values are out of order or repeated"
            assert steps[-1] == STEPS - 1, "a run's last value was not kept"
            spacing = STEPS / len(steps)
            gaps = [later - earlier for earlier, later in pairwise([-1, *steps])]
            assert max(gaps) <= 2 * spacing + 1, (run, max(gaps), spacing)  # spread evenly
            kept.append(len(steps))
    return kept


def test_a_second_run_in_the_execution_fits_into_what_the_first_left(platform: PlatformEmulator) -> None:
    for run in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricLimitWarning)
            with MetricRecorder(flush_interval=0.05, expected_events=STEPS) as recorder:
                _log([recorder], [run])
    kept = _check(platform, 2)
    assert kept[0] == STEPS  # the first run was alone: nothing thinned
    for name in ("loss", "lr"):  # the second run used what was left (thinning keeps one for its last value)
        assert len(platform.store.lists[(EXECUTION, name)]) >= CAP - 1


@pytest.mark.parametrize("runs", [2, 3])
def test_runs_recording_at_once_share_the_cap_evenly(platform: PlatformEmulator, runs: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricLimitWarning)
        recorders = [MetricRecorder(flush_interval=0.05, expected_events=STEPS) for _ in range(runs)]
        _log(recorders, list(range(runs)))
        for recorder in recorders:
            recorder.close()
    kept = _check(platform, runs)
    assert max(kept) - min(kept) <= 0.05 * CAP / runs, kept  # even shares
