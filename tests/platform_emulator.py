"""A small, faithful emulator of the Craft AI platform HTTP API used for metrics.

The real ``craft_ai_sdk.CraftAiSdk`` client talks to it over real HTTP (point
``CRAFT_AI_ENVIRONMENT_URL`` and ``CRAFT_AI_CONTROL_URL`` at ``emulator.url`` and
``CRAFT_AI_SDK_TOKEN`` at ``emulator.token``). Standard library only, except
PyJWT (a craft-ai-sdk dependency) imported lazily to sign access tokens.

Routes (``{name}`` is one raw path segment, percent-decoded for storage):

* ``POST /api/v1/auth/refresh``             {"refresh_token": T} -> {"access_token": JWT}
* ``PUT  /api/v1/metrics/single-value/{name}`` {"value": v, "execution_id": id}
* ``POST /api/v1/metrics/list-values/{name}``  {"values": [...], "execution_id": id}
* ``GET  /api/v1/metrics/single-value`` and ``GET /api/v1/metrics/list-values`` with
  ``filters[name|pipeline_name|deployment_name|execution_id]``, ``items_per_page``,
  ``page`` (1-based) -> {"metrics": [rows], "total_count": N}

Anything else is 404 {"name": "NotFound"}, including a write path with an extra
segment (a '/' in a name), a '.' or '..' segment, an empty name, a query string on
a write route (a '?' that cut a name) or a '#' in the request target.

Choices where the real platform's behaviour is not documented:

* A list holds at most ``list_limit`` (50,000) values per (execution_id, name). A
  POST that would go past it is refused whole (nothing appended) with 400
  {"name": "MetricListLimitReached", "message": "... limit of 50000 values ..."}.
* A scalar keeps the last value; its ``created_at`` is the time it was first recorded
  and its place in listings does not move.
* At most one of pipeline_name / deployment_name / execution_id may filter a listing
  (as the SDK docstrings say); more is 400 {"name": "InvalidFilters"} unless
  ``exclusive_filters=False``. ``items_per_page`` above ``max_items_per_page`` is
  clamped.

Faults a test injects (all thread-safe, settable from the test thread at any time, all
cleared by ``reset()``). ``fail_next``, ``garble_next``, ``stall_after_store_next``,
``drop_next``, ``drop_rate`` and ``failure_rate`` apply only to requests on ``fault_routes``
(the four metric routes unless set; never the auth refresh) that passed authentication;
``outage``, ``outage_refuse`` and ``latency_s`` to every request:

* ``fail_next(count, status=500, *, after_store=False, body="json")``: the next ``count``
  requests are answered ``status``. By default before anything is stored; with
  ``after_store=True`` the write is performed first (values stored; a write the platform
  refuses stores nothing) and the status answered anyway, as a gateway that lost the
  platform's answer would. ``body`` is "json" (the platform's {"message", "name"}), "html"
  (a gateway page, ``Content-Type: text/html``) or "empty" (no body, no Content-Type). A
  429 carries ``Retry-After: 1``; a 401 is answered as given (the SDK drops its token).
* ``garble_next(count)``: the next ``count`` writes are performed, and answered with their
  status (200 when stored) and a body that is not JSON (``<html>ok``, text/html).
* ``stall_after_store_next(count, seconds)``: the next ``count`` writes are performed, then
  their answer waits ``seconds`` (longer than the client's timeout: it gives up after the
  platform stored the values). ``stop()`` or an ``outage_refuse`` ends a stall at once,
  closing its connection unanswered.
* ``drop_next(count)``, ``drop_rate``: the connection is closed unanswered; with
  ``drop_after_processing`` the write is performed first (the "lost answer").
* ``failure_rate``: a seeded share of requests is answered 500 before storing.
* ``outage(seconds)``: everything, auth included, is answered 503 (before storing).
* ``outage_refuse(seconds)``: connections are refused (and open ones closed).
* ``latency_s``: every request, auth included, waits before being handled.
* ``revoke_access_tokens()``: the next authenticated request gets 401.

``fail_next``, ``garble_next`` and ``stall_after_store_next`` share one queue, consumed in
the order they were called, before ``drop_next`` and the rates. The faults that act after
storing (``after_store=True``, garble, stall) only make sense for a write: they are taken
by the next ``PUT``/``POST`` metric write only, and a ``GET`` listing while one is first in
line is answered normally (it does not consume it, nor a fault queued behind it).

``requests_log`` holds one entry per request, with the status it was answered (None when
its connection was closed unanswered); a stalled request is logged, with the status it
will answer, as soon as it is stored, before its stall.
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

from loopback_server import ROUTE_UNMATCHED, Answer, LoopbackEmulator, is_number, now_iso, strict_json

JsonDict = dict[str, Any]
Key = tuple[str, str]

ROUTE_AUTH = "auth_refresh"
ROUTE_SCALAR_PUT = "scalar_put"
ROUTE_LIST_POST = "list_post"
ROUTE_SCALAR_GET = "scalar_get"
ROUTE_LIST_GET = "list_get"
METRIC_ROUTES = frozenset({ROUTE_SCALAR_PUT, ROUTE_LIST_POST, ROUTE_SCALAR_GET, ROUTE_LIST_GET})
WRITE_ROUTES = frozenset({ROUTE_SCALAR_PUT, ROUTE_LIST_POST})
FAILURE_BODIES = ("json", "html", "empty")
GARBLED_BODY = b"<html>ok"

DEFAULT_PIPELINE = "pipeline"
_API = "/api/v1"
_SCALAR_BASE = f"{_API}/metrics/single-value"
_LIST_BASE = f"{_API}/metrics/list-values"
_STATUSES = {status.value for status in HTTPStatus}
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it. ``status`` is None when no response was sent."""

    method: str
    path: str  # the raw request target, query string included, exactly as received
    route: str  # one of the ROUTE_* names
    status: int | None
    bytes_received: int  # request body bytes


@dataclass(frozen=True)
class _Scripted:
    """A fault queued by fail_next ("fail"), garble_next ("garble") or stall_after_store_next ("stall")."""

    kind: str
    status: int = 200
    after_store: bool = False
    body: str = "json"
    seconds: float = 0.0

    @property
    def writes_only(self) -> bool:
        return self.after_store or self.kind != "fail"


class _HttpError(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message


@dataclass
class _Scalar:
    value: float
    created_at: str


@dataclass
class _List:
    values: list[float]
    created_at: str


class EmulatorStore:
    """Thread-safe metric storage. ``lists`` and ``scalars`` return snapshots (copies)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scalars: dict[Key, _Scalar] = {}
        self._lists: dict[Key, _List] = {}

    @property
    def scalars(self) -> dict[Key, float]:
        """{(execution_id, name): last value}."""
        with self._lock:
            return {key: row.value for key, row in self._scalars.items()}

    @property
    def lists(self) -> dict[Key, list[float]]:
        """{(execution_id, name): all values in order}."""
        with self._lock:
            return {key: list(row.values) for key, row in self._lists.items()}

    def set_scalar(self, execution_id: str, name: str, value: float) -> _Scalar:
        with self._lock:
            row = self._scalars.get((execution_id, name))
            if row is None:
                row = self._scalars[(execution_id, name)] = _Scalar(value, now_iso())
            else:
                row.value = value
            return _Scalar(row.value, row.created_at)

    def extend_list(self, execution_id: str, name: str, values: list[float], limit: int | None) -> int:
        """Append all values, or none when ``limit`` would be passed; returns the new length."""
        with self._lock:
            row = self._lists.get((execution_id, name))
            held = 0 if row is None else len(row.values)
            if limit is not None and held + len(values) > limit:
                raise _HttpError(
                    400,
                    "MetricListLimitReached",
                    f"Metric list {name!r} of execution {execution_id!r} holds {held} values: adding "
                    f"{len(values)} would pass the limit of {limit} values per list per execution",
                )
            if row is None:
                row = self._lists[(execution_id, name)] = _List([], now_iso())
            row.values.extend(values)
            return len(row.values)

    def scalar_rows(self) -> list[tuple[Key, _Scalar]]:
        with self._lock:
            return [(key, _Scalar(row.value, row.created_at)) for key, row in self._scalars.items()]

    def list_rows(self) -> list[tuple[Key, _List]]:
        with self._lock:
            return [(key, _List(list(row.values), row.created_at)) for key, row in self._lists.items()]

    def clear(self) -> None:
        with self._lock:
            self._scalars.clear()
            self._lists.clear()


class PlatformEmulator(LoopbackEmulator[LoggedRequest]):
    """An in-process HTTP server that answers like the Craft AI metrics API.

    Settable at any time from any thread (all thread-safe): ``failure_rate``,
    ``latency_s`` (auth included), ``drop_rate``, ``drop_after_processing``,
    ``fault_routes`` (all metric routes unless set), ``executions``; callable the same way:
    ``fail_next``, ``garble_next``, ``stall_after_store_next``, ``drop_next`` (it honours
    drop_after_processing), ``outage``, ``outage_refuse``, ``revoke_access_tokens``. See the
    module docstring for the routes, the faults and the documented choices.
    """

    content_type = "application/json; charset=utf-8"

    def __init__(
        self,
        token: str | None = None,
        *,
        seed: int = 0,
        list_limit: int = 50_000,
        token_ttl_s: float = 3600,
        max_items_per_page: int = 5000,
        exclusive_filters: bool = True,
    ) -> None:
        super().__init__(seed=seed, fault_routes=METRIC_ROUTES)
        self.token: str = token if token is not None else "sdk-" + secrets.token_urlsafe(24)
        self.list_limit = list_limit
        self.token_ttl_s = token_ttl_s
        self.max_items_per_page = max_items_per_page
        self.exclusive_filters = exclusive_filters
        self.signing_key = secrets.token_hex(16)
        # execution_id -> (pipeline_name, deployment_name or None); unknown: ("pipeline", None)
        self.executions: dict[str, tuple[str, str | None]] = {}
        self.store = EmulatorStore()
        self._drop_rate = 0.0
        self._drop_after_processing = False
        self._outage_until = 0.0
        self._issued: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self._refresh_count = 0

    @property
    def listening(self) -> bool:
        with self._lifecycle:
            return self._server is not None

    # ----- fault injection -----

    def fail_next(
        self, count: int = 1, status: int = 500, *, after_store: bool = False, body: str = "json"
    ) -> None:
        """Answer the next ``count`` requests on ``fault_routes`` with ``status``: before storing,
        or with ``after_store`` once the write is performed (writes only). ``body``: "json",
        "html" (a gateway page) or "empty". A 429 carries ``Retry-After: 1``."""
        if body not in FAILURE_BODIES:
            raise ValueError(f"body must be one of {FAILURE_BODIES}, got {body!r}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status!r}")
        with self._lock:
            self._fail_next.extend([_Scripted("fail", status, after_store, body)] * count)

    def garble_next(self, count: int = 1) -> None:
        """Perform the next ``count`` writes on ``fault_routes``, then answer them with a body
        that is not JSON (``<html>ok``, text/html; status 200 when stored)."""
        with self._lock:
            self._fail_next.extend([_Scripted("garble")] * count)

    def stall_after_store_next(self, count: int = 1, seconds: float = 5.0) -> None:
        """Perform the next ``count`` writes on ``fault_routes``, then wait ``seconds`` before
        answering (a client with a shorter timeout gives up after the values were stored)."""
        with self._lock:
            self._fail_next.extend([_Scripted("stall", seconds=float(seconds))] * count)

    @property
    def drop_rate(self) -> float:
        """Share of requests on ``fault_routes`` whose connection is closed with no response."""
        with self._lock:
            return self._drop_rate

    @drop_rate.setter
    def drop_rate(self, value: float) -> None:
        with self._lock:
            self._drop_rate = float(value)

    @property
    def drop_after_processing(self) -> bool:
        """True: a dropped write is stored first ("response lost"); False: nothing stored."""
        with self._lock:
            return self._drop_after_processing

    @drop_after_processing.setter
    def drop_after_processing(self, value: bool) -> None:
        with self._lock:
            self._drop_after_processing = bool(value)

    def outage(self, seconds: float) -> None:
        """For ``seconds`` from now, every request (auth included) gets 503."""
        with self._lock:
            self._outage_until = time.monotonic() + seconds

    @property
    def in_outage(self) -> bool:
        with self._lock:
            return time.monotonic() < self._outage_until

    def outage_refuse(self, seconds: float) -> None:
        """Stop listening (connections refused, open ones closed) for ``seconds``,
        then listen again on the same port. Call it from the test thread."""
        with self._lock:
            if not self._started:
                raise RuntimeError("the emulator is not started")
            self._cancel_restart()
            self._close_listener()
            self._restart_timer = threading.Timer(seconds, self._relisten)
            self._restart_timer.daemon = True
            self._restart_timer.start()

    def _relisten(self) -> None:
        with self._lifecycle:
            self._restart_timer = None
            if self._started and self._server is None:
                self._listen(self._port)

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Block until an outage_refuse is over."""
        deadline = time.monotonic() + timeout
        while not self.listening:
            if time.monotonic() > deadline:
                raise TimeoutError("the emulator did not listen again")
            time.sleep(0.01)

    def revoke_access_tokens(self) -> None:
        """Forget every issued access token: the next authenticated request gets 401."""
        with self._lock:
            self._issued.clear()

    def reset(self) -> None:
        """Remove every fault (rates, latency, drops, scripted failures, outages). Keeps data and logs."""
        self._reset_faults()
        with self._lock:
            self._drop_rate = 0.0
            self._drop_after_processing = False
            self._outage_until = 0.0
        with self._lifecycle:
            self._cancel_restart()
            if self._started and self._server is None:
                self._listen(self._port)

    def _draw_other_fault(self) -> str | None:
        if self._drop_rate > 0 and self._rng.random() < self._drop_rate:
            return "drop"
        return None

    def _fault_applies(self, fault: Any, route: str) -> bool:
        return not (isinstance(fault, _Scripted) and fault.writes_only) or route in WRITE_ROUTES

    # ----- observation -----

    @property
    def refresh_count(self) -> int:
        """Access tokens issued (successful auth refreshes)."""
        with self._lock:
            return self._refresh_count

    # ----- direct access (no HTTP, no validation, no limit) -----

    def add_scalar(self, execution_id: str, name: str, value: float) -> None:
        self.store.set_scalar(execution_id, name, value)

    def add_list_values(self, execution_id: str, name: str, values: Iterable[float]) -> None:
        self.store.extend_list(execution_id, name, list(values), limit=None)

    def _execution(self, execution_id: str) -> tuple[str, str | None]:
        return self.executions.get(execution_id, (DEFAULT_PIPELINE, None))

    # ----- request handling (handler threads) -----

    def _log_entry(
        self, method: str, path: str, route: str, status: int | None, body: bytes
    ) -> LoggedRequest:
        return LoggedRequest(method, path, route, status, len(body))

    def _error_answer(self, status: int, message: str) -> tuple[int, JsonDict]:
        name = HTTPStatus(status).phrase.replace(" ", "") if status in _STATUSES else "ServerError"
        return status, {"message": message, "name": name}

    def _handle(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[str, tuple[int, JsonDict] | Answer | None]:
        route, name_segment, query = _match(method, raw_path)
        try:
            if self.in_outage:
                raise _HttpError(503, "ServiceUnavailable", "The platform is unavailable (emulated outage)")
            if route == ROUTE_UNMATCHED:
                raise _HttpError(404, "NotFound", f"No route for {method} {raw_path}")
            if route == ROUTE_AUTH:
                return route, (200, self._refresh(_json_body(body)))
            self._authenticate(headers.get("Authorization", ""))
            fault = self._draw_fault(route)
            if isinstance(fault, int):
                return route, self._error_answer(fault, f"Injected {fault} error (emulated)")
            if fault == "drop":
                if self.drop_after_processing:
                    with contextlib.suppress(_HttpError):
                        self._serve(route, name_segment, query, body)
                return route, None
            if isinstance(fault, _Scripted):
                return route, self._scripted(fault, route, name_segment, query, body)
            return route, (200, self._serve(route, name_segment, query, body))
        except _HttpError as error:
            return route, (error.status, {"message": error.message, "name": error.name})

    def _scripted(
        self, fault: _Scripted, route: str, name_segment: str | None, query: str, body: bytes
    ) -> Answer:
        if fault.kind == "fail" and not fault.after_store:
            return self._failure(fault)
        try:
            answer = self._as_answer((200, self._serve(route, name_segment, query, body)))
        except _HttpError as error:  # refused: nothing stored
            answer = self._as_answer((error.status, {"message": error.message, "name": error.name}))
        if fault.kind == "fail":
            return self._failure(fault)
        if fault.kind == "garble":
            return Answer(answer.status, GARBLED_BODY, "text/html")
        return replace(answer, delay_s=fault.seconds)

    def _failure(self, fault: _Scripted) -> Answer:
        status = fault.status
        headers = (("Retry-After", "1"),) if status == 429 else ()
        if fault.body == "empty":
            return Answer(status, headers=headers)
        if fault.body == "html":
            phrase = HTTPStatus(status).phrase if status in _STATUSES else "Error"
            page = f"<html><body><h1>{status} {phrase}</h1></body></html>"
            return Answer(status, page.encode(), "text/html", headers)
        answer = self._as_answer(self._error_answer(status, f"Injected {status} error (emulated)"))
        return replace(answer, headers=headers)

    def _refresh(self, body: Any) -> JsonDict:
        import jwt  # PyJWT, a craft-ai-sdk dependency; lazy so conftest imports without it

        refresh_token = body.get("refresh_token") if isinstance(body, dict) else None
        if not isinstance(refresh_token, str) or not secrets.compare_digest(
            refresh_token.encode(), self.token.encode()
        ):
            raise _HttpError(401, "InvalidRefreshToken", "The refresh token is invalid or expired")
        now = int(time.time())
        exp = now + max(1, math.ceil(self.token_ttl_s))
        claims = {"iat": now, "exp": exp, "sub": "emulator-user", "jti": secrets.token_hex(8)}
        access_token = jwt.encode(claims, self.signing_key, algorithm="HS256")
        with self._lock:
            self._issued[access_token] = now + self.token_ttl_s
            self._refresh_count += 1
        return {"access_token": access_token}

    def _authenticate(self, header: str) -> None:
        scheme, _, token = header.partition(" ")
        with self._lock:
            expiry = self._issued.get(token) if scheme == "Bearer" else None
        if expiry is None or time.time() >= expiry:
            raise _HttpError(401, "Unauthorized", "Missing, invalid or expired access token")

    def _serve(self, route: str, name_segment: str | None, query: str, body: bytes) -> JsonDict:
        if route in (ROUTE_SCALAR_GET, ROUTE_LIST_GET):
            return self._list_metrics(route, query)
        assert name_segment is not None
        name = _decode_segment(name_segment)
        payload = _json_body(body)
        if not isinstance(payload, dict):
            raise _HttpError(400, "InvalidBody", "The body must be a JSON object")
        execution_id = payload.get("execution_id")
        if not isinstance(execution_id, str) or not execution_id:
            raise _HttpError(400, "InvalidExecutionId", "execution_id must be a non-empty string")
        if route == ROUTE_SCALAR_PUT:
            value = payload.get("value")
            if not is_number(value):
                raise _HttpError(
                    400, "InvalidMetricValue", f"Metric value must be a number (int or float), got {value!r}"
                )
            row = self.store.set_scalar(execution_id, name, value)
            return {
                "name": name,
                "value": row.value,
                "execution_id": execution_id,
                "created_at": row.created_at,
            }
        values = payload.get("values")
        if not isinstance(values, list) or not all(is_number(v) for v in values):
            raise _HttpError(
                400, "InvalidMetricValue", "Metric list values must be a list of numbers (int or float)"
            )
        length = self.store.extend_list(execution_id, name, values, limit=self.list_limit)
        return {"name": name, "execution_id": execution_id, "added": len(values), "count": length}

    def _list_metrics(self, route: str, query: str) -> JsonDict:
        params = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
        want_name = params.get("filters[name]")
        want_pipeline = params.get("filters[pipeline_name]")
        want_deployment = params.get("filters[deployment_name]")
        want_execution = params.get("filters[execution_id]")
        scopes = [f for f in (want_pipeline, want_deployment, want_execution) if f is not None]
        if self.exclusive_filters and len(scopes) > 1:
            raise _HttpError(
                400,
                "InvalidFilters",
                "Only one of pipeline_name, deployment_name and execution_id can be set",
            )
        per_page = _positive_int(params.get("items_per_page", "100"), "items_per_page")
        per_page = min(per_page, self.max_items_per_page)
        page = _positive_int(params.get("page", "1"), "page")

        rows: list[JsonDict] = []
        source: list[Any] = self.store.scalar_rows() if route == ROUTE_SCALAR_GET else self.store.list_rows()
        for (execution_id, name), row in source:
            pipeline_name, deployment_name = self._execution(execution_id)
            if (
                (want_name is not None and name != want_name)
                or (want_execution is not None and execution_id != want_execution)
                or (want_pipeline is not None and pipeline_name != want_pipeline)
                or (want_deployment is not None and deployment_name != want_deployment)
            ):
                continue
            item: JsonDict = {"name": name}
            if route == ROUTE_SCALAR_GET:
                item["value"] = row.value
            else:
                item["values"] = row.values
            item.update(
                created_at=row.created_at,
                execution_id=execution_id,
                deployment_name=deployment_name,
                pipeline_name=pipeline_name,
            )
            rows.append(item)
        start = (page - 1) * per_page
        return {"metrics": rows[start : start + per_page], "total_count": len(rows)}


def _match(method: str, raw: str) -> tuple[str, str | None, str]:
    """(route, raw name segment or None, query string) for a raw request target."""
    if "#" in raw or not raw.startswith("/"):
        return ROUTE_UNMATCHED, None, ""
    path, question_mark, query = raw.partition("?")
    segments = path.split("/")
    if any(segment in (".", "..") for segment in segments):
        return ROUTE_UNMATCHED, None, ""
    if method == "POST" and path == f"{_API}/auth/refresh":
        return ROUTE_AUTH, None, query
    if method == "GET" and path == _SCALAR_BASE:
        return ROUTE_SCALAR_GET, None, query
    if method == "GET" and path == _LIST_BASE:
        return ROUTE_LIST_GET, None, query
    base, _, name = path.rpartition("/")
    if question_mark or not name:
        return ROUTE_UNMATCHED, None, ""
    if method == "PUT" and base == _SCALAR_BASE:
        return ROUTE_SCALAR_PUT, name, ""
    if method == "POST" and base == _LIST_BASE:
        return ROUTE_LIST_POST, name, ""
    return ROUTE_UNMATCHED, None, ""


def _decode_segment(segment: str) -> str:
    """Percent-decode a path segment as a web framework would (400 on a malformed escape)."""
    if _BAD_ESCAPE.search(segment):
        raise _HttpError(400, "BadRequest", f"Malformed percent-escape in {segment!r}")
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise _HttpError(400, "BadRequest", f"Invalid UTF-8 in {segment!r}") from None


def _json_body(body: bytes) -> Any:
    try:
        return strict_json(body)
    except ValueError:
        raise _HttpError(400, "InvalidBody", "The body is not valid JSON") from None


def _positive_int(text: str, what: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise _HttpError(400, "InvalidQuery", f"{what} must be a positive integer, got {text!r}")
    return number
