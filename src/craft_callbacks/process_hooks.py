"""The process's hooks on open runs: close them at interpreter exit, let a forked child forget them.

At exit every open run is closed (bounded), with the status ``exited`` that
tells it apart from a run its code closed. A framework that never tells the
end of a run (Fabric has no ``finalize``) can instead have its runs ended
with the status of how the interpreter exits (:func:`end_at_exit`). In a
child forked from a recording process (a DataLoader worker) the parent's runs
go inert: the child never sends the parent's values, the parent does.
"""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from typing import Protocol


class OpenRun(Protocol):
    def close(self, status: str = "success") -> None: ...

    def forget_after_fork(self) -> None: ...


class EndsAtExit(Protocol):
    def end_as_the_process_exits(self, status: str) -> None: ...


_open: weakref.WeakSet[OpenRun] = weakref.WeakSet()
_installed = False
_ending_at_exit: weakref.WeakSet[EndsAtExit] = weakref.WeakSet()
_ending_hook_installed = False


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


def exit_status() -> str:
    """How the interpreter is exiting: ``success``, or the status of the exception that ends it.

    When an exception nobody caught ends a script, Python prints it and keeps
    it in ``sys.last_exc`` (``sys.last_value`` before 3.12) before the
    ``atexit`` hooks run; a script that reaches its end keeps none. An
    uncaught ``KeyboardInterrupt`` (Ctrl-C) is ``interrupted``, any other
    exception ``failed``.
    """
    error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if error is None:
        return "success"
    return "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"


def end_at_exit(owner: EndsAtExit) -> None:
    """At interpreter exit, end ``owner``'s open run with :func:`exit_status` (unless ended before).

    Call it once a run is open, so the hook is installed after the recorders'
    own: ``atexit`` runs the later hook first, so these runs get their status
    before whatever is left is closed as ``exited``.
    """
    global _ending_hook_installed
    _ending_at_exit.add(owner)
    if not _ending_hook_installed:
        _ending_hook_installed = True
        atexit.register(_end_with_the_exit_status)


def _end_with_the_exit_status() -> None:
    """A process started by ``multiprocessing`` (a spawned rank) ends through its parent's
    machinery, which keeps the exception to itself: its runs are left to the ``exited`` hook."""
    import multiprocessing  # here: importing the package stays light

    if multiprocessing.parent_process() is not None:
        return
    status = exit_status()
    for owner in list(_ending_at_exit):
        owner.end_as_the_process_exits(status)
