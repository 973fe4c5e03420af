"""Bring an MLflow run's metrics and params to a sink: whatever MLflow autolog covers, on the platform.

``record_mlflow_run(run_id)`` reads a finished (or running) MLflow run through
``MlflowClient`` and replays it through a :class:`MetricRecorder`, so the
same rules apply as to a live run: names made safe, lists capped and thinned
evenly, non-finite values dropped with one warning per name.

- each metric's history becomes a list metric, in step order (then
  timestamp and value, MLflow's own order for "latest"), with MLflow's steps kept where the sink keeps steps;
- each metric's latest value (MLflow's own "latest": highest step, then
  newest) becomes a scalar metric;
- params become the run's hyperparameters, as MLflow keeps them (strings):
  a param is never turned into a metric.

Install with ``pip install 'craft-callbacks[mlflow]'``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Final

from craft_callbacks.recorder import MetricRecorder

_STATUS: Final = {"FINISHED": "success", "FAILED": "failed", "KILLED": "interrupted"}


def record_mlflow_run(
    run_id: str,
    sink: Any = "auto",
    *,
    tracking_uri: str | None = None,
    store_path: str | os.PathLike[str] | None = None,
    **recorder_options: Any,
) -> str:
    """Copy MLflow run ``run_id`` to ``sink`` ("auto", a LocalStore, the SDK...); returns the run's id there.

    ``tracking_uri`` picks the MLflow tracking store (default: MLflow's own
    default, ``MLFLOW_TRACKING_URI``). ``recorder_options`` go to
    :class:`MetricRecorder` (``pipeline_name``, ``execution_id``,
    ``max_list_values``...). The copy's status follows the MLflow run's.
    """
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as error:
        raise ImportError("record_mlflow_run needs MLflow: pip install 'craft-callbacks[mlflow]'") from error
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    histories = {key: client.get_metric_history(run_id, key) for key in sorted(run.data.metrics)}
    events = _events(histories.items())
    recorder = MetricRecorder(
        sink,
        store_path=store_path,
        hyperparameters=dict(run.data.params),
        expected_events=len(events) or None,
        **recorder_options,
    )
    status = _STATUS.get(str(run.info.status), str(run.info.status).lower())
    try:
        for step, metrics in events:
            recorder.log_step(metrics, step=step)
        recorder.log_final(run.data.metrics)
    finally:
        recorder.close(status=status)
    return recorder.execution_id


def _events(histories: Iterable[tuple[str, list[Any]]]) -> list[tuple[int, dict[str, float]]]:
    """The histories as ``log_step`` events in step order (more than one where a metric repeats a step)."""
    at_step: dict[int, list[dict[str, float]]] = defaultdict(list)
    for key, history in histories:
        seen_at: dict[int, int] = defaultdict(int)
        for metric in sorted(history, key=lambda metric: (metric.step, metric.timestamp, metric.value)):
            slot = seen_at[metric.step]
            seen_at[metric.step] += 1
            events = at_step[metric.step]
            if slot == len(events):
                events.append({})
            events[slot][key] = metric.value
    return [(step, metrics) for step in sorted(at_step) for metrics in at_step[step]]
