"""Turn whatever a framework logs into a plain Python ``int`` or ``float``.

The platform accepts only int or float values, and JSON cannot carry NaN or
infinities. :func:`to_number` converts everything that is one number (Python
numbers, ``bool``, numpy scalars, one-element numpy arrays and torch / TF /
JAX / Keras tensors, anything else with ``__float__``) and explains why it
refuses the rest. No ML framework is imported here: tensors are recognised
by their shape and conversion methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

NON_NUMERIC: Final = "non-numeric"
NON_FINITE: Final = "non-finite"

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True)
class Rejected:
    """Why a value is not a metric: ``kind`` is NON_NUMERIC or NON_FINITE."""

    kind: str
    reason: str


Number = int | float


def describe_type(value: Any) -> str:
    """A short, readable type name for messages (``torch.Tensor``, ``str``)."""
    cls = type(value)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module.split('.')[0]}.{cls.__qualname__}"


def _from_int(value: int) -> Number | Rejected:
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    try:
        return float(value)
    except OverflowError:
        return Rejected(NON_FINITE, f"an int of {value.bit_length()} bits is beyond float range")


def _from_float(value: float) -> Number | Rejected:
    if math.isfinite(value):
        return value
    return Rejected(NON_FINITE, f"{value!r} is not finite")


def _through_float(value: Any) -> Number | Rejected:
    """Convert with ``float()``; a number too large for a float is non-finite, not non-numeric."""
    try:
        return _from_float(float(value))
    except OverflowError:
        return Rejected(NON_FINITE, f"this {describe_type(value)} is beyond float range")


def _element_count(value: Any) -> int | None:
    """Number of elements of an array-like, or None when ``value`` is not one."""
    shape = getattr(value, "shape", None)
    if shape is None or isinstance(value, type):
        return None
    try:
        count = 1
        for dim in tuple(shape):
            count *= int(dim)
    except (TypeError, ValueError):
        return None
    return count


# Types seen to be scalars that always hold one number (numpy.float32, numpy.int64...):
# their later values skip the shape checks.
_scalar_types: set[type] = set()


def to_number(value: Any) -> Number | Rejected:
    """Convert ``value`` to a finite Python int or float, or say why not.

    Never raises: a value whose own conversion fails is reported as rejected.
    """
    try:
        if type(value) in _scalar_types:
            scalar = value.item()
            if type(scalar) is float:
                return _from_float(scalar)
            return _to_number(scalar)
        return _to_number(value)
    except Exception as error:  # a tensor on a dead device, a broken __float__...
        return Rejected(NON_NUMERIC, f"converting {describe_type(value)} failed: {error}")


def _to_number(value: Any) -> Number | Rejected:
    cls = type(value)
    if cls is float:
        return _from_float(value)
    if cls is bool:
        return int(value)
    if cls is int:
        return _from_int(value)
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return Rejected(NON_NUMERIC, f"{describe_type(value)} is not a number")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return _from_int(int(value))
    if isinstance(value, float):
        return _from_float(float(value))
    count = _element_count(value)
    if count is not None:
        if count != 1:
            return Rejected(NON_NUMERIC, f"{describe_type(value)} with {count} elements is not one number")
        return _one_element(value)
    if isinstance(value, (dict, list, tuple, set, frozenset)) or value is None:
        return Rejected(NON_NUMERIC, f"{describe_type(value)} is not a number")
    if isinstance(value, complex):
        return Rejected(NON_NUMERIC, "complex is not a real number")
    if hasattr(type(value), "__float__"):
        return _through_float(value)
    if hasattr(type(value), "__index__"):
        return _from_int(value.__index__())
    return Rejected(NON_NUMERIC, f"{describe_type(value)} is not a number")


def _is_complex(value: Any) -> bool:
    """numpy complex scalars (``clongdouble``) are not ``complex`` subclasses: ask their dtype."""
    return getattr(getattr(value, "dtype", None), "kind", None) == "c"


def _one_element(value: Any) -> Number | Rejected:
    """Unwrap a one-element array or tensor (numpy, torch, JAX, TF, Keras)."""
    if hasattr(value, "numpy") and not hasattr(value, "item"):
        value = value.numpy()  # TensorFlow eager tensors: go through numpy
    item = getattr(value, "item", None)
    scalar = item() if callable(item) else value
    if type(scalar) in (float, int, bool):
        if getattr(value, "shape", None) == () and type(value).__module__ == "numpy":
            _scalar_types.add(type(value))
        return _to_number(scalar)
    if isinstance(scalar, (complex, str, bytes)) or scalar is None or _is_complex(scalar):
        return Rejected(NON_NUMERIC, f"{describe_type(value)} holds {describe_type(scalar)}")
    if not hasattr(type(scalar), "__float__"):  # datetimes, objects...
        return Rejected(NON_NUMERIC, f"{describe_type(value)} holds {describe_type(scalar)}")
    return _through_float(scalar)  # numpy longdouble and other exotic scalars
