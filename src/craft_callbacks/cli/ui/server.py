"""``craft-callbacks ui``: the dashboard's HTTP server, on the standard library.

Why the standard library (``http.server.ThreadingHTTPServer``) and no web
framework: the server answers GETs with read-only JSON and a handful of static
files, for one person on their own machine. Each request is short (a few
milliseconds of SQLite and JSON), a thread per connection is plenty, and nothing
needs async, websockets (the page polls for new points), sessions or templates.
A dependency would add install weight and an attack surface to a package that
runs on training clusters, for none of that.

Routes (docs/ui-api.md is the contract):

* ``/`` the runs page, ``/compare?runs=A,B`` the compare page, ``/run/<id>`` one
  run: ``static/index.html``, ``static/compare.html`` and ``static/run.html``
  (``index.html`` for all three when only it exists);
* ``/static/<path>``: a file under the package's ``static`` folder, and never
  one outside it;
* ``/api/runs``, ``/api/runs/<id>``, ``/api/series``: JSON (:mod:`.api`).

Safety: it binds 127.0.0.1 unless told otherwise and then answers only requests
addressed to a loopback name (a web page elsewhere cannot reach it through DNS
rebinding); it opens the store read-only (:class:`ReadOnlyStore`); errors are
JSON with one line of text, never a traceback; pages get a Content-Security-Policy
that runs only the package's own scripts.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from craft_callbacks.cli.ui import api
from craft_callbacks.exceptions import CraftCallbacksError
from craft_callbacks.sinks.local_store import ReadOnlyStore

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8765
PAGES: Final = {"runs": "index.html", "compare": "compare.html", "run": "run.html"}
LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
# Scripts only from the package's static folder: no inline script, no on* attribute, no CDN.
PAGE_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE, VERSION
}
_PLACEHOLDER: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>craft-callbacks</title></head>
<body><h1>craft-callbacks dashboard</h1>
<p>The dashboard's pages are not installed with this package. The JSON API answers:
<a href="/api/runs">/api/runs</a>.</p></body></html>
"""

log = logging.getLogger("craft_callbacks.ui")  # the name users filter on, kept through the move


class DashboardServer(ThreadingHTTPServer):
    """The HTTP server of one store; :meth:`start` serves in a thread, :meth:`stop` ends it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store: ReadOnlyStore, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.store = store
        self.static_dir = STATIC_DIR
        self.loopback_only = host in LOOPBACK_NAMES or host.startswith("127.")
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), DashboardHandler)
        except OSError as error:
            raise CraftCallbacksError(
                f"cannot listen on {host}:{port}: {error.strerror or error} "
                "(choose another port with --port, or --port 0 for a free one)"
            ) from error
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse DNS lookup of the host (slow where DNS is unreachable)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host.decode() if isinstance(host, bytes) else str(host)
        self.server_port = int(port)

    @property
    def url(self) -> str:
        """The dashboard's address, ``http://HOST:PORT/``."""
        host, port = self.server_address[:2]
        shown = host.decode() if isinstance(host, bytes) else str(host)
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"

    def start(self) -> str:
        """Serve in a background thread; returns the URL."""
        self._thread = threading.Thread(target=self.serve_forever, name="craft-callbacks-ui", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    store_path: str | os.PathLike[str] | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> tuple[DashboardServer, str]:
    """A server for the store at ``store_path`` (the default store if None), bound and ready.

    It does not serve yet: call ``serve_forever()`` (the command does) or
    ``start()`` (in a thread, as the tests do). ``port`` 0 takes a free port.
    A missing or unreadable store raises :class:`LocalStoreError`.
    """
    server = DashboardServer(ReadOnlyStore(store_path), host, port)
    return server, server.url


class DashboardHandler(BaseHTTPRequestHandler):
    """One request: a page, a static file or an API answer; GET and HEAD only."""

    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "craft-callbacks-ui"
    sys_version = ""
    timeout = 60  # an idle kept-alive connection frees its thread

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _refuse_method(self) -> None:
        self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{self.command} is not allowed: read-only"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _answer(self, body: bool) -> None:
        self._send_body = body
        try:
            self._route()
        except api.ApiError as error:
            self._json(error.status, {"error": error.message})
        except CraftCallbacksError as error:  # the store went away, or was damaged, while serving
            log.warning("craft-callbacks ui: %s", error)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": _line(str(error))})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:
            log.exception("craft-callbacks ui: %s %s failed", self.command, self.path)
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": _line(f"internal error: {type(error).__name__}: {error}")},
            )

    def _route(self) -> None:
        if not self._host_allowed():
            raise api.ApiError(403, "this dashboard answers only at 127.0.0.1 or localhost")
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        store = self.server.store
        if path == "/api/runs":
            self._json(HTTPStatus.OK, api.runs(store))
        elif path.startswith("/api/runs/"):
            reference = _segment(path[len("/api/runs/") :])
            if reference is None:
                raise api.ApiError(404, f"no such API route: {_line(path)[:200]}")
            self._json(HTTPStatus.OK, api.run(store, reference))
        elif path == "/api/series":
            self._json(HTTPStatus.OK, api.series(store, query))
        elif path == "/api" or path.startswith("/api/"):
            raise api.ApiError(404, f"no such API route: {_line(path)[:200]}")
        elif path in ("/", "/index.html"):
            self._page("runs")
        elif path in ("/compare", "/compare/"):
            self._page("compare")
        elif path.startswith("/run/"):
            if _segment(path[len("/run/") :].rstrip("/")) is None:
                raise api.ApiError(404, "not found")
            self._page("run")
        elif path.startswith("/static/"):
            self._static(path[len("/static/") :])
        elif path == "/favicon.ico":
            self._static("favicon.ico")
        else:
            raise api.ApiError(404, "not found")

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host")
        if host is None:
            return True
        name = host.strip().lower()
        if name.startswith("["):
            name = name[1 : name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        return name in LOOPBACK_NAMES or name.startswith("127.")

    def _page(self, page: str) -> None:
        for name in (PAGES[page], PAGES["runs"]):
            file = self.server.static_dir / name
            if file.is_file():
                self._send(HTTPStatus.OK, file.read_bytes(), _TYPES[".html"], cache="no-cache")
                return
        self._send(HTTPStatus.OK, _PLACEHOLDER.encode(), _TYPES[".html"], cache="no-cache")

    def _static(self, relative: str) -> None:
        file = static_file(self.server.static_dir, relative)
        if file is None:
            raise api.ApiError(404, "not found")
        kind = _TYPES.get(file.suffix.lower()) or mimetypes.guess_type(file.name)[0]
        self._send(HTTPStatus.OK, file.read_bytes(), kind or "application/octet-stream", cache="no-cache")

    def _json(self, status: int, data: Any) -> None:
        self._send(status, api.to_json(data).encode("utf-8"), _TYPES[".json"], cache="no-store")

    def _send(self, status: int, payload: bytes, kind: str, cache: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", PAGE_POLICY)
        self.end_headers()
        if getattr(self, "_send_body", True):
            self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the base class raises itself (a malformed request line, an unknown method): JSON too."""
        self.close_connection = True
        try:
            text = message or HTTPStatus(code).phrase
        except ValueError:
            text = str(code)
        payload = json.dumps({"error": _line(text)}).encode("utf-8")
        self.send_response(code, text)
        self.send_header("Content-Type", _TYPES[".json"])
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a page polls every few seconds. Failures are logged where they happen."""


def static_file(root: Path, relative: str) -> Path | None:
    """The file ``relative`` (URL-encoded) names under ``root``, or None if it is not a file inside it."""
    try:
        name = unquote(relative, errors="strict")
    except UnicodeDecodeError:
        return None
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    if any(part in ("", ".", "..") or part.startswith(".") for part in name.split("/")):
        return None
    base = root.resolve()
    try:
        file = (base / name).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not file.is_relative_to(base) or not file.is_file():
        return None
    return file


def _segment(text: str) -> str | None:
    """One URL path segment, decoded; None when it is empty, ``.`` or ``..``, or holds a slash."""
    try:
        name = unquote(text, errors="strict")
    except UnicodeDecodeError:
        return None
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        return None
    return name


def _line(text: str) -> str:
    return " ".join(text.split())
