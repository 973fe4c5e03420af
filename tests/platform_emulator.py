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
* Injected 500s are answered before anything is stored.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import secrets
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

JsonDict = dict[str, Any]
Key = tuple[str, str]

ROUTE_AUTH = "auth_refresh"
ROUTE_SCALAR_PUT = "scalar_put"
ROUTE_LIST_POST = "list_post"
ROUTE_SCALAR_GET = "scalar_get"
ROUTE_LIST_GET = "list_get"
ROUTE_UNMATCHED = "unmatched"
METRIC_ROUTES = frozenset({ROUTE_SCALAR_PUT, ROUTE_LIST_POST, ROUTE_SCALAR_GET, ROUTE_LIST_GET})

DEFAULT_PIPELINE = "pipeline"
_API = "/api/v1"
_SCALAR_BASE = f"{_API}/metrics/single-value"
_LIST_BASE = f"{_API}/metrics/list-values"
_STATUSES = {status.value for status in HTTPStatus}
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_number(value: object) -> bool:
    """int or float (not bool), finite — what the platform accepts as a metric value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it. ``status`` is None when no response was sent."""

    method: str
    path: str  # the raw request target, query string included, exactly as received
    route: str  # one of the ROUTE_* names
    status: int | None
    bytes_received: int  # request body bytes


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
                row = self._scalars[(execution_id, name)] = _Scalar(value, _now_iso())
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
                row = self._lists[(execution_id, name)] = _List([], _now_iso())
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: PlatformEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, which can hang without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.emulator._track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.emulator._untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away mid-request is normal here (drops, refused outages, stop()).
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects
    server: _Server
    timeout = 60

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            emulator._record(self.command, self.path, ROUTE_UNMATCHED, 411, 0)
            self._reply(411, {"message": "Content-Length required", "name": "LengthRequired"})
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route, answer = emulator._handle(self.command, self.path, self.headers, body)
        # Logged before answering, so a client that got its answer finds its request logged.
        status = None if answer is None else answer[0]
        emulator._record(self.command, self.path, route, status, len(body))
        if answer is None:
            self._drop()
        else:
            self._reply(*answer)

    def _reply(self, status: int, payload: JsonDict | None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        # One write for headers and body: split writes meet Nagle + delayed ACK (40 ms each).
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def _drop(self) -> None:
        """Close the connection without sending anything."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class PlatformEmulator:
    """An in-process HTTP server that answers like the Craft AI metrics API.

    Settable at any time from any thread (all thread-safe): ``failure_rate``,
    ``latency_s``, ``drop_rate``, ``drop_after_processing``, ``fault_routes``,
    ``executions``; see the module docstring for the routes and the documented choices.
    """

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
        self.token: str = token if token is not None else "sdk-" + secrets.token_urlsafe(24)
        self.list_limit = list_limit
        self.token_ttl_s = token_ttl_s
        self.max_items_per_page = max_items_per_page
        self.exclusive_filters = exclusive_filters
        self.signing_key = secrets.token_hex(16)
        # execution_id -> (pipeline_name, deployment_name or None); unknown: ("pipeline", None)
        self.executions: dict[str, tuple[str, str | None]] = {}
        self.store = EmulatorStore()

        self._lock = threading.RLock()  # state; taken by handler threads, never held across I/O
        self._lifecycle = threading.Lock()  # start/stop/listen; never taken by handler threads
        self._rng = random.Random(seed)
        self._failure_rate = 0.0
        self._latency_s = 0.0
        self._drop_rate = 0.0
        self._drop_after_processing = False
        self._fault_routes: frozenset[str] = METRIC_ROUTES
        self._fail_next: list[int] = []
        self._drop_next = 0
        self._outage_until = 0.0

        self._issued: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self._log: list[LoggedRequest] = []
        self._per_route: Counter[str] = Counter()
        self._bytes_received = 0
        self._refresh_count = 0

        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._started = False
        self._restart_timer: threading.Timer | None = None

    # ----- lifecycle -----

    def start(self) -> PlatformEmulator:
        with self._lifecycle:
            if self._started:
                return self
            self._listen(0)
            self._started = True
        return self

    def stop(self) -> None:
        with self._lifecycle:
            self._started = False
            if self._restart_timer is not None:
                self._restart_timer.cancel()
                self._restart_timer = None
            self._close_listener()

    def __enter__(self) -> PlatformEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL (no trailing slash), for both the environment and the control URL."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def listening(self) -> bool:
        with self._lifecycle:
            return self._server is not None

    def _listen(self, port: int) -> None:
        last_error: OSError | None = None
        for _ in range(50):
            try:
                server = _Server(("127.0.0.1", port), self)
                break
            except OSError as error:  # the port may take a moment to be free again
                last_error = error
                time.sleep(0.02)
        else:
            raise RuntimeError(f"cannot listen again on port {port}") from last_error
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # keep-alive connections die with the server
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # ----- fault injection -----

    @property
    def failure_rate(self) -> float:
        """Share of requests on ``fault_routes`` answered 500 (seeded, deterministic)."""
        with self._lock:
            return self._failure_rate

    @failure_rate.setter
    def failure_rate(self, value: float) -> None:
        with self._lock:
            self._failure_rate = float(value)

    @property
    def latency_s(self) -> float:
        """Seconds slept before answering every request (auth included)."""
        with self._lock:
            return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        with self._lock:
            self._latency_s = float(value)

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

    @property
    def fault_routes(self) -> frozenset[str]:
        """Routes that failure_rate / drop_rate / fail_next / drop_next apply to (all metric routes)."""
        with self._lock:
            return self._fault_routes

    @fault_routes.setter
    def fault_routes(self, value: Iterable[str]) -> None:
        with self._lock:
            self._fault_routes = frozenset(value)

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` requests on ``fault_routes`` with ``status`` (before storing)."""
        with self._lock:
            self._fail_next.extend([status] * count)

    def drop_next(self, count: int = 1) -> None:
        """Drop the next ``count`` requests on ``fault_routes`` (honours drop_after_processing)."""
        with self._lock:
            self._drop_next += count

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
            if self._restart_timer is not None:
                self._restart_timer.cancel()
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
        with self._lock:
            self._failure_rate = self._latency_s = self._drop_rate = 0.0
            self._drop_after_processing = False
            self._fault_routes = METRIC_ROUTES
            self._fail_next.clear()
            self._drop_next = 0
            self._outage_until = 0.0
        with self._lifecycle:
            if self._restart_timer is not None:
                self._restart_timer.cancel()
                self._restart_timer = None
            if self._started and self._server is None:
                self._listen(self._port)

    # ----- observation -----

    @property
    def requests_log(self) -> list[LoggedRequest]:
        """Snapshot of every request received, in arrival order of completion."""
        with self._lock:
            return list(self._log)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._log)

    @property
    def requests_per_route(self) -> Counter[str]:
        """Snapshot {route name: count}; missing routes count 0."""
        with self._lock:
            return Counter(self._per_route)

    @property
    def bytes_received(self) -> int:
        """Request body bytes received, all requests together."""
        with self._lock:
            return self._bytes_received

    @property
    def refresh_count(self) -> int:
        """Access tokens issued (successful auth refreshes)."""
        with self._lock:
            return self._refresh_count

    def clear_log(self) -> None:
        """Empty requests_log and zero the counters (not refresh_count, not the store)."""
        with self._lock:
            self._log.clear()
            self._per_route.clear()
            self._bytes_received = 0

    # ----- direct access (no HTTP, no validation, no limit) -----

    def add_scalar(self, execution_id: str, name: str, value: float) -> None:
        self.store.set_scalar(execution_id, name, value)

    def add_list_values(self, execution_id: str, name: str, values: Iterable[float]) -> None:
        self.store.extend_list(execution_id, name, list(values), limit=None)

    def _execution(self, execution_id: str) -> tuple[str, str | None]:
        return self.executions.get(execution_id, (DEFAULT_PIPELINE, None))

    # ----- request handling (handler threads) -----

    def _record(self, method: str, path: str, route: str, status: int | None, size: int) -> None:
        with self._lock:
            self._log.append(LoggedRequest(method, path, route, status, size))
            self._per_route[route] += 1
            self._bytes_received += size

    def _handle(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[str, tuple[int, JsonDict] | None]:
        """(route, (status, JSON answer)), or (route, None) to drop the connection."""
        route, name_segment, query = _match(method, raw_path)
        with self._lock:
            latency = self._latency_s
        if latency > 0:
            time.sleep(latency)
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
                name = HTTPStatus(fault).phrase.replace(" ", "") if fault in _STATUSES else "ServerError"
                raise _HttpError(fault, name, f"Injected {fault} error (emulated)")
            if fault == "drop":
                if self.drop_after_processing:
                    with contextlib.suppress(_HttpError):
                        self._serve(route, name_segment, query, body)
                return route, None
            return route, (200, self._serve(route, name_segment, query, body))
        except _HttpError as error:
            return route, (error.status, {"message": error.message, "name": error.name})

    def _draw_fault(self, route: str) -> int | str | None:
        with self._lock:
            if route not in self._fault_routes:
                return None
            if self._fail_next:
                return self._fail_next.pop(0)
            if self._drop_next > 0:
                self._drop_next -= 1
                return "drop"
            if self._drop_rate > 0 and self._rng.random() < self._drop_rate:
                return "drop"
            if self._failure_rate > 0 and self._rng.random() < self._failure_rate:
                return 500
            return None

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
            if not _is_number(value):
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
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
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


def _reject_constant(constant: str) -> float:
    raise ValueError(f"{constant} is not JSON")


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null", parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise _HttpError(400, "InvalidBody", "The body is not valid JSON") from None


def _positive_int(text: str, what: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise _HttpError(400, "InvalidQuery", f"{what} must be a positive integer, got {text!r}")
    return number
