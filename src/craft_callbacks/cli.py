"""The ``craft-callbacks`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from craft_callbacks.exceptions import CraftCallbacksError
from craft_callbacks.spool import default_spool_path


def _sync(args: argparse.Namespace) -> int:
    from craft_callbacks.sync import sync_spool

    report = sync_spool(args.spool or default_spool_path(), force=args.force)
    for line in report.lines():
        print(f"craft-callbacks sync: {line}")
    return 0 if report.complete else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="craft-callbacks",
        description="Work with the metrics recorded by craft_callbacks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sync = commands.add_parser(
        "sync",
        help="deliver metrics spooled during an outage or a crash to the Craft AI platform",
        description=(
            "Deliver every value a spool holds to the execution it was recorded in, each once. "
            "The platform is reached with CRAFT_AI_SDK_TOKEN and CRAFT_AI_ENVIRONMENT_URL."
        ),
    )
    sync.add_argument("--spool", help="the spool file (default: craft_metrics/spool.db)")
    sync.add_argument("--force", action="store_true", help="also take lists of a process still running")
    sync.set_defaults(run=_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``craft-callbacks`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except CraftCallbacksError as error:
        print(f"craft-callbacks {args.command}: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
