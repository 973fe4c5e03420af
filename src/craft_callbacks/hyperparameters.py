"""Hyperparameters as a flat mapping of simple values, the way the adapters keep them.

Frameworks hand over nested dicts, ``argparse.Namespace`` objects, dataclasses
and configs with long or odd fields. :func:`flatten` turns them into one level
of ``outer/inner`` keys holding numbers, booleans, ``None`` and short strings;
other values (long strings, tensors, objects) are skipped, so the local store
keeps what a person compares between runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final

MAX_STRING_LENGTH: Final = 200
_MAX_DEPTH: Final = 8


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if type(value).__name__ == "Namespace" and hasattr(value, "__dict__"):  # argparse, jsonargparse
        namespace: dict[str, Any] = vars(value)
        return namespace
    return None


def _simple(value: Any) -> tuple[bool, Any]:
    """Whether ``value`` is worth keeping as is, and its kept form."""
    if value is None or isinstance(value, (bool, int, float)):
        return True, value
    if isinstance(value, Enum):
        return _simple(value.value)
    if isinstance(value, str):
        return len(value) <= MAX_STRING_LENGTH, value
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return True, value.item()
    if isinstance(value, (list, tuple)) and len(value) <= 16:
        items = [_simple(item) for item in value]
        if all(keep and not isinstance(kept, (list, dict)) for keep, kept in items):
            return True, [kept for _, kept in items]
    return False, None


def flatten(params: Any, prefix: str = "", separator: str = "/") -> dict[str, Any]:
    """One level of simple values: ``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer/lr": 0.1}``."""
    flat: dict[str, Any] = {}

    def visit(value: Any, key: str, depth: int) -> None:
        mapping = _as_mapping(value)
        if mapping is not None and depth < _MAX_DEPTH:
            for inner_key, inner in mapping.items():
                if str(inner_key).startswith("_"):
                    continue
                visit(inner, f"{key}{separator}{inner_key}" if key else str(inner_key), depth + 1)
            return
        keep, kept = _simple(value)
        if keep and key:
            flat[key] = kept

    visit(params, prefix, 0)
    return flat
