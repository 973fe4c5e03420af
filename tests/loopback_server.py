"""The plumbing the HTTP emulators of tests/ share (platform_emulator, digitalhub_emulator).

``LoopbackEmulator`` serves HTTP/1.1 (keep-alive) on 127.0.0.1 from a daemon thread and
gives each request to its subclass: ``_handle(method, raw_path, headers, body)`` returns
(route, (status, JSON payload or NO_BODY)), (route, ``Answer``) for anything else (a raw
body of another content type, extra headers, a stall before answering), or (route, None)
to close the connection unanswered. Every request is logged (``_log_entry`` builds the
entry, with the status it is answered, None when unanswered) before it is answered, so a
client that got its answer finds its request logged. It also holds the fault-injection
state both emulators use (``fail_next``, ``drop_next``, ``failure_rate``, ``latency_s``,
``fault_routes``) and the request log with per-route counters. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

ROUTE_UNMATCHED = "unmatched"
NO_BODY: Any = object()  # a payload meaning: an answer with no body at all

EntryT = TypeVar("EntryT")  # what the request log holds
EmulatorT = TypeVar("EmulatorT", bound="LoopbackEmulator[Any]")


@dataclass(frozen=True)
class Answer:
    """A response beyond (status, JSON payload): ``body`` sent as is with ``content_type``
    (no Content-Type header when None) and extra ``headers``, after ``delay_s`` seconds (a
    stall: cut short, the connection closed unanswered, when the listener closes)."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_number(value: object) -> bool:
    """int or float (not bool), finite: what both platforms accept as a metric value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _reject_constant(constant: str) -> float:
    raise ValueError(f"{constant} is not JSON")


def strict_json(body: bytes) -> Any:
    """The body parsed as JSON (empty: None); ValueError on invalid JSON, NaN or Infinity."""
    try:
        return json.loads(body or b"null", parse_constant=_reject_constant)
    except UnicodeDecodeError as error:
        raise ValueError("not UTF-8") from error


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: LoopbackEmulator[Any]) -> None:
        self.emulator = emulator
        self.closing = threading.Event()  # set when this listener closes: ends stalls at once
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, which can hang without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.emulator._track(request, True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.emulator._track(request, False)
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

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            emulator._record(self.command, self.path, ROUTE_UNMATCHED, 411, b"")
            self._reply(emulator._as_answer(emulator._error_answer(411, "Content-Length required")))
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        latency = emulator.latency_s
        if latency > 0:
            time.sleep(latency)
        route, result = emulator._handle(self.command, self.path, self.headers, body)
        answer = None if result is None else emulator._as_answer(result)
        emulator._record(self.command, self.path, route, None if answer is None else answer.status, body)
        if answer is not None and answer.delay_s > 0 and self.server.closing.wait(answer.delay_s):
            answer = None  # the listener closed during the stall
        if answer is None:  # close the connection without sending anything
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._reply(answer)

    def _reply(self, answer: Answer) -> None:
        self.send_response(answer.status)
        if answer.content_type is not None:
            self.send_header("Content-Type", answer.content_type)
        for name, value in (*self.server.emulator._extra_headers(), *answer.headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        # One write for headers and body: split writes meet Nagle + delayed ACK (40 ms each).
        self._headers_buffer.append(b"\r\n" + answer.body)
        self.flush_headers()


class LoopbackEmulator(Generic[EntryT]):
    """An in-process HTTP server on 127.0.0.1 answering through ``_handle``; subclasses
    implement ``_handle``, ``_log_entry`` and ``_error_answer``. Thread-safe."""

    content_type = "application/json"

    def __init__(self, *, seed: int, fault_routes: frozenset[str]) -> None:
        self._lock = threading.RLock()  # state; taken by handler threads, never held across I/O
        self._lifecycle = threading.Lock()  # start/stop/listen; never taken by handler threads
        self._rng = random.Random(seed)
        self._default_fault_routes = self._fault_routes = fault_routes
        self._fail_next: list[Any] = []  # scripted faults in order: statuses, or a subclass's
        self._drop_next = 0
        self._failure_rate = 0.0
        self._latency_s = 0.0
        self._log: list[EntryT] = []
        self._per_route: Counter[str] = Counter()
        self._bytes_received = 0
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._started = False
        self._restart_timer: threading.Timer | None = None

    # ----- hooks -----

    def _handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[str, Any]:
        """(route, (status, payload or NO_BODY)), or (route, None) to drop the connection."""
        raise NotImplementedError

    def _log_entry(self, method: str, path: str, route: str, status: int | None, body: bytes) -> EntryT:
        raise NotImplementedError

    def _error_answer(self, status: int, message: str) -> tuple[int, Any]:
        raise NotImplementedError

    def _extra_headers(self) -> Iterable[tuple[str, str]]:
        return ()

    def _draw_other_fault(self) -> int | str | None:
        """Called under the lock by ``_draw_fault`` after fail_next and drop_next."""
        return None

    def _fault_applies(self, fault: Any, route: str) -> bool:
        """Whether the scripted fault first in line (a ``fail_next`` status, or what a
        subclass queued) applies to a request on ``route`` (one of ``fault_routes``); when
        not, the request goes on to the other faults and the scripted one keeps its place."""
        return True

    def _as_answer(self, result: tuple[int, Any] | Answer) -> Answer:
        """An ``Answer`` for what ``_handle`` returned: (status, JSON payload or NO_BODY) as is."""
        if isinstance(result, Answer):
            return result
        status, payload = result
        if payload is NO_BODY:
            return Answer(status)
        return Answer(status, json.dumps(payload).encode(), self.content_type)

    # ----- lifecycle -----

    def start(self: EmulatorT) -> EmulatorT:
        with self._lifecycle:
            if not self._started:
                self._listen(0)
                self._started = True
        return self

    def stop(self) -> None:
        with self._lifecycle:
            self._started = False
            self._cancel_restart()
            self._close_listener()

    def __enter__(self: EmulatorT) -> EmulatorT:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL, no trailing slash (the platform's environment and control URL,
        DigitalHub's DHCORE_ENDPOINT)."""
        return f"http://127.0.0.1:{self._port}"

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
            server.closing.set()
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # keep-alive connections die with the server
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _cancel_restart(self) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None

    # ----- fault injection -----

    @property
    def fault_routes(self) -> frozenset[str]:
        """Routes that the injected faults apply to (the metric routes unless set)."""
        with self._lock:
            return self._fault_routes

    @fault_routes.setter
    def fault_routes(self, routes: Iterable[str]) -> None:
        with self._lock:
            self._fault_routes = frozenset(routes)

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` requests on ``fault_routes`` with ``status`` (before storing)."""
        with self._lock:
            self._fail_next.extend([status] * count)

    def drop_next(self, count: int = 1) -> None:
        """Close the connection of the next ``count`` requests on ``fault_routes`` unanswered."""
        with self._lock:
            self._drop_next += count

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
        """Seconds slept before answering every request."""
        with self._lock:
            return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        with self._lock:
            self._latency_s = float(value)

    def _reset_faults(self) -> None:
        with self._lock:
            self._fail_next.clear()
            self._drop_next = 0
            self._failure_rate = self._latency_s = 0.0
            self._fault_routes = self._default_fault_routes

    def _draw_fault(self, route: str) -> Any:
        """None, a status to answer, "drop", a scripted fault a subclass queued in
        ``_fail_next`` or another fault named by ``_draw_other_fault``."""
        with self._lock:
            if route not in self._fault_routes:
                return None
            if self._fail_next and self._fault_applies(self._fail_next[0], route):
                return self._fail_next.pop(0)
            if self._drop_next > 0:
                self._drop_next -= 1
                return "drop"
            other = self._draw_other_fault()
            if other is not None:
                return other
            if self._failure_rate > 0 and self._rng.random() < self._failure_rate:
                return 500
            return None

    # ----- observation -----

    @property
    def requests_log(self) -> list[EntryT]:
        """Snapshot of every request received, in order of completion."""
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

    def clear_log(self) -> None:
        """Empty requests_log and zero the counters (not the stored state)."""
        with self._lock:
            self._log.clear()
            self._per_route.clear()
            self._bytes_received = 0

    def _record(self, method: str, path: str, route: str, status: int | None, body: bytes) -> None:
        entry = self._log_entry(method, path, route, status, body)
        with self._lock:
            self._log.append(entry)
            self._per_route[route] += 1
            self._bytes_received += len(body)
