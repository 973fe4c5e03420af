"""The Craft AI platform's sink: the real ``craft-ai-sdk`` client, and what we need of it.

How to tell a ``CraftAiSdk`` (without importing the SDK), the request timeout
its HTTP session lacks, and the platform's count of a list. Delivery to it
(spooled, chunked, retried, reconciled) is
:class:`craft_callbacks.delivery.craft_ai.CraftAiDestination`.
"""

from __future__ import annotations

from typing import Any


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
