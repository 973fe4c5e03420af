"""Property tests: whatever a training loop logs, the recorder never raises and a sink only sees numbers.

(1) arbitrary mappings through ``log_step`` / ``log_final`` into a ``MemorySink``; (2) ``to_number``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from craft_callbacks import (
    CraftCallbacksWarning,
    MemorySink,
    MetricRecorder,
    NonFiniteMetricWarning,
    NonNumericMetricWarning,
)
from craft_callbacks.names import NameRegistry
from craft_callbacks.values import NON_FINITE, NON_NUMERIC, Rejected, to_number

SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)

# -- strategies ----------------------------------------------------------------------------------

REAL_OR_COMPLEX_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),  # float16, float32, float64
    hnp.complex_number_dtypes(),
)
SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=2)
ARRAYS = hnp.arrays(dtype=REAL_OR_COMPLEX_DTYPES, shape=SMALL_SHAPES)

KEYS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["loss", "train/loss", "train_loss", "", ".", "..", "val loss", "val_loss"]),
    st.integers(),
    st.none(),
    st.tuples(st.integers(-3, 3), st.text(max_size=3)),
)
VALUES = st.one_of(
    st.floats(),  # NaN and infinities included
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**70, 2**63, INT64_MAX, INT64_MIN, INT64_MIN - 1]),
    st.booleans(),
    st.text(max_size=4),
    st.sampled_from(["1.5", "nan", "inf", "0"]),
    st.none(),
    st.lists(st.floats(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.floats(), max_size=2),
    ARRAYS,
    st.complex_numbers(),
    st.decimals(),
    st.fractions(),
)
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=6)


def expected_number(value: Any) -> int | float | None:
    """The number the value rules (craft_callbacks.values) make of ``value``, or None when it is none."""
    if type(value) is bool:
        return int(value)
    if type(value) is int:
        if INT64_MIN <= value <= INT64_MAX:
            return value
        try:
            return float(value)
        except OverflowError:
            return None
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.dtype.kind not in "biuf":
            return None
        scalar = value.reshape(())[()]
        if value.dtype.kind == "b":
            return int(bool(scalar))
        if value.dtype.kind in "iu":
            return expected_number(int(scalar))
        with np.errstate(over="ignore"):
            number = float(scalar)  # a longdouble beyond float range becomes inf
        return number if math.isfinite(number) else None
    if isinstance(value, (Decimal, Fraction)):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            return None
        return number if math.isfinite(number) else None
    return None  # str, None, lists, dicts, complex


def typed(values: list[Any]) -> list[tuple[type, Any]]:
    return [(type(value), value) for value in values]


# -- (1) the recorder ----------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(steps=st.lists(MAPPINGS, max_size=6), finals=st.lists(MAPPINGS, max_size=3))
def test_arbitrary_mappings_never_raise_and_only_finite_numbers_arrive(
    steps: list[dict[Any, Any]], finals: list[dict[Any, Any]]
) -> None:
    sink = MemorySink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recorder = MetricRecorder(sink, flush_interval=0.05)
        try:
            for mapping in steps:
                recorder.log_step(mapping)
            for mapping in finals:
                recorder.log_final(mapping)
        finally:
            recorder.close()

    # Only finite Python ints and floats, under safe names, reached the sink.
    for name, values in sink.lists.items():
        assert SAFE.match(name) and len(name) <= 255
        for value in values:
            assert type(value) in (int, float) and math.isfinite(value), (name, value)
    for name, value in sink.scalars.items():
        assert SAFE.match(name) and len(name) <= 255
        assert type(value) in (int, float) and math.isfinite(value), (name, value)

    # Every number arrived, in order, under the name the policy gives its key (first come keeps it).
    registry = NameRegistry()
    lists: dict[str, list[int | float]] = defaultdict(list)
    rejected_sources: set[str] = set()
    for mapping in steps:
        for key, value in mapping.items():
            name, _ = registry.resolve(str(key))
            number = expected_number(value)
            if number is None:
                rejected_sources.add(str(key))
            else:
                lists[name].append(number)
    scalars: dict[str, int | float] = {}
    for mapping in finals:
        for key, value in mapping.items():
            number = expected_number(value)
            if number is None:
                rejected_sources.add(str(key))
            else:
                scalars[registry.resolve(str(key))[0]] = number
    for name, values in lists.items():
        if values and name not in scalars:
            scalars[name] = values[-1]

    assert {name: typed(values) for name, values in sink.lists.items()} == {
        name: typed(values) for name, values in lists.items() if values
    }
    assert {name: typed([value]) for name, value in sink.scalars.items()} == {
        name: typed([value]) for name, value in scalars.items()
    }

    # Warnings: nothing internal went wrong, and at most one warning per category per metric name.
    craft = [w for w in caught if issubclass(w.category, CraftCallbacksWarning)]
    assert not [w for w in craft if w.category is CraftCallbacksWarning], [str(w.message) for w in craft]
    value_warnings = [w for w in craft if w.category in (NonNumericMetricWarning, NonFiniteMetricWarning)]
    accounted = 0
    for source in {str(key) for mapping in steps + finals for key in mapping}:
        for category in (NonNumericMetricWarning, NonFiniteMetricWarning):
            count = sum(
                1
                for w in value_warnings
                if w.category is category and f"metric {source!r} got" in str(w.message)
            )
            assert count <= 1, (source, category)
            accounted += count
        if source in rejected_sources:
            assert any(f"metric {source!r} got" in str(w.message) for w in value_warnings), source
    assert accounted == len(value_warnings)


# -- (2) to_number -------------------------------------------------------------------------------


class FloatReturns:
    """An object whose ``__float__`` returns (or, for an exception, raises) what it was given."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def __float__(self) -> Any:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


class OddShape:
    """An object with a ``shape`` attribute that is not a real shape."""

    def __init__(self, shape: Any) -> None:
        self.shape = shape

    def item(self) -> Any:
        return self


ANY_DTYPE = st.one_of(
    hnp.scalar_dtypes(),  # datetime64 and timedelta64 included
    hnp.byte_string_dtypes(max_len=3),
    hnp.unicode_string_dtypes(max_len=3),
    st.just(np.dtype(np.longdouble)),
    st.just(np.dtype(np.clongdouble)),
)
ANYTHING = st.one_of(
    VALUES,
    hnp.arrays(dtype=ANY_DTYPE, shape=SMALL_SHAPES),
    ANY_DTYPE.flatmap(lambda dtype: hnp.from_dtype(dtype)),  # numpy scalars
    st.floats().map(np.longdouble),
    st.floats().map(torch.tensor),
    st.lists(st.floats(), min_size=0, max_size=3).map(torch.tensor),
    st.floats().map(lambda x: torch.tensor([x], requires_grad=True)),
    st.integers(-(2**63), 2**63 - 1).map(torch.tensor),
    st.binary(max_size=3),
    st.sets(st.integers(), max_size=2),
    st.builds(
        FloatReturns,
        st.one_of(st.floats(), st.text(max_size=2), st.none(), st.just(ValueError("bad")), st.integers()),
    ),
    st.builds(OddShape, st.one_of(st.none(), st.text(max_size=3), st.tuples(), st.tuples(st.just(1)))),
    st.just(object()),
    st.just(Ellipsis),
    st.just(float),
)


def assert_number_or_rejected(result: Any) -> None:
    if isinstance(result, Rejected):
        assert result.kind in (NON_NUMERIC, NON_FINITE)
        assert isinstance(result.reason, str) and result.reason
    else:
        assert type(result) in (int, float), (result, type(result))
        assert math.isfinite(result)


@settings(max_examples=200, deadline=None)
@given(ANYTHING)
def test_to_number_never_raises_and_returns_a_finite_number_or_a_rejection(value: Any) -> None:
    assert_number_or_rejected(to_number(value))


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_to_number_agrees_with_the_spec_on_plain_values(value: Any) -> None:
    result = to_number(value)
    expected = expected_number(value)
    if expected is None:
        assert isinstance(result, Rejected)
    else:
        assert typed([result]) == typed([expected])


@settings(max_examples=200, deadline=None)
@given(st.integers())
@example(2**63 - 1)
@example(2**63)
@example(-(2**63))
@example(-(2**63) - 1)
@example(2**70)
@example(int(1.7976931348623157e308))
@example(2**1024)
@example(10**400)
@example(-(10**400))
@example(10**5000)
@example(-(10**5000))
def test_to_number_on_ints(value: int) -> None:
    result = to_number(value)
    if INT64_MIN <= value <= INT64_MAX:
        assert type(result) is int and result == value
    elif abs(value) < 2**1024 - 2**970:  # rounds to a finite float
        assert type(result) is float and result == float(value)
    else:
        assert isinstance(result, Rejected) and result.kind == NON_FINITE


@settings(max_examples=200, deadline=None)
@given(st.floats())
def test_to_number_on_floats(value: float) -> None:
    result = to_number(value)
    if math.isfinite(value):
        assert type(result) is float and result == value
    else:
        assert isinstance(result, Rejected) and result.kind == NON_FINITE


ARRAYS_WITH_LONG_DOUBLES = hnp.arrays(
    dtype=st.one_of(
        REAL_OR_COMPLEX_DTYPES, st.just(np.dtype(np.longdouble)), st.just(np.dtype(np.clongdouble))
    ),
    shape=SMALL_SHAPES,
)


@settings(max_examples=200, deadline=None)
@given(ARRAYS_WITH_LONG_DOUBLES, st.booleans())
def test_to_number_on_numpy_arrays_and_scalars(value: np.ndarray, as_scalar: bool) -> None:
    given_value = value.reshape(())[()] if as_scalar and value.size == 1 else value
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = to_number(given_value)
    expected = expected_number(value)
    if value.size != 1 or value.dtype.kind == "c":
        # complex numbers are not real numbers, even with a zero imaginary part
        assert isinstance(result, Rejected) and result.kind == NON_NUMERIC, (value, result)
    elif expected is None:
        assert isinstance(result, Rejected) and result.kind == NON_FINITE, (value, result)
    else:
        assert typed([result]) == typed([expected]), value
    # no numpy ComplexWarning / RuntimeWarning leaks out of a conversion
    assert [str(w.message) for w in caught] == []
