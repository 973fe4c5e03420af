"""Bad input never breaks training: every odd key or value is converted, renamed or dropped.

Every test drives a real ``MetricRecorder`` into a ``MemorySink`` and checks, after ``close()``,
that nothing raised, that only finite Python ``int``/``float`` values reached the sink, and that
each dropped or renamed metric produced its documented warning exactly once, however often it
was logged.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

from craft_callbacks import (
    CraftCallbacksWarning,
    MemorySink,
    MetricNameWarning,
    MetricRecorder,
    NonFiniteMetricWarning,
    NonNumericMetricWarning,
)

REPEATS = 50
SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class BrokenFloat:
    """An object whose ``__float__`` raises."""

    def __float__(self) -> float:
        raise RuntimeError("no float for you")


class FloatLike:
    """An object that is a number only through ``__float__``."""

    def __float__(self) -> float:
        return 2.5


class UnprintableKey:
    """A hashable key whose ``str()`` and ``repr()`` raise."""

    def __str__(self) -> str:
        raise RuntimeError("no name for you")

    __repr__ = __str__


@dataclass
class Run:
    """What one recorder delivered, and the package's warnings it emitted."""

    sink: MemorySink
    caught: list[warnings.WarningMessage] = field(default_factory=list)

    def craft_warnings(self) -> list[warnings.WarningMessage]:
        return [w for w in self.caught if issubclass(w.category, CraftCallbacksWarning)]

    def count(self, category: type[Warning], fragment: str | None = None) -> int:
        """Warnings of exactly ``category`` whose message contains ``fragment``."""
        return sum(
            1
            for w in self.caught
            if w.category is category and (fragment is None or fragment in str(w.message))
        )


@contextmanager
def recording() -> Iterator[tuple[MetricRecorder, Run]]:
    """A recorder into a MemorySink, closed at the end, with every warning captured."""
    run = Run(MemorySink())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recorder = MetricRecorder(run.sink, flush_interval=0.05)
        try:
            yield recorder, run
        finally:
            recorder.close()
    run.caught = list(caught)
    assert_only_finite_numbers(run.sink)


def assert_only_finite_numbers(sink: MemorySink) -> None:
    """Only finite Python ints and floats, under safe names, ever reach the sink."""
    for name, values in sink.lists.items():
        assert SAFE.match(name) and len(name) <= 255, name
        for value in values:
            assert type(value) in (int, float), (name, value, type(value))
            assert math.isfinite(value), (name, value)
    for name, value in sink.scalars.items():
        assert SAFE.match(name) and len(name) <= 255, name
        assert type(value) in (int, float), (name, value, type(value))
        assert math.isfinite(value), (name, value)
    for method, name, payload in sink.calls:
        batch = payload if isinstance(payload, list) else [payload]
        for value in batch:
            assert type(value) in (int, float) and math.isfinite(value), (method, name, value)


def typed(values: list[Any]) -> list[tuple[type, Any]]:
    return [(type(value), value) for value in values]


# -- values that are not numbers, or not finite ------------------------------------------------


def _bad_values() -> list[Any]:
    nn, nf = NonNumericMetricWarning, NonFiniteMetricWarning
    cases: list[tuple[str, Callable[[], Any], type[Warning], str | None]] = [
        # id, factory (a fresh value per call), category, a type name the message must contain
        ("none", lambda: None, nn, "NoneType"),
        ("numeric-string", lambda: "1.5", nn, "str"),
        ("nan-string", lambda: "nan", nn, "str"),
        ("bytes", lambda: b"1.5", nn, "bytes"),
        ("dict", lambda: {"a": 1.0}, nn, "dict"),
        ("list", lambda: [1.0], nn, "list"),
        ("empty-list", lambda: [], nn, "list"),
        ("tuple", lambda: (1.0, 2.0), nn, "tuple"),
        ("numpy-vector", lambda: np.array([1.0, 2.0]), nn, "ndarray"),
        ("numpy-matrix", lambda: np.zeros((2, 2)), nn, "ndarray"),
        ("numpy-empty", lambda: np.array([]), nn, "ndarray"),
        ("torch-vector", lambda: torch.tensor([1.0, 2.0]), nn, "Tensor"),
        ("torch-vector-grad", lambda: torch.ones(3, requires_grad=True), nn, "Tensor"),
        ("object", lambda: object(), nn, "object"),
        ("broken-float", lambda: BrokenFloat(), nn, "BrokenFloat"),
        ("complex", lambda: complex(1.0, 2.0), nn, "complex"),
        ("complex-real-only", lambda: complex(1.0, 0.0), nn, "complex"),
        ("numpy-complex", lambda: np.complex128(1 + 2j), nn, "complex"),
        ("numpy-clongdouble", lambda: np.clongdouble(1 + 2j), nn, "clongdouble"),
        ("numpy-clongdouble-array", lambda: np.array([1 + 2j], dtype=np.clongdouble), nn, "ndarray"),
        ("torch-complex", lambda: torch.tensor(1 + 2j), nn, "Tensor"),
        ("nan", lambda: float("nan"), nf, None),
        ("+inf", lambda: float("inf"), nf, None),
        ("-inf", lambda: float("-inf"), nf, None),
        ("int-beyond-float", lambda: 10**400, nf, None),
        ("negative-int-beyond-float", lambda: -(10**400), nf, None),
        ("int-beyond-str-limit", lambda: 10**5000, nf, None),
        ("numpy-nan", lambda: np.float64("nan"), nf, None),
        ("numpy-float16-inf", lambda: np.float16("inf"), nf, None),
        ("numpy-longdouble-beyond-float", lambda: np.longdouble("1e4000"), nf, None),
        ("numpy-one-element-inf", lambda: np.array([-np.inf]), nf, None),
        ("torch-nan", lambda: torch.tensor(float("nan")), nf, None),
        ("torch-inf-grad", lambda: torch.tensor([float("inf")], requires_grad=True), nf, None),
        ("decimal-nan", lambda: Decimal("NaN"), nf, None),
        ("decimal-inf", lambda: Decimal("-Infinity"), nf, None),
        ("decimal-beyond-float", lambda: Decimal("1e400"), nf, None),
        ("fraction-beyond-float", lambda: Fraction(10**400, 3), nf, None),
    ]
    return [
        pytest.param(factory, category, type_name, id=case) for case, factory, category, type_name in cases
    ]


@pytest.mark.parametrize(("make", "category", "type_name"), _bad_values())
def test_bad_value_is_dropped_with_one_warning(
    make: Callable[[], Any], category: type[Warning], type_name: str | None
) -> None:
    with recording() as (recorder, run):
        for step in range(REPEATS):
            recorder.log_step({"bad": make(), "good": float(step)})
        for _ in range(REPEATS):
            recorder.log_final({"bad": make(), "final": 1})

    # The good metrics of the same calls flow on, untouched.
    assert typed(run.sink.lists["good"]) == typed([float(step) for step in range(REPEATS)])
    assert run.sink.scalars["final"] == 1 and type(run.sink.scalars["final"]) is int
    # Nothing of the bad metric reaches the sink.
    assert "bad" not in run.sink.lists
    assert "bad" not in run.sink.scalars
    # One warning, of the documented category, naming the key (and the type for non-numeric values).
    assert run.count(category, "'bad'") == 1, [str(w.message) for w in run.craft_warnings()]
    assert [w.category for w in run.craft_warnings()] == [category]
    if type_name is not None:
        assert type_name in str(run.craft_warnings()[0].message)


# -- values that are numbers in disguise -------------------------------------------------------


def _good_values() -> list[Any]:
    cases: list[tuple[str, Callable[[], Any], int | float]] = [
        # id, factory, the exact Python value (and so type) that must arrive
        ("float", lambda: 0.5, 0.5),
        ("int", lambda: 3, 3),
        ("negative-zero", lambda: -0.0, -0.0),
        ("true", lambda: True, 1),
        ("false", lambda: False, 0),
        ("int64-max", lambda: 2**63 - 1, 2**63 - 1),
        ("int64-min", lambda: -(2**63), -(2**63)),
        ("just-beyond-int64", lambda: 2**63, float(2**63)),
        ("beyond-int64", lambda: 2**70, float(2**70)),
        ("negative-beyond-int64", lambda: -(2**70), -float(2**70)),
        ("largest-float-int", lambda: int(1.7976931348623157e308), 1.7976931348623157e308),
        ("numpy-float64", lambda: np.float64(0.25), 0.25),
        ("numpy-float32", lambda: np.float32(0.5), 0.5),
        ("numpy-float16", lambda: np.float16(0.5), 0.5),
        ("numpy-int64", lambda: np.int64(7), 7),
        ("numpy-int8", lambda: np.int8(-3), -3),
        ("numpy-uint64-max", lambda: np.uint64(2**64 - 1), float(2**64 - 1)),
        ("numpy-bool", lambda: np.bool_(True), 1),
        ("numpy-longdouble", lambda: np.longdouble(0.5), 0.5),
        ("numpy-longdouble-array", lambda: np.array([0.25], dtype=np.longdouble), 0.25),
        ("numpy-0d", lambda: np.array(0.5), 0.5),
        ("numpy-0d-int", lambda: np.array(4), 4),
        ("numpy-one-element", lambda: np.array([0.5]), 0.5),
        ("numpy-one-element-2d", lambda: np.array([[2]], dtype=np.int32), 2),
        ("numpy-one-element-float16", lambda: np.array([1.5], dtype=np.float16), 1.5),
        ("torch-0d", lambda: torch.tensor(0.5), 0.5),
        ("torch-one-element", lambda: torch.tensor([0.5]), 0.5),
        ("torch-one-element-grad", lambda: torch.tensor([0.5], requires_grad=True), 0.5),
        ("torch-grad-result", lambda: (torch.tensor([0.25], requires_grad=True) * 2).sum(), 0.5),
        ("torch-int", lambda: torch.tensor(3), 3),
        ("torch-float16", lambda: torch.tensor([1.5], dtype=torch.float16), 1.5),
        ("torch-bfloat16", lambda: torch.tensor(2.0, dtype=torch.bfloat16), 2.0),
        ("torch-bool", lambda: torch.tensor(True), 1),
        ("decimal", lambda: Decimal("1.5"), 1.5),
        ("fraction", lambda: Fraction(1, 4), 0.25),
        ("float-like", lambda: FloatLike(), 2.5),
    ]
    return [pytest.param(factory, expected, id=case) for case, factory, expected in cases]


@pytest.mark.parametrize(("make", "expected"), _good_values())
def test_number_in_disguise_arrives_as_a_plain_python_number(
    make: Callable[[], Any], expected: int | float
) -> None:
    with recording() as (recorder, run):
        for step in range(REPEATS):
            recorder.log_step({"m": make()}, step=step)
        recorder.log_final({"m_final": make()})

    assert typed(run.sink.lists["m"]) == typed([expected] * REPEATS)
    assert math.copysign(1.0, run.sink.lists["m"][0]) == math.copysign(1.0, expected)
    assert typed([run.sink.scalars["m_final"]]) == typed([expected])
    # close() made the last list value the scalar of "m"
    assert typed([run.sink.scalars["m"]]) == typed([expected])
    assert run.craft_warnings() == []


# -- keys that are not strings, or empty ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name", "fragment"),
    [
        pytest.param(1, "1", "1", id="int"),
        pytest.param(-7, "-7", "-7", id="negative-int"),
        pytest.param(2.5, "2.5", "2.5", id="float"),
        pytest.param((1, "a"), "_1___a__", "(1, 'a')", id="tuple"),
        pytest.param(None, "None", "None", id="none"),
        pytest.param("", "_", "empty", id="empty-string"),
    ],
)
def test_odd_key_is_named_and_warned_about_once(key: Any, name: str, fragment: str) -> None:
    with recording() as (recorder, run):
        for step in range(REPEATS):
            recorder.log_step({key: step / 10})
        for _ in range(REPEATS):
            recorder.log_final({key: 0.75})

    assert typed(run.sink.lists[name]) == typed([step / 10 for step in range(REPEATS)])
    assert run.sink.scalars[name] == 0.75
    assert set(run.sink.lists) == {name}
    assert run.count(MetricNameWarning, fragment) == 1
    assert [w.category for w in run.craft_warnings()] == [MetricNameWarning]


@pytest.mark.parametrize(
    ("key", "value", "category"),
    [
        pytest.param(3, None, NonNumericMetricWarning, id="int-key-none-value"),
        pytest.param(None, float("nan"), NonFiniteMetricWarning, id="none-key-nan-value"),
        pytest.param((1, 2), "x", NonNumericMetricWarning, id="tuple-key-str-value"),
        pytest.param("", float("-inf"), NonFiniteMetricWarning, id="empty-key-inf-value"),
    ],
)
def test_odd_key_with_bad_value_warns_once_per_category(
    key: Any, value: Any, category: type[Warning]
) -> None:
    with recording() as (recorder, run):
        for _ in range(REPEATS):
            recorder.log_step({key: value, "ok": 1.0})
            recorder.log_final({key: value})

    assert run.sink.lists == {"ok": [1.0] * REPEATS}
    assert run.sink.scalars == {"ok": 1.0}
    assert sorted(w.category.__name__ for w in run.craft_warnings()) == sorted(
        [MetricNameWarning.__name__, category.__name__]
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(1, True, id="1-and-True"),
        pytest.param(0, False, id="0-and-False"),
        pytest.param(1, 1.0, id="1-and-1.0"),
    ],
)
def test_keys_equal_in_python_but_named_differently_stay_apart(first: Any, second: Any) -> None:
    # 1 == True == 1.0 as dict keys, but the recorder names them "1", "True" and "1.0":
    # each value belongs to the name the recorder gives (and warns about) for its own key.
    with recording() as (recorder, run):
        for _ in range(REPEATS):
            recorder.log_step({first: 0.5})
            recorder.log_step({second: 0.25})

    assert run.sink.lists.get(str(first)) == [0.5] * REPEATS
    assert run.sink.lists.get(str(second)) == [0.25] * REPEATS
    assert run.count(MetricNameWarning) == 2


@pytest.mark.parametrize(
    "new_key",
    [
        pytest.param(lambda: float("nan"), id="float-nan"),
        pytest.param(lambda: np.float64("nan"), id="numpy-nan"),
    ],
)
def test_a_key_unequal_to_itself_is_cached_once_not_once_per_call(new_key: Callable[[], Any]) -> None:
    # NaN != NaN: a dict finds no entry for a new NaN object, so a cache keyed by the key itself
    # would grow by one entry per call.
    with recording() as (recorder, run):
        for _ in range(2_000):
            recorder.log_step({new_key(): 0.5})
        assert len(recorder._lists.appenders_of_other_keys) == 1
    assert run.sink.lists == {"nan": [0.5] * 2_000}
    assert run.count(MetricNameWarning) == 1


@pytest.mark.parametrize(
    "key",
    [pytest.param(10**5000, id="int-key-beyond-str-limit"), pytest.param(UnprintableKey(), id="unprintable")],
)
def test_key_without_a_name_does_not_take_the_other_metrics_of_the_call_with_it(key: Any) -> None:
    with recording() as (recorder, run):
        for step in range(REPEATS):
            recorder.log_step({"before": 1.0, key: 2.0, "after": float(step)})
        recorder.log_final({"before_final": 1.0, key: 2.0, "after_final": 3.0})

    assert run.sink.lists.get("before") == [1.0] * REPEATS
    assert run.sink.lists.get("after") == [float(step) for step in range(REPEATS)]
    assert run.sink.scalars.get("before_final") == 1.0
    assert run.sink.scalars.get("after_final") == 3.0
    assert run.count(MetricNameWarning) == 1  # the key's name, once for both calls
    assert len(run.craft_warnings()) == 1


# -- names that need the name policy ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("train/loss", "train_loss"),
        ("eval/accuracy", "eval_accuracy"),
        ("val loss", "val_loss"),
        (" padded ", "_padded_"),
        ("a..b", "a..b"),
        ("..", "__"),
        (".", "_"),
        ("../etc/passwd", ".._etc_passwd"),
        ("what?", "what_"),
        ("#1", "_1"),
        ("100%", "100_"),
        ("a?b#c%d", "a_b_c_d"),
        ("précision", "precision"),
        ("Ångström", "Angstrom"),
        ("损失", "__"),
        ("tab\there", "tab_here"),
        ("new\nline", "new_line"),
        ("lr-group.0", "lr-group.0"),
    ],
)
def test_unsafe_characters_are_mapped_without_a_warning(key: str, name: str) -> None:
    with recording() as (recorder, run):
        for step in range(REPEATS):
            recorder.log_step({key: float(step)})
        recorder.log_final({key: 2})

    assert typed(run.sink.lists[name]) == typed([float(step) for step in range(REPEATS)])
    assert set(run.sink.lists) == {name}
    # the explicit scalar of the same key wins over the last list value
    assert run.sink.scalars == {name: 2}
    # A plain character mapping is logged, not warned about (MetricNameWarning: collision, length, key type).
    assert run.count(MetricNameWarning) == 0
    assert run.craft_warnings() == []


def _long_name_run(key: str) -> tuple[str, Run]:
    with recording() as (recorder, run):
        for step in range(REPEATS):
            recorder.log_step({key: float(step)})
    (name,) = run.sink.lists
    return name, run


@pytest.mark.parametrize("key", ["x" * 1000, "é" * 1000, "train/" * 200, "." * 1000])
def test_a_long_name_is_cut_stably_with_one_warning(key: str) -> None:
    name, run = _long_name_run(key)

    assert len(name) <= 255
    assert SAFE.match(name)
    assert name not in (".", "..")
    assert run.sink.lists[name] == [float(step) for step in range(REPEATS)]
    assert run.count(MetricNameWarning) == 1
    assert run.count(MetricNameWarning, name) == 1
    assert [w.category for w in run.craft_warnings()] == [MetricNameWarning]
    # Stable: the same key gets the same name in another run.
    again, _ = _long_name_run(key)
    assert again == name


def test_two_long_names_sharing_a_prefix_stay_distinct() -> None:
    prefix = "layer/" * 165  # 990 characters
    first, second = prefix + "weight_norm", prefix + "bias_norm_"
    assert len(first) >= 1000 and len(second) >= 1000
    with recording() as (recorder, run):
        for step in range(REPEATS):
            recorder.log_step({first: 1.0, second: float(step)})
        recorder.log_final({first: 10, second: 20})

    assert len(run.sink.lists) == 2
    names = sorted(run.sink.lists, key=lambda n: run.sink.lists[n][0])
    assert run.sink.lists[names[0]] == [float(step) for step in range(REPEATS)]
    assert run.sink.lists[names[1]] == [1.0] * REPEATS
    assert all(len(name) <= 255 for name in names)
    assert sorted(run.sink.scalars.values()) == [10, 20]
    assert set(run.sink.scalars) == set(names)
    assert run.count(MetricNameWarning) == 2
    for name in names:
        assert run.count(MetricNameWarning, name) == 1


def test_two_names_mapping_to_one_safe_name_are_kept_apart_with_one_warning() -> None:
    with recording() as (recorder, run):
        for step in range(REPEATS):
            recorder.log_step({"train/loss": float(step), "train_loss": -float(step)})
        for _ in range(REPEATS):
            recorder.log_final({"train/loss": 1, "train_loss": 2})

    assert len(run.sink.lists) == 2
    assert run.sink.lists["train_loss"] == [float(step) for step in range(REPEATS)]
    (other,) = set(run.sink.lists) - {"train_loss"}
    assert other.startswith("train_loss") and SAFE.match(other) and len(other) <= 255
    assert run.sink.lists[other] == [-float(step) for step in range(REPEATS)]
    assert run.sink.scalars == {"train_loss": 1, other: 2}
    assert run.count(MetricNameWarning) == 1
    assert run.count(MetricNameWarning, "'train/loss'") == 1
    assert run.count(MetricNameWarning, "'train_loss'") == 1
    assert [w.category for w in run.craft_warnings()] == [MetricNameWarning]


def test_collision_first_seen_in_log_final_is_kept_apart_too() -> None:
    with recording() as (recorder, run):
        recorder.log_final({"eval/acc": 0.5})
        recorder.log_final({"eval_acc": 0.75})
        recorder.log_final({"eval/acc": 0.5, "eval_acc": 0.75})

    assert len(run.sink.scalars) == 2
    assert run.sink.scalars["eval_acc"] == 0.5
    assert sorted(run.sink.scalars.values()) == [0.5, 0.75]
    assert run.count(MetricNameWarning) == 1


# -- calls that are not given a mapping ---------------------------------------------------------


@pytest.mark.parametrize(
    "metrics",
    [
        pytest.param(None, id="none"),
        pytest.param([("loss", 0.5), ("acc", 0.9)], id="list-of-pairs"),
        pytest.param("loss", id="string"),
        pytest.param(42, id="int"),
        pytest.param(0.5, id="float"),
    ],
)
@pytest.mark.parametrize("method", ["log_step", "log_final"])
def test_not_a_mapping_does_not_raise_and_warns_once(metrics: Any, method: str) -> None:
    with recording() as (recorder, run):
        for _ in range(REPEATS):
            getattr(recorder, method)(metrics)
        # The run goes on: later valid calls still record.
        recorder.log_step({"later_step": 0.5})
        recorder.log_final({"later_final": 0.9})

    assert len(run.craft_warnings()) == 1
    assert run.sink.lists["later_step"] == [0.5]
    assert run.sink.scalars["later_step"] == 0.5
    assert run.sink.scalars["later_final"] == 0.9


@pytest.mark.parametrize("given", [pytest.param(0.5, id="float"), pytest.param(["loss", 1.0], id="list")])
def test_a_call_given_no_mapping_says_so_once(given: Any) -> None:
    with recording() as (recorder, run):
        for _ in range(REPEATS):
            recorder.log_step(given)
            recorder.log_final(given)
        recorder.log_step({"loss": 1.0})
    assert run.sink.lists == {"loss": [1.0]}
    assert run.count(CraftCallbacksWarning, "takes a mapping") == 2  # once per method, not per call
