"""``sink="auto"``: the platform inside a Craft AI execution, the local store anywhere else."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Final

from craft_callbacks.exceptions import DeliveryWarning
from craft_callbacks.sinks.local_store import LocalStore

EXECUTION_ENV: Final = "CRAFT_AI_EXECUTION_ID"
INJECTED_CONTEXT: Final = "__craft_internal_execution_context"  # the SDK reads the execution id there


def _module_exists(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def sdk_installed() -> bool:
    """Whether ``craft-ai-sdk`` can be imported (without importing it)."""
    return importlib.util.find_spec("craft_ai_sdk") is not None


def keep_warning_filters() -> warnings.catch_warnings[None]:
    """Around an import of craft-ai-sdk: the process's warning filters are restored after it.

    Importing ``craft_ai_sdk.sdk`` runs ``warnings.simplefilter("always",
    DeprecationWarning)``, which would make every deprecation warning of the
    user's process print each time; the filters are restored on exit.
    """
    return warnings.catch_warnings()


def platform_execution_id() -> str | None:
    """The id of the Craft AI execution this process runs in, or None outside one.

    Asks the SDK when it is installed (it also knows the platform's injected
    context); otherwise reads ``CRAFT_AI_EXECUTION_ID``. Where neither that
    variable nor the module the platform injects into steps exists, the SDK
    would answer None too: it is not imported (that takes about 0.2 s).
    """
    if not os.environ.get(EXECUTION_ENV) and not _module_exists(INJECTED_CONTEXT):
        return None
    if sdk_installed():
        with keep_warning_filters():
            from craft_ai_sdk.shared.execution_context import get_execution_id

        found = get_execution_id()  # type: ignore[no-untyped-call]
        return str(found) if found else None
    return os.environ.get(EXECUTION_ENV) or None


def platform_sink() -> Any:
    """A ``CraftAiSdk`` built from the step's environment (URL and token come from it)."""
    with keep_warning_filters():
        from craft_ai_sdk import CraftAiSdk

    return CraftAiSdk()  # type: ignore[no-untyped-call]


def resolve_auto_sink(store_path: str | os.PathLike[str] | Path | None) -> Any:
    """Choose the sink for ``sink="auto"``.

    Inside an execution without ``craft-ai-sdk`` installed, the metrics cannot
    reach the platform: a loud warning says so and what to add to the step's
    requirements, and the metrics go to the local store instead.
    """
    execution_id = platform_execution_id()
    if not execution_id:
        return LocalStore(store_path)
    if not sdk_installed():
        problem = (
            "craft-ai-sdk is not installed. Add 'craft-callbacks[craft]' (or 'craft-ai-sdk') "
            "to the step's requirements.txt"
        )
    else:
        try:
            return platform_sink()
        except Exception as error:  # no token or URL in the step's environment
            problem = f"the Craft AI SDK cannot be set up ({error})"
    warnings.warn(
        f"craft_callbacks: this process runs in Craft AI execution {execution_id!r} but {problem}; "
        "metrics are NOT reaching the platform. They go to the local store meanwhile.",
        DeliveryWarning,
        stacklevel=3,
    )
    return LocalStore(store_path)
