"""The ``craft-callbacks`` command: list, show, compare, plot and export local runs; sync a spool;
serve a dashboard (``ui``) or write one as a file (``report``).

Errors a user can cause (no store, unknown run, ambiguous prefix, unknown
metric, unwritable output) and every fault of the store (damaged, foreign,
newer, altered, unreadable, a directory) print one line and exit with status
2, without a traceback. ``RUN`` is a run id, a unique prefix of one, or ``latest``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from craft_callbacks.delivery.spool import default_spool_path
from craft_callbacks.exceptions import CraftCallbacksError
from craft_callbacks.sinks.local_store import LocalStore

MAX_PLOT_PANELS = 12
# What plot draws first when it cannot draw every list (in this order).
PREFERRED_PLOT_METRICS = (
    "loss",
    "train_loss",
    "val_loss",
    "eval_loss",
    "valid_loss",
    "validation_loss",
    "test_loss",
    "accuracy",
    "train_accuracy",
    "val_accuracy",
    "eval_accuracy",
    "acc",
    "train_acc",
    "val_acc",
    "eval_acc",
    "learning_rate",
    "lr",
    "grad_norm",
)
_QUALITY_WORDS = ("acc", "f1", "auc", "precision", "recall", "perplexity", "bleu", "rouge", "iou", "error")
MAX_REPORT_POINTS = 100_000


def _store(args: argparse.Namespace) -> LocalStore:
    return LocalStore.existing(args.store)


def _emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, allow_nan=False))


def _console() -> Any:
    """A terminal console at its width; into a pipe or a file, wide enough that nothing is cut."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _runs(args: argparse.Namespace) -> int:
    store = _store(args)
    runs = store.executions()
    scalars = {
        run["execution_id"]: {
            row["name"]: row["value"] for row in store.get_metrics(execution_id=run["execution_id"])
        }
        for run in runs
    }
    if args.json:
        _emit_json([{**run, "scalars": scalars[run["execution_id"]]} for run in runs])
        return 0
    from craft_callbacks.cli.views import runs_table

    _console().print(runs_table(runs, scalars))
    return 0


def _show(args: argparse.Namespace) -> int:
    from craft_callbacks.cli.export import run_data

    store = _store(args)
    data = run_data(store, store.find_run(args.run))
    if args.json:
        _emit_json(data)
        return 0
    from craft_callbacks.cli.views import show_run

    _console().print(show_run(data))
    return 0


def _runs_named(store: LocalStore, references: Sequence[str]) -> list[dict[str, Any]]:
    """The data of each run named (an id, a unique prefix of one, or 'latest'), in the order given."""
    from craft_callbacks.cli.export import run_data

    return [run_data(store, store.find_run(reference)) for reference in references]


def _compare(args: argparse.Namespace) -> int:
    store = _store(args)
    runs = _runs_named(store, args.runs)
    if args.json:
        _emit_json(
            {
                run["execution_id"]: {"scalars": run["scalars"], "hyperparameters": run["hyperparameters"]}
                for run in runs
            }
        )
        return 0
    from craft_callbacks.cli.views import compare_runs

    _console().print(compare_runs(runs))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from craft_callbacks.cli.plotting import plot_runs

    store = _store(args)
    runs = _runs_named(store, args.runs)
    available = plot_order({name for run in runs for name in run["lists"]})
    if not available:
        raise CraftCallbacksError("these runs have no list metrics to plot")
    metrics = list(dict.fromkeys(args.metric or available[:MAX_PLOT_PANELS]))
    unknown = [name for name in metrics if name not in available]
    if unknown:
        raise CraftCallbacksError(
            f"no list metric {', '.join(map(repr, unknown))} in these runs; they have: {', '.join(available)}"
        )
    left_out = [name for name in available if name not in metrics]
    if left_out and not args.metric:
        print(
            f"craft-callbacks plot: {len(available)} list metrics, drew {len(metrics)} "
            f"({', '.join(metrics)}); left out {len(left_out)}: {', '.join(left_out)}. "
            "Choose with --metric NAME (repeat it for several).",
            file=sys.stderr,
        )
    output = plot_runs(runs, metrics, Path(args.output), smooth=args.smooth)
    print(f"craft-callbacks plot: wrote {output} ({len(metrics)} metrics, {len(runs)} runs)")
    return 0


def plot_order(names: Iterable[str]) -> list[str]:
    """List metrics in the order ``plot`` draws them when not told: the usual training names first
    (``loss``, ``train_loss``, ``val_loss``, ``eval_loss``...), then other losses, then other
    quality measures (accuracy, F1...), then the rest; alphabetically within each group."""

    def rank(name: str) -> tuple[int, int, str]:
        lowered = name.lower()
        if lowered in PREFERRED_PLOT_METRICS:
            return 0, PREFERRED_PLOT_METRICS.index(lowered), name
        if "loss" in lowered:
            return 1, 0, name
        if any(word in lowered for word in _QUALITY_WORDS):
            return 2, 0, name
        return 3, 0, name

    return sorted(set(names), key=rank)


def _smoothing(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= weight < 1:
        raise argparse.ArgumentTypeError(f"the smoothing weight must be in [0, 1), not {text}")
    return weight


def _points(text: str) -> int:
    try:
        points = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= points <= MAX_REPORT_POINTS:
        raise argparse.ArgumentTypeError(f"points must be between 1 and {MAX_REPORT_POINTS}, not {text}")
    return points


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, not {text}")
    return port


def _ui(args: argparse.Namespace) -> int:
    from craft_callbacks.cli.ui.server import serve

    server, url = serve(args.store, args.host, args.port)
    print(url, flush=True)
    print(
        f"craft-callbacks ui: the runs of {server.store.path}, read-only, at {url} (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _report(args: argparse.Namespace) -> int:
    from craft_callbacks.cli.ui.report import write_report

    output = write_report(args.store, args.runs, args.output, points=args.points)
    print(f"craft-callbacks report: wrote {output}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from craft_callbacks.cli.export import run_data, to_csv, to_json

    store = _store(args)
    data = run_data(store, store.find_run(args.run))
    text = to_csv(data) if args.format == "csv" else to_json(data)
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as error:
        raise CraftCallbacksError(f"cannot write {args.output}: {error.strerror or error}") from error
    print(f"craft-callbacks export: wrote {args.output}", file=sys.stderr)
    return 0


def _sync(args: argparse.Namespace) -> int:
    from craft_callbacks.delivery.sync import sync_spool

    report = sync_spool(args.spool or default_spool_path(args.store), force=args.force)
    for line in report.lines():
        print(f"craft-callbacks sync: {line}")
    return 0 if report.complete else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per thing a user does with recorded runs."""
    parser = argparse.ArgumentParser(
        prog="craft-callbacks",
        description="Look at the runs craft_callbacks recorded locally, and deliver spooled metrics.",
    )
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--store",
        metavar="PATH",
        help="the local store (default: $CRAFT_CALLBACKS_STORE or craft_metrics/metrics.db)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    runs = commands.add_parser("runs", parents=[store, as_json], help="list the runs")
    runs.set_defaults(handler=_runs)

    show = commands.add_parser(
        "show", parents=[store, as_json], help="one run: scalars, lists, hyperparameters"
    )
    show.add_argument("run", metavar="RUN", help="a run id, a unique prefix of one, or 'latest'")
    show.set_defaults(handler=_show)

    compare = commands.add_parser(
        "compare", parents=[store, as_json], help="scalars and hyperparameters of runs side by side"
    )
    compare.add_argument("runs", metavar="RUN", nargs="+", help="runs to compare")
    compare.set_defaults(handler=_compare)

    plot = commands.add_parser("plot", parents=[store], help="plot list metrics against step to a PNG")
    plot.add_argument("runs", metavar="RUN", nargs="+", help="runs to overlay")
    plot.add_argument(
        "--metric", action="append", metavar="NAME", help="a list metric (repeat; default: all)"
    )
    plot.add_argument("-o", "--output", required=True, metavar="FILE.png", help="the PNG to write")
    plot.add_argument(
        "--smooth",
        type=_smoothing,
        default=0.0,
        metavar="W",
        help="smooth the lines: an exponential moving average of weight W in [0, 1), as TensorBoard's "
        "slider (0.6 is a good start; the raw values stay, faint)",
    )
    plot.set_defaults(handler=_plot)

    ui = commands.add_parser(
        "ui",
        parents=[store],
        help="a live dashboard of the runs in the browser (read-only)",
        description=(
            "Serve a live, read-only dashboard of the store: the runs, charts of runs overlaid, and a "
            "JSON API under /api/. Prints its URL first; Ctrl-C stops it."
        ),
    )
    ui.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    ui.add_argument("--port", type=_port, default=8765, help="the port (default: 8765; 0 takes a free one)")
    ui.set_defaults(handler=_ui)

    report = commands.add_parser(
        "report",
        parents=[store],
        help="the compare view of runs as one self-contained HTML file",
        description=(
            "Write the dashboard's compare view of the runs as one HTML file, its scripts, styles and "
            "data inline: it opens from disk, with no network."
        ),
    )
    report.add_argument("runs", metavar="RUN", nargs="+", help="runs to compare")
    report.add_argument(
        "-o", "--output", default="report.html", metavar="FILE.html", help="the file (default: report.html)"
    )
    report.add_argument(
        "--points",
        type=_points,
        default=2000,
        metavar="N",
        help="at most 2×N points per run and metric, downsampled keeping the shape (default: 2000)",
    )
    report.set_defaults(handler=_report)

    export = commands.add_parser("export", parents=[store], help="one run as CSV or JSON")
    export.add_argument("run", metavar="RUN", help="a run id, a unique prefix of one, or 'latest'")
    export.add_argument("--format", choices=("csv", "json"), default="json")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    export.set_defaults(handler=_export)

    sync = commands.add_parser(
        "sync",
        parents=[store],
        help="deliver metrics spooled during an outage or a crash to the Craft AI platform",
        description=(
            "Deliver every value a spool holds to the execution it was recorded in, each once. "
            "The platform is reached with CRAFT_AI_SDK_TOKEN and CRAFT_AI_ENVIRONMENT_URL."
        ),
    )
    sync.add_argument("--spool", metavar="PATH", help="the spool file (default: beside the store)")
    sync.add_argument("--force", action="store_true", help="also take lists of a process still running")
    sync.set_defaults(handler=_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``craft-callbacks`` console script."""
    args = build_parser().parse_args(argv)
    handler = args.handler
    try:
        code: int = handler(args)
    except CraftCallbacksError as error:
        print(f"craft-callbacks {args.command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # craft-callbacks export ... | head
        return 0
    except (sqlite3.Error, OSError) as error:  # a fault the store or spool code did not name
        print(f"craft-callbacks {args.command}: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
