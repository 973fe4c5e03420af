"""The DigitalHub emulator answers the real ``digitalhub`` SDK like DigitalHub Core would.

Every test drives the real SDK over real HTTP to the emulator started by the ``digitalhub``
fixture (conftest.py); nothing is mocked. The request sequences asserted here are the SDK's
(digitalhub 0.15): they pin what a ``log_metric`` costs and what ``.metrics`` reads.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import digitalhub as dh
import pytest
from digitalhub.utils.exceptions import (
    BackendError,
    BadRequestError,
    ClientError,
    EntityAlreadyExistsError,
    UnauthorizedError,
)

from digitalhub_emulator import (
    ROUTE_AUTH_CHECK,
    ROUTE_ENTITY_CREATE,
    ROUTE_ENTITY_READ,
    ROUTE_ENTITY_UPDATE,
    ROUTE_METRIC_PUT,
    ROUTE_METRICS_READ,
    ROUTE_PROJECT_READ,
    RUN_KIND,
    DigitalHubEmulator,
    new_model,
    new_run,
    reset_sdk_state,
)

PROJECT = "proj"


def calls(emulator: DigitalHubEmulator) -> list[tuple[str, str]]:
    """(method, route) of every request so far, then forget them."""
    seen = [(entry.method, entry.route) for entry in emulator.requests_log]
    emulator.clear_log()
    return seen


def metric_puts(emulator: DigitalHubEmulator) -> list[tuple[str, Any]]:
    """(metric name, body) of every metric PUT so far."""
    return [(entry.path.rsplit("/", 1)[-1], entry.body) for entry in emulator.requests_on(ROUTE_METRIC_PUT)]


@pytest.fixture
def project(digitalhub: DigitalHubEmulator) -> Any:
    created = dh.get_or_create_project(PROJECT)
    digitalhub.clear_log()
    return created


@pytest.fixture
def run(digitalhub: DigitalHubEmulator, project: Any) -> Any:
    created = new_run(PROJECT)
    digitalhub.clear_log()
    return created


@pytest.fixture
def model(digitalhub: DigitalHubEmulator, project: Any) -> Any:
    created = new_model(PROJECT)
    digitalhub.clear_log()
    return created


# ----- configuration and entities -----


def test_the_sdk_is_configured_from_the_environment_for_this_emulator(digitalhub: DigitalHubEmulator) -> None:
    from digitalhub.stores.client import get_client
    from digitalhub.stores.client.common.config import get_client_config

    creds = get_client().get_credentials_and_config()  # GET /api/auth with the token
    assert creds["DHCORE_ENDPOINT"] == digitalhub.url
    assert creds["DHCORE_ACCESS_TOKEN"] == digitalhub.token
    assert get_client_config().config_ini_path.parent.name == "dhcore"  # not ~/.dhcore.ini
    assert not get_client_config().config_ini_path.exists()
    assert calls(digitalhub) == [("GET", ROUTE_AUTH_CHECK)]


def test_get_or_create_project_is_a_404_read_then_a_create(digitalhub: DigitalHubEmulator) -> None:
    created = dh.get_or_create_project(PROJECT)
    assert created.name == PROJECT
    assert [(e.method, e.path, e.status) for e in digitalhub.requests_log] == [
        ("GET", f"/api/v1/projects/{PROJECT}", 404),
        ("POST", "/api/v1/projects", 200),
    ]
    digitalhub.clear_log()
    again = dh.get_or_create_project(PROJECT)
    assert again.name == PROJECT
    assert calls(digitalhub) == [("GET", ROUTE_PROJECT_READ)]
    assert list(digitalhub.projects) == [PROJECT]
    with pytest.raises(EntityAlreadyExistsError):
        dh.new_project(PROJECT)


def test_a_run_and_a_model_are_real_sdk_entities_made_with_one_post(
    digitalhub: DigitalHubEmulator, project: Any
) -> None:
    from digitalhub.entities.model._base.entity import Model
    from digitalhub.entities.run._base.entity import Run

    run = new_run(PROJECT)
    assert type(run) is Run
    assert run.kind == RUN_KIND and run.project == PROJECT and run.status.state == "CREATED"
    model = new_model(PROJECT, "clf")
    assert isinstance(model, Model) and model.name == "clf"
    assert calls(digitalhub) == [("POST", ROUTE_ENTITY_CREATE), ("POST", ROUTE_ENTITY_CREATE)]
    assert {key[:2] for key in digitalhub.entities} == {(PROJECT, "run"), (PROJECT, "model")}

    # Read back as a job would: by id for a run, by name (latest version) for a model.
    assert dh.get_run(run.id, project=PROJECT).id == run.id
    assert dh.get_model("clf", project=PROJECT).id == model.id
    assert [(e.method, e.path) for e in digitalhub.requests_log] == [
        ("GET", f"/api/v1/-/{PROJECT}/runs/{run.id}"),
        ("GET", f"/api/v1/-/{PROJECT}/models?name=clf&page=0"),
    ]


def test_a_new_process_finds_the_project_through_the_backend(
    digitalhub: DigitalHubEmulator, run: Any
) -> None:
    reset_sdk_state()  # as in a fresh process: no project context cached
    fetched = dh.get_run(run.id, project=PROJECT)
    assert fetched.id == run.id
    assert calls(digitalhub) == [("GET", ROUTE_PROJECT_READ), ("GET", ROUTE_ENTITY_READ)]


# ----- log_metric on a run -----


def test_log_metric_reads_all_metrics_then_puts_the_whole_series(
    digitalhub: DigitalHubEmulator, run: Any
) -> None:
    run.log_metric("loss", [1.0, 2.0])
    # First metric of the entity: read, save the entity with status.metrics = {}, then the PUT.
    assert calls(digitalhub) == [
        ("GET", ROUTE_METRICS_READ),
        ("PUT", ROUTE_ENTITY_UPDATE),
        ("PUT", ROUTE_METRIC_PUT),
    ]
    run.log_metric("loss", [3.0])
    assert calls(digitalhub) == [("GET", ROUTE_METRICS_READ), ("PUT", ROUTE_METRIC_PUT)]
    run.log_metric("acc", 0.9, single_value=True)
    run.log_metric("acc", 0.95, single_value=True)  # ignored: a single value is kept...
    assert calls(digitalhub) == [("GET", ROUTE_METRICS_READ), ("PUT", ROUTE_METRIC_PUT)] * 2

    assert run.metrics == {"loss": [1.0, 2.0, 3.0], "acc": 0.9}
    assert calls(digitalhub) == [("GET", ROUTE_METRICS_READ)]  # .metrics is a GET, not a cache
    assert digitalhub.metrics_of(run) == {"loss": [1.0, 2.0, 3.0], "acc": 0.9}
    assert digitalhub.metrics == {(PROJECT, "run", run.id): {"loss": [1.0, 2.0, 3.0], "acc": 0.9}}

    # Each PUT carries the whole series so far, not the new values: (GET + PUT) per call,
    # bytes growing with the series.
    run.log_metric("loss", [4.0, 5.0])
    assert metric_puts(digitalhub) == [("loss", [1.0, 2.0, 3.0, 4.0, 5.0])]

    run.log_metric("acc", 0.95, single_value=True, overwrite=True)  # ...unless overwrite=True
    assert digitalhub.metrics_of(run)["acc"] == 0.95
    assert run.metrics == {"loss": [1.0, 2.0, 3.0, 4.0, 5.0], "acc": 0.95}


def test_every_put_body_is_the_accumulated_list(digitalhub: DigitalHubEmulator, run: Any) -> None:
    for step in range(4):
        run.log_metric("loss", float(step))  # a scalar without single_value appends
    assert metric_puts(digitalhub) == [
        ("loss", [0.0]),
        ("loss", [0.0, 1.0]),
        ("loss", [0.0, 1.0, 2.0]),
        ("loss", [0.0, 1.0, 2.0, 3.0]),
    ]
    assert digitalhub.requests_per_route[ROUTE_METRICS_READ] == 4
    assert digitalhub.requests_per_route[ROUTE_METRIC_PUT] == 4
    assert digitalhub.requests_per_route[ROUTE_ENTITY_UPDATE] == 1


def test_overwrite_replaces_a_list(digitalhub: DigitalHubEmulator, run: Any) -> None:
    run.log_metric("loss", [1.0, 2.0])
    run.log_metric("loss", [7.0], overwrite=True)
    assert digitalhub.metrics_of(run) == {"loss": [7.0]}


def test_log_metrics_reads_once_more_and_then_logs_each_metric(
    digitalhub: DigitalHubEmulator, run: Any
) -> None:
    run.log_metric("loss", [1.0])
    run.log_metric("acc", 0.5, single_value=True)
    digitalhub.clear_log()
    run.log_metrics({"loss": [2.0], "lr": 0.1, "acc": 0.6})
    assert (
        calls(digitalhub)
        == [("GET", ROUTE_METRICS_READ)]
        + [
            ("GET", ROUTE_METRICS_READ),
            ("PUT", ROUTE_METRIC_PUT),
        ]
        * 3
    )
    # A scalar for a new name is a single value; for an existing one it is appended, turning
    # the stored single value into a list.
    assert digitalhub.metrics_of(run) == {"loss": [1.0, 2.0], "acc": [0.5, 0.6], "lr": 0.1}


def test_a_list_onto_a_single_value_fails_in_the_sdk(digitalhub: DigitalHubEmulator, run: Any) -> None:
    run.log_metric("acc", 0.5, single_value=True)
    digitalhub.clear_log()
    with pytest.raises(AttributeError):  # the SDK calls .extend on the stored float
        run.log_metric("acc", [0.6])
    assert calls(digitalhub) == [("GET", ROUTE_METRICS_READ)]
    assert digitalhub.metrics_of(run) == {"acc": 0.5}


def test_numbers_are_stored_as_doubles_and_nan_is_refused(digitalhub: DigitalHubEmulator, run: Any) -> None:
    run.log_metric("epoch", [1, 2])
    assert digitalhub.metrics_of(run) == {"epoch": [1.0, 2.0]}
    assert run.metrics == {"epoch": [1.0, 2.0]}
    with pytest.raises(BadRequestError):  # json.dumps writes NaN, which is not JSON
        run.log_metric("loss", float("nan"))
    assert digitalhub.metrics_of(run) == {"epoch": [1.0, 2.0]}


# ----- .metrics -----


def test_metrics_of_a_fetched_entity_takes_two_gets(digitalhub: DigitalHubEmulator, run: Any) -> None:
    run.log_metric("loss", [1.0])
    fetched = dh.get_run(run.id, project=PROJECT)
    digitalhub.clear_log()
    assert fetched.metrics == {"loss": [1.0]}
    assert calls(digitalhub) == [("GET", ROUTE_METRICS_READ)] * 2  # "has metrics?", then the read
    assert fetched.metrics == {"loss": [1.0]}
    assert calls(digitalhub) == [("GET", ROUTE_METRICS_READ)]


def test_an_empty_read_is_cached_and_the_next_log_ignores_the_backend(
    digitalhub: DigitalHubEmulator, run: Any
) -> None:
    assert run.metrics == {}
    digitalhub.set_metric(PROJECT, "run", run.id, "loss", [9.0])  # another writer
    assert run.metrics == {}  # "no metrics" is remembered: no request
    assert calls(digitalhub) == [("GET", ROUTE_METRICS_READ)]
    run.log_metric("loss", [1.0])  # no read: the other writer's value is replaced
    assert calls(digitalhub) == [("PUT", ROUTE_ENTITY_UPDATE), ("PUT", ROUTE_METRIC_PUT)]
    assert digitalhub.metrics_of(run) == {"loss": [1.0]}


# ----- models -----


def test_a_model_logs_metrics_exactly_like_a_run(digitalhub: DigitalHubEmulator, model: Any) -> None:
    model.log_metric("f1", [0.5, 0.6])
    model.log_metric("f1", [0.7])
    model.log_metric("auc", 0.9, single_value=True)
    assert calls(digitalhub) == [
        ("GET", ROUTE_METRICS_READ),
        ("PUT", ROUTE_ENTITY_UPDATE),
        ("PUT", ROUTE_METRIC_PUT),
        ("GET", ROUTE_METRICS_READ),
        ("PUT", ROUTE_METRIC_PUT),
        ("GET", ROUTE_METRICS_READ),
        ("PUT", ROUTE_METRIC_PUT),
    ]
    assert model.metrics == {"f1": [0.5, 0.6, 0.7], "auc": 0.9}
    assert digitalhub.metrics == {(PROJECT, "model", model.id): {"f1": [0.5, 0.6, 0.7], "auc": 0.9}}
    assert dh.get_model("model", project=PROJECT).metrics == {"f1": [0.5, 0.6, 0.7], "auc": 0.9}


def test_metric_paths(digitalhub: DigitalHubEmulator, run: Any, model: Any) -> None:
    run.log_metric("loss", [1.0])
    model.log_metric("loss", [1.0])
    assert [(e.method, e.path) for e in digitalhub.requests_on(ROUTE_METRICS_READ, ROUTE_METRIC_PUT)] == [
        ("GET", f"/api/v1/-/{PROJECT}/runs/{run.id}/metrics"),
        ("PUT", f"/api/v1/-/{PROJECT}/runs/{run.id}/metrics/loss"),
        ("GET", f"/api/v1/-/{PROJECT}/models/{model.id}/metrics"),
        ("PUT", f"/api/v1/-/{PROJECT}/models/{model.id}/metrics/loss"),
    ]


# ----- faults -----


def test_a_failed_put_stores_nothing_and_a_retry_sends_the_delta_once(
    digitalhub: DigitalHubEmulator, run: Any
) -> None:
    run.log_metric("loss", [1.0])
    digitalhub.clear_log()
    digitalhub.fault_routes = {ROUTE_METRIC_PUT}
    digitalhub.fail_next(1, status=503)
    with pytest.raises(BackendError):  # no retry in the SDK (only a 401 is retried)
        run.log_metric("loss", [2.0])
    assert digitalhub.metrics_of(run) == {"loss": [1.0]}
    run.log_metric("loss", [2.0])  # read-modify-write on the server state: no duplicate
    assert digitalhub.metrics_of(run) == {"loss": [1.0, 2.0]}
    assert [(e.route, e.status) for e in digitalhub.requests_log] == [
        (ROUTE_METRICS_READ, 200),
        (ROUTE_METRIC_PUT, 503),
        (ROUTE_METRICS_READ, 200),
        (ROUTE_METRIC_PUT, 200),
    ]


def test_a_failed_read_fails_the_log_before_any_put(digitalhub: DigitalHubEmulator, run: Any) -> None:
    run.log_metric("loss", [1.0])
    digitalhub.clear_log()
    digitalhub.fail_next(2)  # fault_routes: every metric route
    with pytest.raises(BackendError):
        run.log_metric("loss", [2.0])
    with pytest.raises(BackendError):
        _ = run.metrics
    assert calls(digitalhub) == [("GET", ROUTE_METRICS_READ)] * 2
    assert digitalhub.metrics_of(run) == {"loss": [1.0]}


def test_a_dropped_connection_is_a_connection_error(digitalhub: DigitalHubEmulator, run: Any) -> None:
    digitalhub.drop_next(1)
    with pytest.raises(ConnectionError):
        run.log_metric("loss", [1.0])
    assert [e.status for e in digitalhub.requests_log] == [None]
    assert digitalhub.metrics_of(run) == {}


def test_a_wrong_token_is_unauthorized(
    digitalhub: DigitalHubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DHCORE_ACCESS_TOKEN", "not-the-token")
    reset_sdk_state()
    with pytest.raises(UnauthorizedError):
        dh.get_project(PROJECT)
    # An access token alone cannot be refreshed: the SDK checks it once, then gives up...
    assert calls(digitalhub) == [("GET", ROUTE_PROJECT_READ), ("GET", ROUTE_AUTH_CHECK)]
    with pytest.raises(ClientError, match="does not support refresh"):
        dh.get_project(PROJECT)  # ...and the next 401 of that client ends in a ClientError
    assert calls(digitalhub) == [("GET", ROUTE_PROJECT_READ)]
    assert digitalhub.projects == {}


def test_reset_sdk_state_moves_the_sdk_to_another_backend(
    digitalhub: DigitalHubEmulator, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DigitalHubEmulator() as other:
        monkeypatch.setenv("DHCORE_ENDPOINT", other.url)
        monkeypatch.setenv("DHCORE_ACCESS_TOKEN", other.token)
        reset_sdk_state()
        dh.get_or_create_project(PROJECT)
        assert other.request_count == 2
        assert digitalhub.request_count == 0


# ----- raw HTTP -----


def raw(emulator: DigitalHubEmulator, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {emulator.token}", "Content-Type": "application/json"}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        text = response.read()
        return response.status, json.loads(text) if text else None, response.getheader("X-Api-Level")
    finally:
        connection.close()


def test_raw_routes_and_errors(digitalhub: DigitalHubEmulator) -> None:
    digitalhub.add_project(PROJECT)
    base = f"/api/v1/-/{PROJECT}/runs"
    status, created, level = raw(digitalhub, "POST", base, {"id": "r1", "kind": RUN_KIND, "spec": {}})
    assert (status, created["id"], created["project"], level) == (200, "r1", PROJECT, "15")
    assert raw(digitalhub, "PUT", f"{base}/r1/metrics/loss", [1, 2.5])[:2] == (200, None)
    assert raw(digitalhub, "GET", f"{base}/r1/metrics")[:2] == (200, {"loss": [1.0, 2.5]})
    assert raw(digitalhub, "GET", f"{base}/r1/metrics/loss")[:2] == (200, [1.0, 2.5])
    assert raw(digitalhub, "GET", f"{base}/r1/metrics/acc")[0] == 404

    status, error, _ = raw(digitalhub, "PUT", f"{base}/nope/metrics/loss", [1.0])
    assert status == 404 and "No such EntityName(value=run)" in error["message"]
    assert raw(digitalhub, "POST", base, {"id": "r1", "kind": RUN_KIND})[1]["message"].startswith(
        "Duplicated entity"
    )
    for bad in ("x", [1, "2"], [[1.0]], True, {"value": 1}):
        assert raw(digitalhub, "PUT", f"{base}/r1/metrics/loss", bad)[0] == 400
    assert raw(digitalhub, "GET", f"/api/v1/-/{PROJECT}/functions/r1/metrics")[0] == 404  # no metrics API
    assert raw(digitalhub, "GET", "/api/v1/-/other/runs/r1")[0] == 404
    assert raw(digitalhub, "PATCH", f"{base}/r1")[0] == 404
    assert digitalhub.metrics == {(PROJECT, "run", "r1"): {"loss": [1.0, 2.5]}}
