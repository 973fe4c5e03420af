"""A run of the local store as plain data: JSON or CSV that round-trip every value exactly."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Final

from craft_callbacks.sinks.local_store import LocalStore

CSV_COLUMNS: Final = ("kind", "name", "index", "step", "value")


def run_data(store: LocalStore, run: dict[str, Any]) -> dict[str, Any]:
    """Everything about one run: its description, scalars, lists (steps and values), hyperparameters."""
    execution_id = run["execution_id"]
    lists = {}
    for row in store.get_list_metrics(execution_id=execution_id):
        pairs = store.list_series(execution_id, row["name"])
        lists[row["name"]] = {
            "steps": [step for step, _ in pairs],
            "values": [value for _, value in pairs],
            "created_at": row["created_at"],
        }
    return {
        "execution_id": execution_id,
        "pipeline_name": run["pipeline_name"],
        "deployment_name": run["deployment_name"],
        "created_at": run["created_at"],
        "ended_at": run["ended_at"],
        "status": run["status"],
        "hyperparameters": run["hyperparameters"],
        "scalars": {row["name"]: row["value"] for row in store.get_metrics(execution_id=execution_id)},
        "lists": lists,
    }


def to_json(data: dict[str, Any]) -> str:
    """JSON text (Python's repr of floats: every value reads back exactly)."""
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def to_csv(data: dict[str, Any]) -> str:
    """One row per value: ``kind`` (scalar or list), ``name``, ``index`` in the list, ``step``, ``value``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, value in data["scalars"].items():
        writer.writerow(("scalar", name, "", "", repr(value)))
    for name, series in data["lists"].items():
        for index, (step, value) in enumerate(zip(series["steps"], series["values"], strict=True)):
            writer.writerow(("list", name, index, "" if step is None else step, repr(value)))
    return out.getvalue()


def read_csv_value(text: str) -> int | float:
    """A value written by :func:`to_csv`, back as the int or float it was."""
    return int(text) if text.lstrip("-").isdigit() else float(text)
