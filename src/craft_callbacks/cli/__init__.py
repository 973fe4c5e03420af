"""The ``craft-callbacks`` command and what it shows: views, plots, exports and the dashboard.

The top layer beside the adapters: it reads the local store and the spool
(and delivers the spool with ``sync``); nothing below imports it.
"""

from craft_callbacks.cli.commands import main

__all__ = ["main"]
