"""``craft-callbacks plot``: list metrics against their step, several runs overlaid, to a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from craft_callbacks.exceptions import CraftCallbacksError


def plot_runs(runs: list[dict[str, Any]], metrics: list[str], output: Path) -> Path:
    """Draw one panel per metric, one line per run, and save the figure as a PNG."""
    try:
        import matplotlib
    except ImportError as error:
        raise CraftCallbacksError("plotting needs matplotlib: pip install 'craft-callbacks[plot]'") from error
    matplotlib.use("Agg")
    from matplotlib import pyplot

    columns = min(len(metrics), 2)
    rows = math.ceil(len(metrics) / columns)
    figure, axes = pyplot.subplots(rows, columns, figsize=(6.5 * columns, 3.6 * rows), squeeze=False)
    for panel, metric in zip(axes.flat, metrics, strict=False):
        for run in runs:
            series = run["lists"].get(metric)
            if not series:
                continue
            steps = [index if step is None else step for index, step in enumerate(series["steps"])]
            panel.plot(steps, series["values"], label=run["execution_id"], linewidth=1.4)
        panel.set_title(metric)
        panel.set_xlabel("step")
        panel.grid(alpha=0.3)
        panel.legend(fontsize="small")
    for panel in list(axes.flat)[len(metrics) :]:
        panel.set_visible(False)
    figure.tight_layout()
    try:
        figure.savefig(output, dpi=110)
    except OSError as error:
        raise CraftCallbacksError(f"cannot write {output}: {error.strerror or error}") from error
    finally:
        pyplot.close(figure)
    return output
