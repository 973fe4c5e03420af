"""``craft-callbacks plot``: list metrics against their step, several runs overlaid, to a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from craft_callbacks.cli.ui.downsample import smooth as smoothed
from craft_callbacks.exceptions import CraftCallbacksError


def plot_runs(runs: list[dict[str, Any]], metrics: list[str], output: Path, smooth: float = 0.0) -> Path:
    """Draw one panel per metric, one line per run, and save the figure as a PNG.

    ``smooth`` in [0, 1) draws each line as TensorBoard's smoothing of that
    weight (an exponential moving average), over the raw values drawn faint.
    Legends name each run by its pipeline and its id.
    """
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
            label = f"{run.get('pipeline_name') or 'run'} {run['execution_id']}"
            if smooth:
                (raw,) = panel.plot(steps, series["values"], linewidth=1.0, alpha=0.25)
                panel.plot(
                    steps,
                    smoothed(series["values"], smooth),
                    color=raw.get_color(),
                    label=label,
                    linewidth=1.4,
                )
            else:
                panel.plot(steps, series["values"], label=label, linewidth=1.4)
        panel.set_title(metric if not smooth else f"{metric} (smoothed {smooth:g})")
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
