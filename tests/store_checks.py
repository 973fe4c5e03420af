"""Checks on a local store that several test modules make after a multi-process run."""

from __future__ import annotations

from typing import Any

from craft_callbacks import LocalStore


def the_one_run(store: LocalStore) -> tuple[str, dict[str, list[Any]]]:
    """The store's only run, which ended in success, and its lists (each name once)."""
    runs = store.executions()
    assert len(runs) == 1, f"expected one run, found {len(runs)}: {runs}"
    run = runs[0]
    assert run["status"] == "success"
    run_id: str = run["execution_id"]
    rows = store.get_list_metrics()
    assert all(row["execution_id"] == run_id for row in rows)
    lists = {row["name"]: row["values"] for row in rows}
    assert len(lists) == len(rows), "a list metric appears twice"
    return run_id, lists
