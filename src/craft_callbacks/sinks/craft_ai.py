"""Delivery to the Craft AI platform through the real ``craft-ai-sdk`` client.

Spooled, chunked (one HTTP request per SDK call of at most 10,000 values),
retried and reconciled by :class:`~craft_callbacks.spooled.SpooledDestination`;
the platform's list count is what reconciles. Which errors are refusals and
which may have landed is decided in :mod:`craft_callbacks.retry`. The SDK's requests carry
no timeout of their own; the platform sink gives its client one.
"""

from __future__ import annotations

from typing import Any, Final

from craft_callbacks.retry import is_permanent
from craft_callbacks.spool import Spool
from craft_callbacks.spooled import SpooledDestination

DEFAULT_REQUEST_TIMEOUT_S: Final = 30.0


def is_craft_ai_sdk(sink: Any) -> bool:
    """Whether ``sink`` is a ``craft_ai_sdk`` client (without importing the SDK)."""
    return any(cls.__module__.startswith("craft_ai_sdk") for cls in type(sink).__mro__)


def install_request_timeout(sdk: Any, default_timeout: float) -> None:
    """Give the SDK's HTTP session a default timeout (the SDK sets none: a hung server would hang us)."""
    session = getattr(sdk, "_session", None)
    if session is None or not hasattr(session, "mount"):
        return
    from requests import PreparedRequest, Response
    from requests.adapters import HTTPAdapter

    class TimeoutAdapter(HTTPAdapter):
        def send(
            self,
            request: PreparedRequest,
            stream: bool = False,
            timeout: float | tuple[float | None, float | None] | None = None,
            verify: bool | str = True,
            cert: str | tuple[str, str] | None = None,
            proxies: dict[str, str] | None = None,
        ) -> Response:
            return super().send(
                request,
                stream=stream,
                timeout=default_timeout if timeout is None else timeout,
                verify=verify,
                cert=cert,
                proxies=proxies,
            )

    adapter = TimeoutAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def platform_list_count(sdk: Any, execution_id: str, name: str) -> int:
    """How many values the platform holds in one list of one execution."""
    rows = sdk.get_list_metrics(name=name, execution_id=execution_id)
    return sum(
        len(row.get("values") or [])
        for row in rows
        if row.get("name") == name and row.get("execution_id") == execution_id
    )


class PlatformDestination(SpooledDestination):
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
