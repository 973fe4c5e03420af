"""The process's hooks on open runs: close them at interpreter exit, let a forked child forget them.

At exit every open run is closed (bounded), with the status ``exited`` that
tells it apart from a run its code closed. In a child forked from a
recording process (a DataLoader worker) the parent's runs go inert: the
child never sends the parent's values, the parent does.
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Protocol


class OpenRun(Protocol):
    def close(self, status: str = "success") -> None: ...

    def forget_after_fork(self) -> None: ...


_open: weakref.WeakSet[OpenRun] = weakref.WeakSet()
_installed = False


def track(run: OpenRun) -> None:
    """Close ``run`` at exit unless it is closed before, and make it inert in a forked child."""
    global _installed
    _open.add(run)
    if not _installed:
        _installed = True
        atexit.register(_close_all)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)


def untrack(run: OpenRun) -> None:
    """``run`` was closed: nothing to do for it at exit."""
    _open.discard(run)


def _close_all() -> None:
    for run in list(_open):
        run.close("exited")


def _after_fork_in_child() -> None:
    for run in list(_open):
        run.forget_after_fork()
    _open.clear()
