"""Series made small enough to draw, with their shape kept: pure functions over steps and values.

A chart a few hundred pixels wide cannot show 50,000 points, and sending them
costs time and memory. :func:`min_max` keeps, from each of ``points - 1``
buckets of consecutive points, the lowest and the highest (in their order), plus
the first and the last point of the series: at most ``2 × points`` points, and
a spike, a dip or a plateau shows as it was. :func:`smooth` is TensorBoard's
smoothing (an exponential moving average, debiased at the start).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Sequence
from typing import TypeVar

from craft_callbacks.values import Number

_S = TypeVar("_S", int, float)
_T = TypeVar("_T")


def min_max(
    steps: Sequence[_S], values: Sequence[Number], points: int
) -> tuple[list[_S], list[Number], bool]:
    """At most ``2 × points`` of the points, the first and the last always among them.

    Returns the steps, the values, and whether any point was left out. The
    points between the first and the last fall, in order, into ``points - 1``
    buckets of (nearly) equal counts; each bucket gives its lowest and its highest
    value (one point when they are the same). Steps come out in the order they
    went in.
    """
    if points < 1:
        raise ValueError(f"points must be at least 1, not {points}")
    if len(steps) != len(values):
        raise ValueError(f"{len(steps)} steps for {len(values)} values")
    count = len(values)
    if count <= 2 * points:
        return _as_list(steps), _as_list(values), False
    inner = count - 2
    buckets = points - 1
    kept = [0]
    for bucket in range(buckets):
        low = 1 + bucket * inner // buckets
        high = 1 + (bucket + 1) * inner // buckets
        if low >= high:
            continue
        part = values[low:high]  # min, max and index on a slice run in C: no call per point
        lowest = low + part.index(min(part))
        highest = low + part.index(max(part))
        if lowest == highest:
            kept.append(lowest)
        elif lowest < highest:
            kept.extend((lowest, highest))
        else:
            kept.extend((highest, lowest))
    kept.append(count - 1)
    return [steps[index] for index in kept], [values[index] for index in kept], True


def in_order(steps: Sequence[_S], values: Sequence[Number]) -> tuple[list[_S], list[Number]]:
    """The points sorted by step (stable: points at one step keep their recording order)."""
    if all(map(operator.le, steps, itertools.islice(steps, 1, None))):
        return _as_list(steps), _as_list(values)
    order = sorted(range(len(steps)), key=steps.__getitem__)
    return [steps[index] for index in order], [values[index] for index in order]


def step_range(
    steps: Sequence[_S],
    values: Sequence[Number],
    start: float | None = None,
    end: float | None = None,
    after: float | None = None,
) -> tuple[list[_S], list[Number]]:
    """The points of sorted ``steps`` with ``start <= step <= end`` and ``step > after`` (each optional)."""
    low = 0
    high = len(steps)
    if start is not None:
        low = bisect.bisect_left(steps, start)
    if after is not None:
        low = max(low, bisect.bisect_right(steps, after))
    if end is not None:
        high = bisect.bisect_right(steps, end)
    if low >= high:
        return [], []
    return list(steps[low:high]), list(values[low:high])


def smooth(values: Sequence[Number], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average of weight ``weight`` in [0, 1), debiased.

    ``weight`` 0 leaves the values as they are; closer to 1 smooths more. A
    constant series stays as it is.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"the smoothing weight must be in [0, 1), not {weight}")
    if not values or all(value == values[0] for value in values):
        return [float(value) for value in values]
    smoothed = []
    last = 0.0
    for count, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        smoothed.append(last / (1 - weight**count))
    return smoothed


def _as_list(items: Sequence[_T]) -> list[_T]:
    return items if isinstance(items, list) else list(items)
