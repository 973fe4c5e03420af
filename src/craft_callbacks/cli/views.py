"""What ``craft-callbacks runs | show | compare`` print: rich tables over the local store."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from craft_callbacks.values import Number

_BLOCKS: Final = "▁▂▃▄▅▆▇█"
SPARKLINE_WIDTH: Final = 24
RUNS_SCALAR_COLUMNS: Final = 3


def sparkline(values: list[Number], width: int = SPARKLINE_WIDTH) -> str:
    """The shape of a list in a few block characters (averaged into ``width`` buckets)."""
    if not values:
        return ""
    buckets = min(width, len(values))
    means = []
    for bucket in range(buckets):
        part = values[bucket * len(values) // buckets : (bucket + 1) * len(values) // buckets]
        means.append(sum(part) / len(part))
    low, high = min(means), max(means)
    if high == low:
        return _BLOCKS[len(_BLOCKS) // 2] * buckets
    scale = (len(_BLOCKS) - 1) / (high - low)
    return "".join(_BLOCKS[round((mean - low) * scale)] for mean in means)


def number(value: Any, digits: int = 6) -> str:
    """A value as a person reads it: ``digits`` significant digits for floats."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def runs_table(runs: list[dict[str, Any]], scalars: dict[str, dict[str, Number]]) -> Table:
    """One row per run: id, pipeline, created, status, and the scalars most runs have."""
    common = Counter(name for run_scalars in scalars.values() for name in run_scalars)
    columns = [name for name, _ in common.most_common(RUNS_SCALAR_COLUMNS)]
    table = Table(title=f"{len(runs)} runs", title_justify="left", box=box.SIMPLE_HEAD)
    for header in ("run", "pipeline", "created", "status", *columns):
        table.add_column(header, no_wrap=True)
    for run in runs:
        values = scalars.get(run["execution_id"], {})
        table.add_row(
            run["execution_id"],
            run["pipeline_name"] or "",
            (run["created_at"] or "").replace("T", " ")[5:16],
            _status(run["status"]),
            *(number(values[name], digits=4) if name in values else "" for name in columns),
        )
    return table


def _status(status: str) -> Text:
    style = {"success": "green", "failed": "red", "running": "yellow"}.get(status, "magenta")
    return Text(status, style=style)


def show_run(data: dict[str, Any]) -> Group:
    """One run: its description, scalars, each list summarised, hyperparameters."""
    head = Text.assemble(
        ("run ", "bold"),
        (data["execution_id"], "bold cyan"),
        f"  pipeline {data['pipeline_name']}  created {data['created_at']}  status ",
        _status(data["status"]),
    )
    scalars = Table(title="scalars", title_justify="left")
    scalars.add_column("name")
    scalars.add_column("value", justify="right")
    for name, value in sorted(data["scalars"].items()):
        scalars.add_row(name, number(value))
    lists = Table(title="lists", title_justify="left")
    for header in ("name", "count", "first", "last", "min", "max"):
        lists.add_column(header, justify="left" if header == "name" else "right")
    lists.add_column("shape", no_wrap=True, min_width=SPARKLINE_WIDTH)
    for name, series in sorted(data["lists"].items()):
        values = series["values"]
        lists.add_row(
            name,
            str(len(values)),
            number(values[0]),
            number(values[-1]),
            number(min(values)),
            number(max(values)),
            sparkline(values),
        )
    params = Table(title="hyperparameters", title_justify="left")
    params.add_column("name")
    params.add_column("value")
    for name, value in sorted(data["hyperparameters"].items()):
        params.add_row(name, number(value))
    return Group(head, scalars, lists, params)


def compare_runs(runs: list[dict[str, Any]]) -> Table:
    """Scalars and hyperparameters of several runs side by side; rows that differ stand out."""
    table = Table(title="compare (differences in bold)", title_justify="left")
    table.add_column("")
    for run in runs:
        table.add_column(run["execution_id"], justify="right", no_wrap=True)
    for section in ("scalars", "hyperparameters"):
        names = sorted({name for run in runs for name in run[section]})
        if not names:
            continue
        table.add_row(Text(section, style="dim italic"), *("" for _ in runs))
        for name in names:
            cells = [number(run[section][name]) if name in run[section] else "-" for run in runs]
            differs = len(set(cells)) > 1
            style = "bold yellow" if differs else ""
            table.add_row(Text(name, style=style), *(Text(cell, style=style) for cell in cells))
    return table


def print_to(console: Console, renderable: Any) -> None:
    console.print(renderable)
