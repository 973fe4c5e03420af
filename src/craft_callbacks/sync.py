"""Deliver a spool to the platform later: ``craft-callbacks sync``.

Each list's values go to the execution they were recorded in, in order, once:
before sending, the platform's count for the list says how many of the
spooled values it already holds (a run killed between the platform's
acceptance and the spool's update), and each accepted request is recorded in
the spool at once, so an interrupted sync resumes without duplicates. Lists
still owned by a running process are left to it unless ``force``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from craft_callbacks.delivery import LIST_REQUEST_LIMIT, is_permanent
from craft_callbacks.exceptions import CraftCallbacksError
from craft_callbacks.sinks.auto import EXECUTION_ENV, sdk_import
from craft_callbacks.sinks.craft_ai import (
    DEFAULT_REQUEST_TIMEOUT_S,
    install_request_timeout,
    platform_list_count,
)
from craft_callbacks.spool import UNVERIFIABLE, Spool, SpooledList

_ATTEMPTS: Final = 4


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


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _in_execution(execution_id: str) -> Iterator[None]:
    """Make the SDK address ``execution_id`` (it reads the id from the environment)."""
    before = os.environ.get(EXECUTION_ENV)
    os.environ[EXECUTION_ENV] = execution_id
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(EXECUTION_ENV, None)
        else:
            os.environ[EXECUTION_ENV] = before


def _retrying(call: Any, *args: Any) -> Any:
    """Call the SDK, retrying transient failures a few times with backoff."""
    for attempt in range(_ATTEMPTS):
        try:
            return call(*args)
        except Exception as error:
            if is_permanent(error) or attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _sync_list(sdk: Any, spool: Spool, item: SpooledList, report: SyncReport) -> None:
    """Deliver one list; every attempt first asks the platform what it already holds."""
    label = f"{item.execution_id}/{item.name}"
    for attempt in range(_ATTEMPTS):
        try:
            _deliver_rest(sdk, spool, item, report)
            return
        except Exception as error:
            if is_permanent(error):
                spool.mark_refused(item.execution_id, item.name, str(error))
                report.refused.append(f"{label}: {error}")
                return
            if attempt == _ATTEMPTS - 1:
                report.failed.append(f"{label}: {type(error).__name__}: {error}")
                return
            time.sleep(0.5 * 2**attempt)


def _deliver_rest(sdk: Any, spool: Spool, item: SpooledList, report: SyncReport) -> None:
    """Skip what the platform already holds, then send the rest in requests of 10,000 values."""
    count = platform_list_count(sdk, item.execution_id, item.name)
    if item.base is None:  # nothing of this list was ever sent: the platform's count is the base
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
        chunk = item.values[:LIST_REQUEST_LIMIT]
        sdk.record_list_metric_values(item.name, chunk)
        item.accepted += len(chunk)
        del item.values[: len(chunk)]
        spool.mark_accepted(item.execution_id, item.name, item.accepted)
        report.values[item.execution_id] = report.values.get(item.execution_id, 0) + len(chunk)


def sync_spool(path: str | os.PathLike[str], sdk: Any = None, force: bool = False) -> SyncReport:
    """Deliver everything a spool holds; the SDK client is built from the environment if not given."""
    spool_path = Path(path)
    if not spool_path.is_file():
        raise CraftCallbacksError(f"no spool at {spool_path}")
    spool = Spool(spool_path)
    if sdk is None:
        try:
            with sdk_import():
                from craft_ai_sdk import CraftAiSdk
        except ImportError as error:
            raise CraftCallbacksError(
                "craft-ai-sdk is not installed: pip install 'craft-callbacks[craft]'"
            ) from error
        try:
            sdk = CraftAiSdk(warn_on_metric_outside_of_pipeline=False)  # type: ignore[no-untyped-call]
        except ValueError as error:
            raise CraftCallbacksError(f"cannot reach the platform: {error}") from error
    install_request_timeout(sdk, DEFAULT_REQUEST_TIMEOUT_S)
    report = SyncReport()
    try:
        for item in spool.pending_lists():
            if _alive(item.owner_pid) and not force:
                report.left_to_owner.append(f"{item.execution_id}/{item.name} (pid {item.owner_pid})")
                continue
            with _in_execution(item.execution_id):
                _sync_list(sdk, spool, item, report)
        for execution_id, name, value, owner_pid in spool.pending_scalars():
            if _alive(owner_pid) and not force:
                report.left_to_owner.append(f"{execution_id}/{name} (scalar, pid {owner_pid})")
                continue
            with _in_execution(execution_id):
                try:
                    _retrying(sdk.record_metric_value, name, value)
                except Exception as error:
                    if is_permanent(error):
                        report.refused.append(f"{execution_id}/{name} (scalar): {error}")
                        spool.scalar_done(execution_id, name, value)
                    else:
                        report.failed.append(f"{execution_id}/{name} (scalar): {type(error).__name__}")
                    continue
            spool.scalar_done(execution_id, name, value)
            report.scalars[execution_id] = report.scalars.get(execution_id, 0) + 1
    finally:
        spool.close()
    return report
