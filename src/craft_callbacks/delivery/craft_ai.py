"""Delivery to the Craft AI platform through the real ``craft-ai-sdk`` client.

Spooled, chunked (one HTTP request per SDK call of at most 10,000 values),
retried and reconciled by :class:`~craft_callbacks.delivery.remote.RemoteDestination`;
the platform's list count is what reconciles. Which errors are refusals and
which may have landed is decided in :mod:`craft_callbacks.delivery.retry`.
"""

from __future__ import annotations

from typing import Any

from craft_callbacks.delivery.remote import RemoteDestination
from craft_callbacks.delivery.retry import is_permanent
from craft_callbacks.delivery.spool import Spool
from craft_callbacks.sinks.craft_ai import install_request_timeout, platform_list_count


class CraftAiDestination(RemoteDestination):
    """One execution on the Craft AI platform: spooled, chunked, retried and reconciled."""

    def __init__(self, sdk: Any, execution_id: str, spool: Spool | None, request_timeout: float) -> None:
        super().__init__(
            sdk, execution_id, f"the Craft AI platform (execution {execution_id})", spool, execution_id
        )
        install_request_timeout(sdk, request_timeout)

    def remote_count(self, name: str) -> int | None:
        """The platform's count of a list; None when the platform will not tell (a 4xx)."""
        try:
            return platform_list_count(self.sink, self.execution_id, name)
        except Exception as error:
            if is_permanent(error):
                return None
            raise
