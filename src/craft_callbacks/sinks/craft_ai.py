"""Delivery to the Craft AI platform through the real ``craft-ai-sdk`` client.

Every round of the delivery worker:

1. spools the new values (SQLite, beside the local store) *before* sending;
2. sends each list's pending values in requests of at most 10,000 values
   (one HTTP request each), then scalars;
3. records in the spool what the platform accepted.

Errors: a 4xx other than 401/408/429 is a refusal (one warning, the other
metrics keep flowing); anything else is retried by the worker with backoff.
A request whose fate is unknown (connection dropped, timeout) is checked
against the count of values the platform reports before anything is sent
again, so a lost response never duplicates values. The SDK's requests carry
no timeout of their own; the platform sink gives its client one.
"""

from __future__ import annotations

import warnings
from typing import Any, Final

from craft_callbacks.delivery import Destination, Outbox
from craft_callbacks.exceptions import DeliveryWarning
from craft_callbacks.spool import UNVERIFIABLE, Spool
from craft_callbacks.values import Number

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


def is_uncertain(error: BaseException) -> bool:
    """A failure after which the request may or may not have reached the platform."""
    return getattr(error, "status_code", None) is None


class PlatformDestination(Destination):
    """One execution on the Craft AI platform: spooled, chunked, retried and reconciled."""

    def __init__(self, sdk: Any, execution_id: str, spool: Spool, request_timeout: float) -> None:
        super().__init__(sdk, execution_id, f"the Craft AI platform (execution {execution_id})")
        self.spool = spool
        self._spooled: dict[str, int] = {}
        self._accepted: dict[str, int] = {}
        self._base: dict[str, int | None] = {}
        self._uncertain: set[str] = set()
        self._warned_unverifiable = False
        install_request_timeout(sdk, request_timeout)

    def deliver(self, new: Outbox) -> None:
        if new:
            lists = {}
            for name, (_, values) in new.lists.items():
                lists[name] = (self._spooled.get(name, 0), values)
            self.spool.add(self.execution_id, lists, dict(new.scalars))
            for name, (first, values) in lists.items():
                self._spooled[name] = first + len(values)
            self.progress += 1
        super().deliver(new)

    def _before_list(self, name: str) -> None:
        if name not in self._base:
            base = self._base[name] = self._count_or_none(name)
            self.spool.set_base(self.execution_id, name, UNVERIFIABLE if base is None else base)
        if name in self._uncertain:
            self._reconcile(name)

    def _count_or_none(self, name: str) -> int | None:
        """The platform's count of a list; None when the platform will not tell (a 4xx)."""
        try:
            return platform_list_count(self.sink, self.execution_id, name)
        except Exception as error:
            status = getattr(error, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500 and status not in (401, 408, 429):
                return None
            raise

    def _reconcile(self, name: str) -> None:
        """After an uncertain failure: drop what the platform already holds from what is pending."""
        base = self._base.get(name)
        steps, values = self.pending.lists[name]
        if base is None:
            if not self._warned_unverifiable:
                self._warned_unverifiable = True
                warnings.warn(
                    f"craft_callbacks: a request for metric {name!r} may or may not have reached the "
                    "platform, which does not let this step read its metrics back; it is sent again "
                    "and a few values may appear twice",
                    DeliveryWarning,
                    stacklevel=2,
                )
            self._uncertain.discard(name)
            return
        held = platform_list_count(self.sink, self.execution_id, name) - base
        arrived = min(max(held - self._accepted.get(name, 0), 0), len(values))
        if arrived:
            del steps[:arrived]
            del values[:arrived]
            self._after_list_accepted(name, arrived)
        self._uncertain.discard(name)

    def _after_list_accepted(self, name: str, count: int) -> None:
        accepted = self._accepted[name] = self._accepted.get(name, 0) + count
        self.spool.mark_accepted(self.execution_id, name, accepted)

    def _after_scalar_accepted(self, name: str, value: Number) -> None:
        self.spool.scalar_done(self.execution_id, name, value)

    def _after_failure(self, name: str, error: BaseException) -> None:
        if is_uncertain(error):
            self._uncertain.add(name)

    def _refuse(self, kind: str, name: str, error: BaseException, count: int) -> None:
        super()._refuse(kind, name, error, count)
        if kind == "list":
            self.spool.mark_refused(self.execution_id, name, str(error))
        else:
            self.spool.scalar_done(self.execution_id, name, self.pending.scalars[name])

    def release(self) -> None:
        self.spool.release(self.execution_id)

    def how_to_deliver_later(self) -> str:
        return (
            f" They are kept in the spool {self.spool.path}; deliver them with: "
            f"craft-callbacks sync --spool {self.spool.path}"
        )
