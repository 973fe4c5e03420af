"""A small emulator of the DigitalHub Core HTTP API the ``digitalhub`` SDK uses for metrics.

The real SDK (PyPI ``digitalhub``) talks to it over real HTTP: point ``DHCORE_ENDPOINT`` at
``emulator.url`` and ``DHCORE_ACCESS_TOKEN`` at ``emulator.token`` (``digitalhub_backend``
below does that, and resets the SDK's global caches). Standard library only; the SDK is
imported lazily, by the helpers that need it, so conftest.py imports this module without it.

Routes (``{type}`` is a plural entity type such as ``runs`` or ``models``):

* ``GET  /api/auth``                                   token check -> 200 {} or 401
* ``POST /api/v1/projects``, ``GET /api/v1/projects``  create / list (a Spring ``Page``)
* ``GET|PUT|DELETE /api/v1/projects/{name}``
* ``POST /api/v1/-/{project}/{type}``                  create a context entity -> the entity
* ``GET  /api/v1/-/{project}/{type}``                  list, latest version of each name
  unless ``versions=all``; filters ``name``/``kind``/``user``/``state`` and any other key as
  a ``spec`` field (``function``, ``task``); ``page`` (0-based), ``size``; ``sort`` ignored
  (newest first) -> a Spring ``Page`` {"content": [...], "totalPages": N, ...}
* ``GET|PUT|DELETE /api/v1/-/{project}/{type}/{id}``
* ``GET  /api/v1/-/{project}/{runs|models}/{id}/metrics``        -> {name: number or [numbers]}
* ``GET  /api/v1/-/{project}/{runs|models}/{id}/metrics/{name}`` -> number or [numbers]
* ``PUT  /api/v1/-/{project}/{runs|models}/{id}/metrics/{name}`` body: number or [numbers];
  replaces the stored value of that metric; answers 200 with an empty body (Core's
  ``void storeMetrics``)

Anything else is 404. Like Core: a missing entity is 404 with "No such EntityName(value=run)."
in the message (the text the SDK maps to ``EntityNotExistsError``), a create with an id or
project name already used is 400 "Duplicated entity" (``EntityAlreadyExistsError``), metric
values are stored as doubles (``3`` reads back as ``3.0``), and every answer carries
``X-Api-Level`` (``api_level``, None to leave it out).

Choices where the real Core does more or is not documented:

* Entities are stored as sent, plus ``metadata.created``/``updated`` and ``user``; no
  lifecycle runs (a created run is not built or started, its state stays as sent), no
  validation of spec or kind, no relationships, no files, no embedded project lists.
* ``status.metrics`` is never filled in from the metrics store: metrics live apart, behind
  the metrics routes (the SDK reads them there while ``status.metrics`` is empty).
* A metric body that is not a number or a flat list of numbers (``true``, a string,
  ``NaN``, nested lists) is 400. A metric read by name that was never written is 404.
* Injected faults (``fail_next``, ``failure_rate``, ``drop_next``, ``latency_s``) are
  answered before anything is stored, and apply to ``fault_routes`` (the metric routes
  unless set).
"""

from __future__ import annotations

import copy
import json
import math
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from loopback_server import NO_BODY, ROUTE_UNMATCHED, LoopbackEmulator, is_number, now_iso, strict_json

if TYPE_CHECKING:
    import pytest

JsonDict = dict[str, Any]
MetricValue = float | list[float]

ROUTE_AUTH_CHECK = "auth_check"
ROUTE_PROJECT_CREATE = "project_create"
ROUTE_PROJECT_LIST = "project_list"
ROUTE_PROJECT_READ = "project_read"
ROUTE_PROJECT_UPDATE = "project_update"
ROUTE_PROJECT_DELETE = "project_delete"
ROUTE_ENTITY_CREATE = "entity_create"
ROUTE_ENTITY_LIST = "entity_list"
ROUTE_ENTITY_READ = "entity_read"
ROUTE_ENTITY_UPDATE = "entity_update"
ROUTE_ENTITY_DELETE = "entity_delete"
ROUTE_METRICS_READ = "metrics_read"  # GET .../metrics: every metric of an entity
ROUTE_METRIC_READ = "metric_read"  # GET .../metrics/{name}
ROUTE_METRIC_PUT = "metric_put"  # PUT .../metrics/{name}
METRIC_ROUTES = frozenset({ROUTE_METRICS_READ, ROUTE_METRIC_READ, ROUTE_METRIC_PUT})

METRICS_ENTITY_TYPES = frozenset({"run", "model"})  # the Core entities with a metrics API

# A run kind registered by register_run_kind(): a plain digitalhub Run, no runtime package.
RUN_KIND = "emulator+job:run"
TASK_KIND = "emulator+job"
FUNCTION_KIND = "emulator"

_API = "/api/v1"
_API_CONTEXT = "/api/v1/-"

_ENV_CLEARED = (
    "DHCORE_ENDPOINT",
    "DHCORE_ACCESS_TOKEN",
    "DHCORE_REFRESH_TOKEN",
    "DHCORE_PERSONAL_ACCESS_TOKEN",
    "DHCORE_USER",
    "DHCORE_PASSWORD",
    "DHCORE_ISSUER",
    "DHCORE_CLIENT_ID",
    "DHCORE_EXPIRES_IN",
    "DHCORE_ID_TOKEN",
    "OAUTH2_TOKEN_ENDPOINT",
    "DH_NAME",  # the credentials profile
    "DH_CONFIG",  # the .dhcore.ini path
    "RUN_ID",  # a Context built while it is set reads that run
    "PROJECT_NAME",
)


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw it. ``status`` is None when no response was sent."""

    method: str
    path: str  # the raw request target, query string included
    route: str  # one of the ROUTE_* names
    status: int | None
    bytes_received: int  # request body bytes
    body: Any  # the request body parsed as JSON; None when empty or not JSON


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _not_found(entity_type: str) -> _HttpError:
    # Core: NoSuchEntityException(EntityName.X.toString()), EntityName a Lombok @ToString enum.
    return _HttpError(404, f"No such EntityName(value={entity_type}).")


class DigitalHubEmulator(LoopbackEmulator[LoggedRequest]):
    """An in-process HTTP server that answers like DigitalHub Core for projects, entities
    and metrics. Thread-safe; see the module docstring for routes and choices.

    State (read with the accessors, which return copies): ``projects`` {name: dict},
    ``entities`` {(project, type, id): dict}, ``metrics`` {(project, type, id): {name: value}}.
    """

    def __init__(self, token: str | None = None, *, api_level: int | None = 15, seed: int = 0) -> None:
        super().__init__(seed=seed, fault_routes=METRIC_ROUTES)
        self.token: str = token if token is not None else "dh-" + secrets.token_urlsafe(24)
        self.api_level = api_level
        self._projects: dict[str, JsonDict] = {}
        self._entities: dict[tuple[str, str, str], JsonDict] = {}
        self._metrics: dict[tuple[str, str, str], dict[str, MetricValue]] = {}
        self._drop_after_storing_next = 0

    # ----- fault injection -----

    def drop_after_storing_next(self, count: int = 1) -> None:
        """Store the next ``count`` requests on ``fault_routes``, then close their connection unanswered."""
        with self._lock:
            self._drop_after_storing_next += count

    def reset_faults(self) -> None:
        self._reset_faults()
        with self._lock:
            self._drop_after_storing_next = 0

    def _draw_other_fault(self) -> str | None:
        if self._drop_after_storing_next > 0:
            self._drop_after_storing_next -= 1
            return "store-then-drop"
        return None

    # ----- observation -----

    def requests_on(self, *routes: str) -> list[LoggedRequest]:
        """The logged requests on any of ``routes``, in order."""
        with self._lock:
            return [entry for entry in self._log if entry.route in routes]

    @property
    def projects(self) -> dict[str, JsonDict]:
        with self._lock:
            return copy.deepcopy(self._projects)

    @property
    def entities(self) -> dict[tuple[str, str, str], JsonDict]:
        with self._lock:
            return copy.deepcopy(self._entities)

    @property
    def metrics(self) -> dict[tuple[str, str, str], dict[str, MetricValue]]:
        """{(project, entity type, entity id): {metric name: value}}, entity type singular."""
        with self._lock:
            return copy.deepcopy(self._metrics)

    def metrics_of(self, entity: Any) -> dict[str, MetricValue]:
        """The stored metrics of an SDK entity (anything with project, ENTITY_TYPE and id)."""
        with self._lock:
            return copy.deepcopy(self._metrics.get((entity.project, entity.ENTITY_TYPE, entity.id), {}))

    # ----- direct access (no HTTP) -----

    def add_project(self, name: str) -> JsonDict:
        obj = {"id": name, "name": name, "kind": "project", "metadata": {"project": name, "name": name}}
        obj["spec"] = {"context": "./", "functions": [], "artifacts": [], "workflows": []}
        obj["spec"].update(dataitems=[], models=[], config={})
        obj["status"] = {"state": "CREATED"}
        with self._lock:
            return copy.deepcopy(self._create_project(obj))

    def delete_entity(self, entity: Any) -> None:
        """Remove an SDK entity and its metrics, as if someone deleted it in the meantime."""
        key = (entity.project, entity.ENTITY_TYPE, entity.id)
        with self._lock:
            self._entities.pop(key, None)
            self._metrics.pop(key, None)

    def set_metric(self, project: str, entity_type: str, entity_id: str, name: str, value: Any) -> None:
        with self._lock:
            self._metrics.setdefault((project, entity_type, entity_id), {})[name] = _metric_value(value)

    # ----- request handling (handler threads) -----

    def _log_entry(
        self, method: str, path: str, route: str, status: int | None, body: bytes
    ) -> LoggedRequest:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        return LoggedRequest(method, path, route, status, len(body), parsed)

    def _extra_headers(self) -> Iterable[tuple[str, str]]:
        return () if self.api_level is None else (("X-Api-Level", str(self.api_level)),)

    def _error_answer(self, status: int, message: str) -> tuple[int, JsonDict]:
        phrase = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
        return status, {"status": status, "error": phrase, "message": message}

    def _handle(self, method: str, raw: str, headers: Any, body: bytes) -> tuple[str, Any]:
        route, args, query = _match(method, raw)
        try:
            if route == ROUTE_UNMATCHED:
                raise _HttpError(404, f"No route for {method} {raw}")
            if headers.get("Authorization", "") != f"Bearer {self.token}":
                raise _HttpError(401, "Unauthorized")
            fault = self._draw_fault(route)
            if fault == "drop":
                return route, None
            if fault == "store-then-drop":
                with self._lock:
                    self._serve(route, args, query, body)
                return route, None
            if fault is not None:
                raise _HttpError(int(fault), f"Injected {fault} error (emulated)")
            with self._lock:
                return route, (200, self._serve(route, args, query, body))
        except _HttpError as error:
            return route, self._error_answer(error.status, error.message)

    def _serve(self, route: str, args: list[str], query: JsonDict, body: bytes) -> Any:
        if route == ROUTE_AUTH_CHECK:
            return {}
        if route == ROUTE_PROJECT_CREATE:
            return self._create_project(_json_object(body))
        if route == ROUTE_PROJECT_LIST:
            return _page(sorted(self._projects.values(), key=_created, reverse=True), query)
        if route in (ROUTE_PROJECT_READ, ROUTE_PROJECT_UPDATE, ROUTE_PROJECT_DELETE):
            (name,) = args
            if name not in self._projects:
                raise _not_found("project")
            if route == ROUTE_PROJECT_READ:
                return self._projects[name]
            if route == ROUTE_PROJECT_DELETE:
                del self._projects[name]
                for key in [key for key in self._entities if key[0] == name]:
                    del self._entities[key]
                    self._metrics.pop(key, None)
                return True
            return self._update(self._projects, name, _json_object(body), name)
        project, plural = args[0], args[1]
        entity_type = plural[:-1]
        if project not in self._projects:
            raise _not_found("project")
        if route == ROUTE_ENTITY_CREATE:
            return self._create_entity(project, entity_type, _json_object(body))
        if route == ROUTE_ENTITY_LIST:
            return self._list_entities(project, entity_type, query)
        key = (project, entity_type, args[2])
        if key not in self._entities:
            raise _not_found(entity_type)
        if route == ROUTE_ENTITY_READ:
            return self._entities[key]
        if route == ROUTE_ENTITY_UPDATE:
            return self._update(self._entities, key, _json_object(body), args[2])
        if route == ROUTE_ENTITY_DELETE:
            self._metrics.pop(key, None)
            return self._entities.pop(key)
        stored = self._metrics.setdefault(key, {})
        if route == ROUTE_METRICS_READ:
            return stored
        name = args[3]
        if route == ROUTE_METRIC_READ:
            if name not in stored:
                raise _HttpError(404, f"No such metric {name!r}.")
            return stored[name]
        stored[name] = _metric_value(_json_body(body))  # ROUTE_METRIC_PUT: replace
        return NO_BODY

    def _create_project(self, obj: JsonDict) -> JsonDict:
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise _HttpError(400, "missing name")
        if name in self._projects:
            raise _HttpError(400, "Duplicated entity EntityName(value=project).")
        obj = _stamped(obj)
        obj["id"] = name
        self._projects[name] = obj
        return obj

    def _create_entity(self, project: str, entity_type: str, obj: JsonDict) -> JsonDict:
        entity_id = obj.get("id") or secrets.token_hex(16)
        key = (project, entity_type, entity_id)
        if key in self._entities:
            raise _HttpError(400, f"Duplicated entity EntityName(value={entity_type}).")
        obj = _stamped(obj)
        obj.update(id=entity_id, project=project)
        if obj.get("name") is None:
            obj["name"] = entity_id
        self._entities[key] = obj
        return obj

    def _list_entities(self, project: str, entity_type: str, query: JsonDict) -> JsonDict:
        rows = [obj for (p, t, _), obj in self._entities.items() if p == project and t == entity_type]
        for field, wanted in query.items():  # name, kind, user at the top; function, task... in spec
            if field in ("page", "size", "sort", "versions"):
                continue
            if field == "state":
                rows = [obj for obj in rows if (obj.get("status") or {}).get("state") == wanted]
            elif field in ("name", "kind", "user"):
                rows = [obj for obj in rows if obj.get(field) == wanted]
            else:
                rows = [obj for obj in rows if (obj.get("spec") or {}).get(field) == wanted]
        rows.sort(key=_created, reverse=True)
        if query.get("versions") != "all":  # the latest version of each name
            seen: set[str] = set()
            rows = [obj for obj in rows if not (obj.get("name") in seen or seen.add(obj.get("name")))]
        return _page(rows, query)

    @staticmethod
    def _update(table: dict[Any, JsonDict], key: Any, obj: JsonDict, entity_id: str) -> JsonDict:
        old = table[key]
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = metadata
        metadata["created"] = old.get("metadata", {}).get("created")
        metadata["updated"] = now_iso()
        obj["id"] = entity_id
        obj.setdefault("user", old.get("user"))
        table[key] = obj
        return obj


def _stamped(obj: JsonDict) -> JsonDict:
    obj = copy.deepcopy(obj)
    metadata = obj.get("metadata") or {}
    now = now_iso()
    metadata.setdefault("created", now)
    metadata["updated"] = now
    obj["metadata"] = metadata
    if obj.get("user") is None:
        obj["user"] = "emulator-user"
    return obj


def _created(obj: JsonDict) -> str:
    return str((obj.get("metadata") or {}).get("created") or "")


def _page(rows: list[JsonDict], query: JsonDict) -> JsonDict:
    page = _int(query.get("page", "0"), "page", minimum=0)
    size = _int(query.get("size", "20"), "size", minimum=1)
    total_pages = max(1, math.ceil(len(rows) / size))
    content = rows[page * size : (page + 1) * size]
    return {
        "content": content,
        "totalElements": len(rows),
        "totalPages": total_pages,
        "number": page,
        "size": size,
        "numberOfElements": len(content),
        "first": page == 0,
        "last": page >= total_pages - 1,
        "empty": not content,
    }


def _int(text: str, what: str, minimum: int) -> int:
    try:
        number = int(text)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise _HttpError(400, f"{what} must be an integer >= {minimum}, got {text!r}")
    return number


def _metric_value(value: Any) -> MetricValue:
    """Core's NumberOrNumberArray: a number or a flat list of numbers, kept as doubles."""
    if is_number(value):
        return float(value)
    if isinstance(value, list) and all(is_number(v) for v in value):
        return [float(v) for v in value]
    raise _HttpError(400, f"A metric value must be a number or a list of numbers, got {value!r}")


def _json_body(body: bytes) -> Any:
    try:
        return strict_json(body)
    except ValueError:
        raise _HttpError(400, "The body is not valid JSON") from None


def _json_object(body: bytes) -> JsonDict:
    obj = _json_body(body)
    if not isinstance(obj, dict):
        raise _HttpError(400, "The body must be a JSON object")
    return obj


def _match(method: str, raw: str) -> tuple[str, list[str], JsonDict]:
    """(route, decoded path arguments, {query key: last value}) for a raw request target."""
    path, _, query_text = raw.partition("?")
    query = {key: values[-1] for key, values in parse_qs(query_text, keep_blank_values=True).items()}
    if path == "/api/auth" and method == "GET":
        return ROUTE_AUTH_CHECK, [], query
    segments = path.split("/")
    if "#" in raw or any(segment in ("", ".", "..") for segment in segments[1:]):
        return ROUTE_UNMATCHED, [], query
    args = [unquote(segment) for segment in segments]
    if path == f"{_API}/projects":
        route = {"POST": ROUTE_PROJECT_CREATE, "GET": ROUTE_PROJECT_LIST}.get(method, ROUTE_UNMATCHED)
        return route, [], query
    if path.startswith(f"{_API}/projects/") and len(segments) == 5:
        routes = {"GET": ROUTE_PROJECT_READ, "PUT": ROUTE_PROJECT_UPDATE, "DELETE": ROUTE_PROJECT_DELETE}
        return routes.get(method, ROUTE_UNMATCHED), args[4:], query
    if not path.startswith(f"{_API_CONTEXT}/") or len(segments) < 6 or not segments[5].endswith("s"):
        return ROUTE_UNMATCHED, [], query
    tail = args[4:]  # project, plural type, [id, [metrics, [name]]]
    if len(tail) == 2:
        route = {"POST": ROUTE_ENTITY_CREATE, "GET": ROUTE_ENTITY_LIST}.get(method, ROUTE_UNMATCHED)
        return route, tail, query
    if len(tail) == 3:
        routes = {"GET": ROUTE_ENTITY_READ, "PUT": ROUTE_ENTITY_UPDATE, "DELETE": ROUTE_ENTITY_DELETE}
        return routes.get(method, ROUTE_UNMATCHED), tail, query
    if tail[3] != "metrics" or tail[1][:-1] not in METRICS_ENTITY_TYPES:
        return ROUTE_UNMATCHED, [], query
    if len(tail) == 4 and method == "GET":
        return ROUTE_METRICS_READ, tail, query
    if len(tail) == 5:
        route = {"GET": ROUTE_METRIC_READ, "PUT": ROUTE_METRIC_PUT}.get(method, ROUTE_UNMATCHED)
        return route, [*tail[:3], tail[4]], query
    return ROUTE_UNMATCHED, [], query


# ----- SDK side (imports digitalhub lazily) -----


def reset_sdk_state() -> None:
    """Forget the SDK's process-wide caches: the client config (which fixes the .dhcore.ini
    path from DH_CONFIG when built), the singleton client (endpoint and credentials read
    when built) and the per-project contexts (each holds the client of its first Project)."""
    from digitalhub.context.builder import context_builder
    from digitalhub.stores.client.common.config import reset_client_config

    reset_client_config()  # also resets the singleton client
    context_builder._instances.clear()


def register_run_kind() -> str:
    """Teach the SDK the run kind ``emulator+job:run`` (a plain ``digitalhub`` Run with the
    base RunSpec/RunStatus) so runs can be created without a runtime package. Idempotent.
    Returns the kind."""
    from digitalhub.entities._base.runtime_entity.builder import RuntimeEntityBuilder
    from digitalhub.entities._commons.utils import map_actions
    from digitalhub.entities.run._base.builder import RunBuilder
    from digitalhub.entities.run._base.entity import Run
    from digitalhub.entities.run._base.spec import RunSpec, RunValidator
    from digitalhub.entities.run._base.status import RunStatus
    from digitalhub.factory.registry import registry

    class EmulatorRunBuilder(RunBuilder, RuntimeEntityBuilder):
        ENTITY_CLASS = Run
        ENTITY_SPEC_CLASS = RunSpec
        ENTITY_SPEC_VALIDATOR = RunValidator
        ENTITY_STATUS_CLASS = RunStatus
        ENTITY_KIND = RUN_KIND
        EXECUTABLE_KIND = FUNCTION_KIND
        TASKS_KINDS = map_actions([(TASK_KIND, "job")])
        RUN_KINDS = map_actions([(RUN_KIND, "job")])

    registry._ensure_entities_registered()
    if RUN_KIND not in registry._entity_builders:
        registry.add_entity_builder(RUN_KIND, EmulatorRunBuilder)
    return RUN_KIND


def new_run(project: str, *, local_execution: bool = True) -> Any:
    """A real ``digitalhub`` Run created through the SDK (``dh.new_run``) in ``project``
    (which must exist). One POST .../runs."""
    import digitalhub as dh

    register_run_kind()
    task = f"{TASK_KIND}://{project}/fn:{secrets.token_hex(8)}"
    return dh.new_run(project=project, kind=RUN_KIND, task=task, local_execution=local_execution)


def new_model(project: str, name: str = "model") -> Any:
    """A real ``digitalhub`` Model (kind ``model``) created through ``dh.new_model``. One POST
    .../models; nothing is uploaded (the path is only recorded)."""
    import digitalhub as dh

    return dh.new_model(project=project, name=name, kind="model", path=f"s3://emulator/{project}/{name}/")


def digitalhub_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DigitalHubEmulator]:
    """Generator for a pytest fixture: a running emulator, and the SDK configured for it
    through the environment only (DHCORE_ENDPOINT, DHCORE_ACCESS_TOKEN, DH_CONFIG pointing to a
    missing file in ``tmp_path`` so no ~/.dhcore.ini is read or written), with the SDK's
    global caches reset before and after. Skips the test when ``digitalhub`` is missing."""

    import digitalhub  # noqa: F401  (the test extra installs it: a missing package fails, never skips)

    saved = {name: os.environ.get(name) for name in _ENV_CLEARED}
    for name in _ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    with DigitalHubEmulator() as emulator:
        monkeypatch.setenv("DHCORE_ENDPOINT", emulator.url)
        monkeypatch.setenv("DHCORE_ACCESS_TOKEN", emulator.token)
        monkeypatch.setenv("DH_CONFIG", str(tmp_path / "dhcore" / ".dhcore.ini"))
        reset_sdk_state()
        try:
            yield emulator
        finally:
            # Rebuild the SDK's config from the environment the test started with (monkeypatch
            # restores it only later), so no later test inherits this emulator's settings.
            for name, value in saved.items():
                if value is None:
                    monkeypatch.delenv(name, raising=False)
                else:
                    monkeypatch.setenv(name, value)
            reset_sdk_state()
