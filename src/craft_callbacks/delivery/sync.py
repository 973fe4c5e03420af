"""Deliver a spool later: ``craft-callbacks sync``.

Each list's values go to the run they were recorded in (a Craft AI execution
or a DigitalHub entity), in order, once: before sending, the remote's count
for the list says how many of the spooled values it already holds (a run killed between the platform's
acceptance and the spool's update), and each accepted request is recorded in
the spool at once, so an interrupted sync resumes without duplicates. Lists
still owned by a running process are left to it unless ``force``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from craft_callbacks.defaults import DEFAULT_REQUEST_TIMEOUT_S
from craft_callbacks.delivery.destination import LIST_REQUEST_LIMIT, sent
from craft_callbacks.delivery.digitalhub import SPOOL_PREFIX as DIGITALHUB_PREFIX
from craft_callbacks.delivery.digitalhub import sink_for_key
from craft_callbacks.delivery.remote import run_of
from craft_callbacks.delivery.retry import SYNC_ATTEMPTS, is_permanent, retrying
from craft_callbacks.delivery.spool import UNVERIFIABLE, Spool, SpooledList, process_alive
from craft_callbacks.exceptions import CraftCallbacksError
from craft_callbacks.sinks.auto import EXECUTION_ENV, INJECTED_CONTEXT, keep_warning_filters
from craft_callbacks.sinks.craft_ai import install_request_timeout, platform_list_count


@dataclass
class SyncReport:
    """What a sync did, per execution."""

    values: dict[str, int] = field(default_factory=dict)
    scalars: dict[str, int] = field(default_factory=dict)
    already_there: int = 0
    left_to_owner: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.failed or self.left_to_owner)

    def lines(self) -> list[str]:
        """A human summary, one line per fact."""
        executions = sorted(set(self.values) | set(self.scalars))
        total_values = sum(self.values.values())
        total_scalars = sum(self.scalars.values())
        if not executions and not self.already_there:
            lines = ["nothing to deliver"]
        else:
            lines = [
                f"delivered {total_values:,} list values and {total_scalars} scalars to "
                f"{len(executions)} execution(s): {', '.join(executions) or '-'}"
            ]
        if self.already_there:
            lines.append(f"{self.already_there:,} spooled values were already on the platform (not resent)")
        lines.extend(f"still recording, left to its process: {item}" for item in self.left_to_owner)
        lines.extend(f"refused by the platform: {item}" for item in self.refused)
        lines.extend(f"NOT delivered (kept in the spool, run sync again): {item}" for item in self.failed)
        return lines


@contextmanager
def _in_execution(execution_id: str) -> Iterator[None]:
    """Make the SDK address ``execution_id``, the execution the values were recorded in.

    The SDK prefers the execution context the platform injects into a step
    (a ContextVar of ``__craft_internal_execution_context``) over
    ``CRAFT_AI_EXECUTION_ID``: a sync run inside another execution sets both,
    then checks that the SDK now names the recorded execution.
    """
    before = os.environ.get(EXECUTION_ENV)
    os.environ[EXECUTION_ENV] = execution_id
    context = sys.modules.get(INJECTED_CONTEXT)
    variable = getattr(context, "current_execution_id", None)
    token = variable.set(execution_id) if variable is not None else None
    try:
        with keep_warning_filters():
            from craft_ai_sdk.shared.execution_context import get_execution_id

        addressed = get_execution_id()  # type: ignore[no-untyped-call]
        if addressed != execution_id:
            raise CraftCallbacksError(
                f"cannot address execution {execution_id!r}: the Craft AI SDK in this process writes "
                f"to execution {addressed!r} and cannot be pointed elsewhere; run craft-callbacks sync "
                "outside a platform step (or in a step of that execution)"
            )
        yield
    finally:
        if token is not None and variable is not None:
            variable.reset(token)
        if before is None:
            os.environ.pop(EXECUTION_ENV, None)
        else:
            os.environ[EXECUTION_ENV] = before


class _Targets:
    """Where each spooled run goes: its Craft AI execution (through one SDK client) or its
    DigitalHub entity (found again from the key it was spooled under)."""

    def __init__(self, sdk: Any) -> None:
        self._sdk = sdk
        self._digitalhub: dict[str, Any] = {}

    def __call__(self, key: str) -> _Target:
        if key.startswith(DIGITALHUB_PREFIX):
            if key not in self._digitalhub:
                self._digitalhub[key] = sink_for_key(key)
            sink = self._digitalhub[key]
            return _Target(sink.list_count, sink, nullcontext())
        sdk = self._craft_ai()
        return _Target(lambda name: platform_list_count(sdk, key, name), sdk, _in_execution(key))

    def _craft_ai(self) -> Any:
        if self._sdk is None:
            try:
                with keep_warning_filters():
                    from craft_ai_sdk import CraftAiSdk
            except ImportError as error:
                raise CraftCallbacksError(
                    "craft-ai-sdk is not installed: pip install 'craft-callbacks[craft]'"
                ) from error
            try:
                self._sdk = CraftAiSdk(warn_on_metric_outside_of_pipeline=False)  # type: ignore[no-untyped-call]
            except ValueError as error:
                raise CraftCallbacksError(f"cannot reach the platform: {error}") from error
            install_request_timeout(self._sdk, DEFAULT_REQUEST_TIMEOUT_S)
        return self._sdk


@dataclass
class _Target:
    count: Callable[[str], int]
    sink: Any  # record_list_metric_values / record_metric_value
    context: AbstractContextManager[Any]


def _sync_list(target: _Target, spool: Spool, item: SpooledList, report: SyncReport) -> None:
    """Deliver one list; every attempt first asks the remote what it already holds."""
    label = f"{run_of(item.execution_id)}/{item.name}"
    try:
        retrying(lambda: _deliver_rest(target, spool, item, report), attempts=SYNC_ATTEMPTS)
    except Exception as error:
        if is_permanent(error):
            spool.mark_refused(item.execution_id, item.name, str(error))
            report.refused.append(f"{label}: {error}")
        else:
            report.failed.append(f"{label}: {type(error).__name__}: {error}")


def _deliver_rest(target: _Target, spool: Spool, item: SpooledList, report: SyncReport) -> None:
    """Skip what the remote already holds, then send the rest in requests of 10,000 values."""
    count = target.count(item.name)
    if item.base is None:  # nothing of this list was ever sent: the remote's count is the base
        item.base = count
        spool.set_base(item.execution_id, item.name, count)
    elif item.base != UNVERIFIABLE:
        arrived = min(max(count - item.base - item.accepted, 0), len(item.values))
        if arrived:
            item.accepted += arrived
            del item.values[:arrived]
            report.already_there += arrived
            spool.mark_accepted(item.execution_id, item.name, item.accepted)
    while item.values:
        chunk = item.values[: getattr(target.sink, "list_request_limit", LIST_REQUEST_LIMIT)]
        sent(target.sink.record_list_metric_values(item.name, chunk))
        item.accepted += len(chunk)
        del item.values[: len(chunk)]
        spool.mark_accepted(item.execution_id, item.name, item.accepted)
        run = run_of(item.execution_id)
        report.values[run] = report.values.get(run, 0) + len(chunk)


def _target_or_report(targets: _Targets, run: str, what: str, report: SyncReport) -> _Target | None:
    """The remote of ``run``, or None with the reason in the report (the other runs still go)."""
    try:
        return targets(run)
    except CraftCallbacksError:
        raise  # no Craft AI client at all: nothing can be synced to the platform
    except Exception as error:
        report.failed.append(f"{run}/{what}: cannot reach it ({type(error).__name__}: {error})")
        return None


def sync_spool(path: str | os.PathLike[str], sdk: Any = None, force: bool = False) -> SyncReport:
    """Deliver everything a spool holds, each run to its remote.

    Craft AI executions go through ``sdk`` (built from the environment if not
    given, and only if the spool holds one); DigitalHub entities through the
    ``digitalhub`` package, configured by its own environment (``DHCORE_*``).
    """
    spool_path = Path(path)
    if not spool_path.is_file():
        raise CraftCallbacksError(f"no spool at {spool_path}")
    spool = Spool(spool_path)
    if sdk is not None:
        install_request_timeout(sdk, DEFAULT_REQUEST_TIMEOUT_S)
    target_of = _Targets(sdk)
    report = SyncReport()
    try:
        for item in spool.pending_lists():
            run = run_of(item.execution_id)
            if process_alive(item.owner_pid) and not force:
                report.left_to_owner.append(f"{run}/{item.name} (pid {item.owner_pid})")
                continue
            target = _target_or_report(target_of, run, item.name, report)
            if target is not None:
                with target.context:
                    _sync_list(target, spool, item, report)
        for key, name, value, owner_pid in spool.pending_scalars():
            run = run_of(key)
            if process_alive(owner_pid) and not force:
                report.left_to_owner.append(f"{run}/{name} (scalar, pid {owner_pid})")
                continue
            target = _target_or_report(target_of, run, f"{name} (scalar)", report)
            if target is None:
                continue
            with target.context:
                try:
                    retrying(
                        lambda: sent(target.sink.record_metric_value(name, value)),  # noqa: B023
                        attempts=SYNC_ATTEMPTS,
                    )
                except Exception as error:
                    if is_permanent(error):
                        report.refused.append(f"{run}/{name} (scalar): {error}")
                        spool.scalar_done(key, name, value)
                    else:
                        report.failed.append(f"{run}/{name} (scalar): {type(error).__name__}")
                    continue
            spool.scalar_done(key, name, value)
            report.scalars[run] = report.scalars.get(run, 0) + 1
    finally:
        spool.close()
    return report
