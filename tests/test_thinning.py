"""The per-list cap: never above it, even thinning with a known total, graceful without."""

from __future__ import annotations

import itertools
import warnings

import pytest

from craft_callbacks import LocalStore, MemorySink, MetricLimitWarning, MetricRecorder
from craft_callbacks.thinning import ListThinner


def _record(
    store: LocalStore, events: int, expected: int | None, cap: int = 50_000
) -> tuple[MetricRecorder, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recorder = MetricRecorder(store, max_list_values=cap, expected_events=expected, flush_interval=0.2)
        for step in range(events):
            metrics = {"loss": step * 1e-3, "lr": 1e-4}
            if step % 500 == 499:
                metrics["eval_loss"] = step * 2e-3
            recorder.log_step(metrics, step=step)
        recorder.close()
    return recorder, list(caught)


def _gaps(steps: list[int]) -> list[int]:
    return [after - before for before, after in itertools.pairwise(steps)]


def test_known_total_thins_evenly_and_uses_the_cap(store: LocalStore) -> None:
    recorder, caught = _record(store, 60_000, expected=60_000)
    series = {name: store.list_series(recorder.execution_id, name) for name in ("loss", "lr", "eval_loss")}
    for name in ("loss", "lr"):
        steps = [step for step, _ in series[name]]
        assert 40_000 <= len(steps) <= 50_000, name
        assert steps == sorted(steps)
        assert steps[0] == 0
        assert steps[-1] == 59_999  # spans the whole run
        assert max(_gaps(steps)) <= 2  # even: 5 of every 6 kept
    # a list that never reaches the cap is never thinned
    assert [step for step, _ in series["eval_loss"]] == list(range(499, 60_000, 500))
    limit_warnings = [w for w in caught if issubclass(w.category, MetricLimitWarning)]
    assert sorted(str(w.message).split("'")[1] for w in limit_warnings) == ["loss", "lr"]


def test_values_kept_are_the_values_logged_at_their_steps(store: LocalStore) -> None:
    recorder, _ = _record(store, 12_000, expected=12_000, cap=1_000)
    pairs = store.list_series(recorder.execution_id, "loss")
    assert 800 <= len(pairs) <= 1_000
    assert all(value == step * 1e-3 for step, value in pairs)
    # the last value logged becomes the scalar even when thinning skipped it
    scalars = {row["name"]: row["value"] for row in store.get_metrics(execution_id=recorder.execution_id)}
    assert scalars["loss"] == 11_999 * 1e-3


def test_unknown_total_stays_under_the_cap_and_spans_the_run(store: LocalStore) -> None:
    recorder, caught = _record(store, 40_000, expected=None, cap=2_000)
    steps = [step for step, _ in store.list_series(recorder.execution_id, "loss")]
    assert len(steps) <= 2_000
    assert steps[:1_000] == list(range(1_000))  # the first half of the cap is kept as it comes
    assert steps[-1] == 39_999  # the list ends with the run's last value
    assert steps == sorted(steps)
    assert max(_gaps(steps)) <= 40_000 // 8  # and has points all along the run
    assert sum(issubclass(w.category, MetricLimitWarning) for w in caught) == 2


def test_run_outliving_its_estimate_never_passes_the_cap(store: LocalStore) -> None:
    recorder, _ = _record(store, 30_000, expected=5_000, cap=2_000)
    steps = [step for step, _ in store.list_series(recorder.execution_id, "loss")]
    assert len(steps) <= 2_000
    assert steps[-1] == 29_999
    assert max(_gaps(steps)) <= 30_000 // 8


def test_short_lists_are_never_thinned() -> None:
    sink = MemorySink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricLimitWarning)
        with MetricRecorder(sink, max_list_values=100, expected_events=100) as recorder:
            for step in range(100):
                recorder.log_step({"loss": float(step)}, step=step)
    assert sink.lists["loss"] == [float(step) for step in range(100)]


def test_the_cap_applies_to_every_sink() -> None:
    sink = MemorySink()
    with pytest.warns(MetricLimitWarning), MetricRecorder(sink, max_list_values=300) as recorder:
        for step in range(5_000):
            recorder.log_step({"loss": float(step)}, step=step)
    assert len(sink.lists["loss"]) <= 300
    assert sink.lists["loss"][-1] == 4_999


@pytest.mark.parametrize("chunk", [1, 7, 1_000, 60_000])
def test_thinner_known_total_is_even_whatever_the_chunking(chunk: int) -> None:
    thinner = ListThinner(cap=50_000)
    kept: list[int] = []
    for start in range(0, 60_000, chunk):
        count = min(chunk, 60_000 - start)
        selection = thinner.select(count, events=start + count, expected_events=60_000)
        indices = range(count) if selection.indices is None else selection.indices
        kept.extend(start + index for index in indices)
    assert 48_000 <= len(kept) <= 50_000
    assert kept[0] == 0 and kept[-1] >= 59_990
    assert max(_gaps(kept)) <= 2
    assert thinner.kept == len(kept)
    assert thinner.thinned == 60_000 - len(kept)
