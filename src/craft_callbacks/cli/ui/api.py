"""The dashboard's JSON API, as plain functions from a read-only store and parameters to data.

The server (:mod:`craft_callbacks.cli.ui.server`) routes ``/api/...`` here and the
report (:mod:`craft_callbacks.cli.ui.report`) builds its inline data from the same
functions, so the page reads the same objects from both. docs/ui-api.md is the
contract. Everything that comes from the store is data: it leaves as JSON
strings, never as markup.
"""

from __future__ import annotations

import json
import math
import threading
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Final

from craft_callbacks.cli.ui.downsample import in_order, min_max, step_range
from craft_callbacks.exceptions import RunNotFoundError
from craft_callbacks.sinks.local_store import (
    ReadOnlyStore,
    SeriesColumns,
    match_run,
    select_executions,
    select_list_counts,
    select_list_summaries,
    select_scalars,
    select_series_columns,
)
from craft_callbacks.values import Number

DEFAULT_POINTS: Final = 1000
MAX_POINTS: Final = 10_000
MAX_RUNS_PER_SERIES: Final = 200


class ApiError(Exception):
    """An answer other than 200: its HTTP status and a one-line message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- runs -------------------------------------------------------------------------


def runs(store: ReadOnlyStore) -> dict[str, Any]:
    """``GET /api/runs``: every run in creation order, with its scalars and its lists' counts."""

    def query(db: Any) -> list[dict[str, Any]]:
        rows = select_executions(db)
        scalars = select_scalars(db)
        counts = select_list_counts(db)
        return [
            _run_object(row, scalars.get(row["execution_id"], {}), counts.get(row["execution_id"], {}))
            for row in rows
        ]

    return {"runs": store.read(query), "store": str(store.path)}


def run(store: ReadOnlyStore, reference: str) -> dict[str, Any]:
    """``GET /api/runs/<id>``: one run (its id, a unique prefix or ``latest``) with its lists summarised."""

    def query(db: Any) -> dict[str, Any]:
        found = _find(select_executions(db), reference, store)
        execution_id = found["execution_id"]
        counts = select_list_counts(db, execution_id).get(execution_id, {})
        data = _run_object(found, select_scalars(db, execution_id).get(execution_id, {}), counts)
        data["list_summaries"] = select_list_summaries(db, execution_id)
        return data

    return store.read(query)


def _run_object(
    row: Mapping[str, Any], scalars: Mapping[str, Number], counts: Mapping[str, int]
) -> dict[str, Any]:
    return {
        "id": row["execution_id"],
        "pipeline": row["pipeline_name"],
        "deployment": row["deployment_name"],
        "status": row["status"],
        "created_at": row["created_at"],
        "ended_at": row["ended_at"],
        "duration_s": duration_s(row["created_at"], row["ended_at"], row["status"]),
        "scalars": dict(scalars),
        "hyperparameters": row["hyperparameters"],
        "lists": dict(sorted(counts.items())),
    }


def duration_s(created_at: str | None, ended_at: str | None, status: str | None) -> float | None:
    """Seconds from a run's creation to its end, or to now while it runs; None when it cannot be told."""
    start = _parse_time(created_at)
    if start is None:
        return None
    if ended_at:
        end = _parse_time(ended_at)
    elif status == "running":
        end = datetime.now(timezone.utc)
    else:
        end = None
    if end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 3)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _find(rows: Sequence[Mapping[str, Any]], reference: str, store: ReadOnlyStore) -> dict[str, Any]:
    try:
        return match_run(rows, reference, store.path)
    except RunNotFoundError as error:
        raise ApiError(404, str(error)) from error


# -- series -----------------------------------------------------------------------


def series(store: ReadOnlyStore, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``GET /api/series?runs=A,B&metric=NAME&points=N[&start=S][&end=E][&after=STEP]``."""
    references = _run_list(_one(query, "runs"))
    metric = _one(query, "metric")
    if not metric:
        raise ApiError(400, "parameter 'metric' is required: the name of a list metric")
    points = _integer(query, "points", DEFAULT_POINTS, 1, MAX_POINTS)
    start = _number(query, "start")
    end = _number(query, "end")
    after = _number(query, "after")
    if start is not None and end is not None and start > end:
        raise ApiError(400, f"parameter 'start' ({start:g}) is after 'end' ({end:g})")
    return series_of(store, references, metric, points, start=start, end=end, after=after)


def series_of(
    store: ReadOnlyStore,
    references: Sequence[str],
    metric: str,
    points: int,
    start: float | None = None,
    end: float | None = None,
    after: float | None = None,
) -> dict[str, Any]:
    """One list metric of several runs, each at most ``2 × points`` points (see :func:`series`)."""

    def query(db: Any) -> list[dict[str, Any]]:
        rows = select_executions(db)
        found = [_find(rows, reference, store)["execution_id"] for reference in references]
        answers = []
        seen = False
        for execution_id in dict.fromkeys(found):
            if after is None:  # a chart's whole list, or a zoom into it: decoded once, then cached
                answer = _columns.answer(db, str(store.path), execution_id, metric, points, start, end)
                seen = seen or answer is not None
                answers.append(answer or _one_series(execution_id, None, points, start, end, after))
                continue
            # a live update: only the chunks after ``after`` are decoded
            columns = select_series_columns(db, execution_id, metric, start, end, after)
            seen = seen or columns is not None
            answers.append(_one_series(execution_id, columns, points, start, end, after))
        if not seen:
            names = list(dict.fromkeys(found))
            which = f"{'run' if len(names) == 1 else 'runs'} {', '.join(names)}"
            raise ApiError(404, f"no list metric {metric!r} in {which}")
        return answers

    return {"metric": metric, "series": store.read(query)}


class _ColumnCache:
    """Lists already decoded for a chart, while they do not change: a chart reloaded, zoomed or
    compared again costs no JSON decoding (which is most of a series answer's time).

    Each entry is stamped with its list's chunk count, last sequence number and value count (one
    indexed query), so any write to the list replaces it. Values and steps are kept as packed
    arrays (16 bytes a point) and the cache holds at most ``max_points`` points, least recently
    used first out: the ``ui`` process stays small whatever the store.
    """

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self._items: OrderedDict[tuple[str, str, str], tuple[tuple[int, int, int], SeriesColumns]] = (
            OrderedDict()
        )
        self._points = 0
        self._answers: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._answer_points = 0
        self._lock = threading.Lock()

    def answer(
        self,
        db: Any,
        store: str,
        execution_id: str,
        metric: str,
        points: int,
        start: float | None,
        end: float | None,
    ) -> dict[str, Any] | None:
        """A run's series answer (None: the run has no such list), from the cache while the list is
        unchanged."""
        found = self.get(db, store, execution_id, metric)
        if found is None:
            return None
        stamp, columns = found
        key = (store, execution_id, metric, points, start, end, stamp)
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
                return answer
        answer = _one_series(execution_id, columns, points, start, end, None)
        with self._lock:
            if key not in self._answers:
                self._answers[key] = answer
                self._answer_points += len(answer["steps"])
            while self._answer_points > MAX_CACHED_ANSWER_POINTS:
                _, dropped = self._answers.popitem(last=False)
                self._answer_points -= len(dropped["steps"])
        return answer

    def get(
        self, db: Any, store: str, execution_id: str, metric: str
    ) -> tuple[tuple[int, int, int], SeriesColumns] | None:
        row = db.execute(
            "SELECT l.list_id, COUNT(c.seq), COALESCE(MAX(c.seq), -1), COALESCE(SUM(c.count), 0) "
            "FROM lists l LEFT JOIN list_chunks c USING (list_id) WHERE l.execution_id = ? AND l.name = ? "
            "GROUP BY l.list_id",
            (execution_id, metric),
        ).fetchone()
        if row is None:
            return None
        key, stamp = (store, execution_id, metric), (row[1], row[2], row[3])
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == stamp:
                self._items.move_to_end(key)
                return hit
        columns = select_series_columns(db, execution_id, metric)
        if columns is None:
            return None
        packed = _packed(columns)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._points -= len(old[1].steps)
            if len(packed.steps) <= self.max_points:
                self._items[key] = (stamp, packed)
                self._points += len(packed.steps)
            while self._points > self.max_points:
                _, (_, dropped) = self._items.popitem(last=False)
                self._points -= len(dropped.steps)
        return stamp, packed


def _packed(columns: SeriesColumns) -> SeriesColumns:
    """The same columns in packed arrays (ints and floats as they were; a list keeps mixed ones)."""
    try:
        steps: Any = array("q", columns.steps)
    except (TypeError, OverflowError):
        steps = columns.steps
    values: Any = columns.values
    if all(type(value) is float for value in values):
        values = array("d", values)
    return SeriesColumns(steps, values, columns.total, columns.last_step)


MAX_CACHED_ANSWER_POINTS: Final = 1_000_000  # downsampled answers kept, in points (about 64 MB at most)
_columns = _ColumnCache(max_points=4_000_000)  # 16 bytes a point: at most about 64 MB


def _one_series(
    execution_id: str,
    columns: SeriesColumns | None,
    points: int,
    start: float | None,
    end: float | None,
    after: float | None,
) -> dict[str, Any]:
    steps: list[int] = []
    values: list[Number] = []
    total, last_step = 0, None
    if columns is not None:
        steps, values = in_order(columns.steps, columns.values)
        total, last_step = columns.total, columns.last_step
    if start is not None or end is not None or after is not None:
        steps, values = step_range(steps, values, start, end, after)
    steps, values, downsampled = min_max(steps, values, points)
    return {
        "run": execution_id,
        "steps": steps,
        "values": values,
        "total": total,
        "last_step": last_step,
        "downsampled": downsampled,
    }


# -- parameters -------------------------------------------------------------------


def _one(query: Mapping[str, Sequence[str]], name: str) -> str:
    given = query.get(name) or []
    if len(given) > 1:
        raise ApiError(400, f"parameter {name!r} is given {len(given)} times; give it once")
    return given[0].strip() if given else ""


def _run_list(text: str) -> list[str]:
    references = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not references:
        raise ApiError(400, "parameter 'runs' is required: run ids separated by commas")
    if len(references) > MAX_RUNS_PER_SERIES:
        raise ApiError(400, f"{len(references)} runs in one request; at most {MAX_RUNS_PER_SERIES}")
    return references


def _integer(query: Mapping[str, Sequence[str]], name: str, default: int, low: int, high: int) -> int:
    text = _one(query, name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"parameter {name!r} must be a whole number, not {text[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"parameter {name!r} must be between {low} and {high}, not {value}")
    return value


def _number(query: Mapping[str, Sequence[str]], name: str) -> float | None:
    text = _one(query, name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"parameter {name!r} must be a number, not {text[:40]!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, f"parameter {name!r} must be a finite number, not {text[:40]!r}")
    return value


# -- JSON -------------------------------------------------------------------------


def to_json(data: Any) -> str:
    """JSON text of an answer: never NaN or an infinity (a non-finite float becomes null)."""
    try:
        return json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(data), allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data
