"""The platform emulator answers the real craft_ai_sdk client like the platform would.

Every test drives the real ``craft_ai_sdk.CraftAiSdk`` over real HTTP to the emulator
started by the ``platform`` fixture (conftest.py); nothing is mocked.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from platform_emulator import (
    ROUTE_AUTH,
    ROUTE_LIST_GET,
    ROUTE_LIST_POST,
    ROUTE_SCALAR_GET,
    ROUTE_SCALAR_PUT,
    ROUTE_UNMATCHED,
    PlatformEmulator,
)

craft_ai_sdk = pytest.importorskip("craft_ai_sdk")
jwt = pytest.importorskip("jwt")

import requests  # noqa: E402  (a craft-ai-sdk dependency)
from craft_ai_sdk import CraftAiSdk  # noqa: E402
from craft_ai_sdk.exceptions import SdkException  # noqa: E402
from requests import PreparedRequest, Response  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

EXEC = "exec-test-1"
ROW_KEYS = {"name", "created_at", "execution_id", "deployment_name", "pipeline_name"}


@pytest.fixture
def sdk(platform: PlatformEmulator) -> CraftAiSdk:
    return CraftAiSdk()


def metric_paths(platform: PlatformEmulator) -> list[str]:
    return [entry.path for entry in platform.requests_log if entry.route != ROUTE_AUTH]


# ----- recording -----


def test_a_scalar_is_one_authenticated_put_and_reads_back(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    assert sdk.record_metric_value("accuracy", 0.91) is True
    assert sdk.record_metric_value("epochs", 3) is True
    assert platform.store.scalars == {(EXEC, "accuracy"): 0.91, (EXEC, "epochs"): 3}
    assert platform.refresh_count == 1
    assert [(e.method, e.path, e.status) for e in platform.requests_log] == [
        ("POST", "/api/v1/auth/refresh", 200),
        ("PUT", "/api/v1/metrics/single-value/accuracy", 200),
        ("PUT", "/api/v1/metrics/single-value/epochs", 200),
    ]
    rows = sdk.get_metrics(name="accuracy")
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == ROW_KEYS | {"value"}
    assert (row["name"], row["value"], row["execution_id"]) == ("accuracy", 0.91, EXEC)
    assert (row["pipeline_name"], row["deployment_name"]) == ("pipeline", None)
    created = datetime.fromisoformat(row["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs((datetime.now(created.tzinfo) - created).total_seconds()) < 60


def test_the_access_token_is_a_jwt_with_iat_and_exp(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    sdk.record_metric_value("x", 1.0)
    claims = jwt.decode(sdk._access_token, platform.signing_key, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3600
    sdk.record_metric_value("y", 2.0)
    assert platform.refresh_count == 1  # the token is reused while valid


def test_the_last_scalar_wins(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    for value in (0.1, 0.2, 0.3):
        sdk.record_metric_value("loss", value)
    assert platform.store.scalars == {(EXEC, "loss"): 0.3}
    assert [(r["name"], r["value"]) for r in sdk.get_metrics()] == [("loss", 0.3)]


def test_lists_append_one_float_or_a_list(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    sdk.record_list_metric_values("loss", 1.5)
    sdk.record_list_metric_values("loss", [1.25, 1])
    sdk.record_metric_value("loss", 9.0)  # a scalar and a list may share a name
    assert platform.store.lists == {(EXEC, "loss"): [1.5, 1.25, 1]}
    assert platform.store.scalars == {(EXEC, "loss"): 9.0}
    (row,) = sdk.get_list_metrics(name="loss")
    assert set(row) == ROW_KEYS | {"values"}
    assert row["values"] == [1.5, 1.25, 1]


def test_25000_values_arrive_in_three_posts_of_at_most_10000(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    values = [i / 7 for i in range(25_000)]
    sdk.record_list_metric_values("curve", values)
    posts = [e for e in platform.requests_log if e.route == ROUTE_LIST_POST]
    assert len(posts) == 3 and platform.requests_per_route[ROUTE_LIST_POST] == 3
    assert all(e.status == 200 and e.path == "/api/v1/metrics/list-values/curve" for e in posts)
    assert platform.store.lists[(EXEC, "curve")] == values
    assert platform.bytes_received == sum(e.bytes_received for e in platform.requests_log)


def test_a_list_holds_at_most_50000_values_and_a_crossing_post_is_refused_whole(
    platform: PlatformEmulator, sdk: CraftAiSdk, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk.record_list_metric_values("full", [0.5] * 50_000)
    assert len(platform.store.lists[(EXEC, "full")]) == 50_000
    with pytest.raises(SdkException) as caught:
        sdk.record_list_metric_values("full", 1.0)
    assert caught.value.status_code == 400
    assert caught.value.name == "MetricListLimitReached"
    assert "limit of 50000 values" in caught.value.message
    assert len(platform.store.lists[(EXEC, "full")]) == 50_000

    platform.add_list_values(EXEC, "almost", [0.0] * 49_995)
    with pytest.raises(SdkException, match="limit of 50000 values"):
        sdk.record_list_metric_values("almost", [1.0] * 10)
    assert len(platform.store.lists[(EXEC, "almost")]) == 49_995  # nothing of the 10 was kept
    sdk.record_list_metric_values("almost", [1.0] * 5)
    assert len(platform.store.lists[(EXEC, "almost")]) == 50_000
    # the limit is per (execution, name)
    sdk.record_list_metric_values("other", 2.0)
    monkeypatch.setenv("CRAFT_AI_EXECUTION_ID", "exec-2")
    sdk.record_list_metric_values("full", 2.0)
    assert platform.store.lists[("exec-2", "full")] == [2.0]


@pytest.mark.parametrize("value", ["0.5", None, True, [1.0], {"v": 1}])
def test_a_scalar_that_is_not_a_number_is_refused(
    platform: PlatformEmulator, sdk: CraftAiSdk, value: object
) -> None:
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", value)
    assert (caught.value.status_code, caught.value.name) == (400, "InvalidMetricValue")
    assert platform.store.scalars == {}


def test_a_list_with_one_non_number_is_refused_whole(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    with pytest.raises(SdkException) as caught:
        sdk.record_list_metric_values("acc", [1.0, 2.0, "3.0"])
    assert (caught.value.status_code, caught.value.name) == (400, "InvalidMetricValue")
    with pytest.raises(SdkException):
        sdk.record_list_metric_values("acc", [False])
    assert platform.store.lists == {}


def test_nan_is_not_json_and_is_refused(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    with pytest.raises(SdkException) as caught:  # requests refuses to encode it
        sdk.record_metric_value("acc", float("nan"))
    assert caught.value.name == "RequestError"
    # A client that sends it anyway is refused by the server.
    token = sdk._access_token  # refreshed before requests refused the body
    assert token is not None
    connection = http.client.HTTPConnection("127.0.0.1", platform.port, timeout=5)
    connection.request(
        "PUT",
        "/api/v1/metrics/single-value/acc",
        body=b'{"value": NaN, "execution_id": "exec-test-1"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["name"] == "InvalidBody"
    connection.close()
    assert platform.store.scalars == {}


def test_outside_an_execution_the_sdk_sends_nothing(
    platform: PlatformEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRAFT_AI_EXECUTION_ID")
    with pytest.warns(UserWarning, match="outside a pipeline"):
        assert CraftAiSdk().record_metric_value("acc", 1.0) is False
    assert platform.request_count == 0


# ----- reading back -----


def test_each_filter_selects_rows(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    platform.executions[EXEC] = ("train", "dep-a")
    platform.executions["exec-2"] = ("train", None)
    platform.executions["exec-3"] = ("eval", "dep-b")
    sdk.record_metric_value("acc", 0.9)
    sdk.record_list_metric_values("loss", [1.0, 0.5])
    platform.add_scalar("exec-2", "acc", 0.8)
    platform.add_scalar("exec-3", "f1", 0.7)
    platform.add_list_values("exec-3", "loss", [3.0])

    def pairs(rows: list[dict[str, object]]) -> set[tuple[object, object]]:
        return {(r["execution_id"], r["name"]) for r in rows}

    assert pairs(sdk.get_metrics()) == {(EXEC, "acc"), ("exec-2", "acc"), ("exec-3", "f1")}
    assert pairs(sdk.get_metrics(name="acc")) == {(EXEC, "acc"), ("exec-2", "acc")}
    assert pairs(sdk.get_metrics(pipeline_name="train")) == {(EXEC, "acc"), ("exec-2", "acc")}
    assert pairs(sdk.get_metrics(deployment_name="dep-b")) == {("exec-3", "f1")}
    assert pairs(sdk.get_metrics(execution_id="exec-2")) == {("exec-2", "acc")}
    assert pairs(sdk.get_metrics(name="acc", execution_id=EXEC)) == {(EXEC, "acc")}
    assert sdk.get_metrics(name="nothing") == []
    assert pairs(sdk.get_list_metrics(pipeline_name="eval")) == {("exec-3", "loss")}
    assert pairs(sdk.get_list_metrics(deployment_name="dep-a")) == {(EXEC, "loss")}
    assert pairs(sdk.get_list_metrics(execution_id=EXEC, name="loss")) == {(EXEC, "loss")}
    (row,) = sdk.get_list_metrics(execution_id="exec-3")
    assert (row["pipeline_name"], row["deployment_name"], row["values"]) == ("eval", "dep-b", [3.0])
    with pytest.raises(SdkException) as caught:
        sdk.get_metrics(pipeline_name="train", execution_id=EXEC)
    assert (caught.value.status_code, caught.value.name) == (400, "InvalidFilters")


def test_listings_are_paged_by_5000(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    for i in range(12_001):
        platform.add_scalar(f"exec-{i % 3}", f"m{i}", float(i))
    for i in range(5_001):
        platform.add_list_values(EXEC, f"l{i}", [float(i)])
    scalars = sdk.get_metrics()
    assert [r["value"] for r in scalars] == [float(i) for i in range(12_001)]
    assert platform.requests_per_route[ROUTE_SCALAR_GET] == 3
    gets = [e.path for e in platform.requests_log if e.route == ROUTE_SCALAR_GET]
    assert all("items_per_page=5000" in path for path in gets)
    assert [path.rsplit("page=", 1)[1] for path in gets] == ["1", "2", "3"]
    lists = sdk.get_list_metrics()
    assert [r["values"] for r in lists] == [[float(i)] for i in range(5_001)]
    assert platform.requests_per_route[ROUTE_LIST_GET] == 2
    assert len(sdk.get_metrics(execution_id="exec-1")) == 4_000


# ----- faults -----


def test_an_injected_500_surfaces_as_sdk_exception_and_stores_nothing(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    platform.failure_rate = 1.0
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.5)
    assert caught.value.status_code == 500
    assert platform.store.scalars == {}
    platform.reset()
    sdk.record_metric_value("acc", 0.5)
    assert platform.store.scalars == {(EXEC, "acc"): 0.5}
    platform.fail_next(2, status=502)
    for _ in range(2):
        with pytest.raises(SdkException) as caught:
            sdk.record_list_metric_values("l", 1.0)
        assert caught.value.status_code == 502
    sdk.record_list_metric_values("l", 2.0)
    assert platform.store.lists == {(EXEC, "l"): [2.0]}


def test_failures_are_deterministic_for_a_seed(platform: PlatformEmulator) -> None:
    def outcomes(emulator: PlatformEmulator) -> list[bool]:
        client = CraftAiSdk(sdk_token=emulator.token, environment_url=emulator.url, control_url=emulator.url)
        emulator.failure_rate = 0.5
        result = []
        for i in range(30):
            try:
                client.record_metric_value(f"m{i}", 1.0)
                result.append(True)
            except SdkException as error:
                assert error.status_code == 500
                result.append(False)
        return result

    with PlatformEmulator(seed=7) as first, PlatformEmulator(seed=7) as second:
        assert outcomes(first) == outcomes(second)
        assert 5 < outcomes(first).count(False) < 25  # the rng goes on; still about half


def test_an_outage_answers_503_to_everything_then_ends(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    platform.outage(0.3)
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.5)  # the token refresh itself gets the 503
    assert caught.value.status_code == 503
    assert platform.requests_log[-1].route == ROUTE_AUTH
    assert platform.in_outage
    time.sleep(0.35)
    sdk.record_metric_value("acc", 0.5)
    assert platform.store.scalars == {(EXEC, "acc"): 0.5}


def test_a_refusing_outage_closes_connections_then_listens_on_the_same_port(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    sdk.record_metric_value("acc", 0.1)  # a pooled keep-alive connection exists now
    url = platform.url
    platform.outage_refuse(0.3)
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.2)
    assert caught.value.name == "RequestError"
    platform.wait_listening()
    assert platform.url == url
    sdk.record_metric_value("acc", 0.3)
    assert platform.store.scalars == {(EXEC, "acc"): 0.3}
    assert [e.status for e in platform.requests_log if e.route == ROUTE_SCALAR_PUT] == [200, 200]


def test_a_dropped_connection_is_a_request_error(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    sdk.record_metric_value("warm", 0.0)
    platform.drop_rate = 1.0
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.5)
    assert caught.value.name == "RequestError"
    assert (EXEC, "acc") not in platform.store.scalars
    assert platform.requests_log[-1].status is None
    platform.drop_after_processing = True  # the "response lost" case: stored, then dropped
    with pytest.raises(SdkException, match="Unable to perform the request"):
        sdk.record_list_metric_values("l", [1.0, 2.0])
    assert platform.store.lists == {(EXEC, "l"): [1.0, 2.0]}
    platform.reset()
    platform.drop_next(1)
    with pytest.raises(SdkException):
        sdk.record_metric_value("acc", 0.7)
    sdk.record_metric_value("acc", 0.8)
    assert platform.store.scalars[(EXEC, "acc")] == 0.8


def test_a_wrong_token_is_refused(platform: PlatformEmulator) -> None:
    client = CraftAiSdk(sdk_token="not-the-token")
    with pytest.raises(SdkException) as caught:
        client.record_metric_value("acc", 0.5)
    assert caught.value.status_code == 401
    assert platform.refresh_count == 0
    assert platform.requests_per_route[ROUTE_SCALAR_PUT] == 0


def test_a_revoked_access_token_gets_401_then_the_sdk_refreshes(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    sdk.record_metric_value("acc", 0.1)
    platform.revoke_access_tokens()
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.2)
    assert caught.value.status_code == 401
    sdk.record_metric_value("acc", 0.3)  # the SDK cleared its token after the 401
    assert platform.refresh_count == 2
    assert platform.store.scalars == {(EXEC, "acc"): 0.3}


def test_latency_is_applied_to_every_request(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    platform.latency_s = 0.15
    started = time.perf_counter()
    sdk.record_metric_value("acc", 0.5)  # refresh + put
    assert time.perf_counter() - started >= 0.3
    platform.latency_s = 0
    started = time.perf_counter()
    sdk.record_metric_value("acc", 0.5)
    assert time.perf_counter() - started < 0.15


# ----- names in the URL path -----


@pytest.mark.parametrize("name", ["a/b", "..", "../acc", "a/../../b", "%2E%2E", "a?b", "a/"])
def test_a_name_that_is_not_one_path_segment_stores_nothing(
    platform: PlatformEmulator, sdk: CraftAiSdk, name: str
) -> None:
    for record in (sdk.record_metric_value, sdk.record_list_metric_values):
        with pytest.raises(SdkException) as caught:
            record(name, 1.0)
        assert caught.value.status_code == 404
    assert platform.store.scalars == {} and platform.store.lists == {}
    assert {e.route for e in platform.requests_log} == {ROUTE_AUTH, ROUTE_UNMATCHED}


def test_names_are_percent_decoded_and_the_client_normalises_dot_segments(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    sdk.record_metric_value("train loss", 1.0)
    sdk.record_metric_value("précision", 2.0)
    sdk.record_metric_value("x/../y", 3.0)  # requests removes dot segments: it lands on "y"
    sdk.record_metric_value("a#b", 4.0)  # requests drops the fragment: it lands on "a"
    assert metric_paths(platform) == [
        "/api/v1/metrics/single-value/train%20loss",
        "/api/v1/metrics/single-value/pr%C3%A9cision",
        "/api/v1/metrics/single-value/y",
        "/api/v1/metrics/single-value/a",
    ]
    assert set(platform.store.scalars) == {(EXEC, n) for n in ("train loss", "précision", "y", "a")}


def test_the_token_never_appears_in_a_path(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    sdk.record_metric_value("acc", 0.5)
    sdk.record_list_metric_values("loss", [1.0])
    sdk.get_metrics(name="acc")
    sdk.get_list_metrics(execution_id=EXEC)
    paths = [e.path for e in platform.requests_log]
    assert len(paths) == 5
    secrets = (platform.token, sdk._access_token)
    assert not any(secret in path for secret in secrets for path in paths)


def test_stop_closes_the_port(platform: PlatformEmulator) -> None:
    with PlatformEmulator() as emulator:
        client = CraftAiSdk(sdk_token=emulator.token, environment_url=emulator.url, control_url=emulator.url)
        client.record_metric_value("acc", 1.0)
    with pytest.raises(SdkException) as caught:
        client.record_metric_value("acc", 2.0)
    assert caught.value.name == "RequestError"
    assert emulator.store.scalars == {(EXEC, "acc"): 1.0}


# ----- failure modes: after storing, garbled answers, stalls -----


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request of a session a default timeout (the SDK sets none)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().send(request, **kwargs)


def with_timeout(sdk: CraftAiSdk, seconds: float) -> CraftAiSdk:
    sdk._session.mount("http://", _TimeoutAdapter(seconds))
    return sdk


def raw_put(platform: PlatformEmulator, sdk: CraftAiSdk, name: str, value: float) -> http.client.HTTPResponse:
    """A scalar PUT sent with http.client, to see the headers of the answer (the SDK hides them)."""
    if sdk._access_token is None:
        sdk.get_metrics(name="-")  # a token
    connection = http.client.HTTPConnection("127.0.0.1", platform.port, timeout=5)
    connection.request(
        "PUT",
        f"/api/v1/metrics/single-value/{name}",
        body=json.dumps({"value": value, "execution_id": EXEC}).encode(),
        headers={"Authorization": f"Bearer {sdk._access_token}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def write_statuses(platform: PlatformEmulator) -> list[int | None]:
    return [e.status for e in platform.requests_log if e.route in (ROUTE_SCALAR_PUT, ROUTE_LIST_POST)]


def test_a_gateway_page_after_storing_is_a_502_for_the_sdk_and_the_values_are_kept(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    platform.fail_next(1, status=502, after_store=True, body="html")
    with pytest.raises(SdkException) as caught:
        sdk.record_list_metric_values("loss", [1.0, 2.0])
    assert caught.value.status_code == 502
    assert "invalid response content" in caught.value.message
    assert "<h1>502 Bad Gateway</h1>" in caught.value.message
    assert platform.store.lists == {(EXEC, "loss"): [1.0, 2.0]}  # stored: a retry would duplicate
    sdk.record_list_metric_values("loss", 3.0)  # one failure only
    assert platform.store.lists == {(EXEC, "loss"): [1.0, 2.0, 3.0]}
    assert write_statuses(platform) == [502, 200]

    platform.fail_next(1, status=504, after_store=True)  # the platform's JSON error, after storing
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.5)
    assert (caught.value.status_code, caught.value.name) == (504, "GatewayTimeout")
    assert platform.store.scalars == {(EXEC, "acc"): 0.5}


def test_failures_before_storing_can_have_an_html_or_empty_body(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    platform.fail_next(1, status=502, body="html")
    platform.fail_next(1, status=503, body="empty")
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.1)
    assert caught.value.status_code == 502 and "502 Bad Gateway" in caught.value.message
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.2)
    assert caught.value.status_code == 503 and "invalid response content" in caught.value.message
    assert platform.store.scalars == {}
    assert write_statuses(platform) == [502, 503]

    platform.fail_next(1, status=502, body="html")
    platform.fail_next(1, status=503, body="empty")
    html = raw_put(platform, sdk, "acc", 0.3)
    assert (html.status, html.getheader("Content-Type")) == (502, "text/html")
    empty = raw_put(platform, sdk, "acc", 0.4)
    assert (empty.status, empty.getheader("Content-Length")) == (503, "0")
    assert empty.getheader("Content-Type") is None
    with pytest.raises(ValueError, match="body must be one of"):
        platform.fail_next(1, body="xml")


def test_a_429_says_retry_after_and_a_401_makes_the_sdk_refresh(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    platform.fail_next(1, status=429)
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.1)
    assert (caught.value.status_code, caught.value.name) == (429, "TooManyRequests")
    platform.fail_next(1, status=429)
    answer = raw_put(platform, sdk, "acc", 0.2)
    assert (answer.status, answer.getheader("Retry-After")) == (429, "1")
    assert platform.store.scalars == {}

    assert platform.refresh_count == 1
    platform.fail_next(1, status=401)
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.3)
    assert caught.value.status_code == 401
    sdk.record_metric_value("acc", 0.4)  # the SDK dropped its token: it refreshes first
    assert platform.refresh_count == 2
    assert platform.store.scalars == {(EXEC, "acc"): 0.4}


def test_a_garbled_200_is_stored_and_the_sdk_raises_with_status_200(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    platform.garble_next(2)
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.5)
    assert caught.value.status_code == 200
    assert "Unable to decode response data" in caught.value.message
    with pytest.raises(SdkException) as caught:
        sdk.record_list_metric_values("loss", [1.0, 2.0])
    assert caught.value.status_code == 200
    assert platform.store.scalars == {(EXEC, "acc"): 0.5}
    assert platform.store.lists == {(EXEC, "loss"): [1.0, 2.0]}
    platform.garble_next(1)
    answer = raw_put(platform, sdk, "acc", 0.6)
    assert (answer.status, answer.getheader("Content-Type")) == (200, "text/html")
    assert sdk.record_metric_value("acc", 0.7) is True
    assert write_statuses(platform) == [200, 200, 200, 200]


def test_a_stall_after_storing_is_a_client_timeout_and_the_values_are_kept(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    with_timeout(sdk, 0.3)
    sdk.record_metric_value("warm", 0.0)
    platform.stall_after_store_next(1, seconds=30)
    started = time.perf_counter()
    with pytest.raises(SdkException) as caught:
        sdk.record_list_metric_values("loss", [1.0, 2.0])
    assert time.perf_counter() - started < 2
    assert (caught.value.name, caught.value.status_code) == ("RequestError", None)
    assert isinstance(caught.value.__cause__, requests.exceptions.ReadTimeout)
    assert platform.store.lists == {(EXEC, "loss"): [1.0, 2.0]}  # stored before the stall
    assert platform.requests_log[-1].status == 200  # logged as stored, with its coming answer
    sdk.record_list_metric_values("loss", 3.0)  # the next write is answered at once
    assert platform.store.lists == {(EXEC, "loss"): [1.0, 2.0, 3.0]}

    platform.stall_after_store_next(1, seconds=30)
    with pytest.raises(SdkException):
        sdk.record_metric_value("acc", 0.5)
    handlers = [t for t in threading.enumerate() if "process_request" in t.name]
    assert handlers  # the stalled one among them
    started = time.perf_counter()
    platform.stop()  # ends the stall: it does not wait 30 s
    for thread in handlers:
        thread.join(timeout=1)
    assert time.perf_counter() - started < 1.5
    assert not any(thread.is_alive() for thread in handlers)
    assert platform.store.scalars == {(EXEC, "warm"): 0.0, (EXEC, "acc"): 0.5}


def test_a_short_stall_is_answered_late(platform: PlatformEmulator, sdk: CraftAiSdk) -> None:
    sdk.record_metric_value("warm", 0.0)
    platform.stall_after_store_next(1, seconds=0.3)
    started = time.perf_counter()
    assert sdk.record_metric_value("acc", 0.5) is True  # no client timeout: it waits
    assert time.perf_counter() - started >= 0.3


def test_after_store_faults_wait_for_a_write_and_listings_are_answered(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    platform.add_scalar(EXEC, "acc", 0.1)
    platform.fail_next(1, status=502, after_store=True)
    platform.garble_next(1)
    platform.stall_after_store_next(1, seconds=0.2)
    platform.fail_next(1, status=500)  # queued behind: a listing does not jump the queue
    assert [r["value"] for r in sdk.get_metrics()] == [0.1]
    assert sdk.get_list_metrics() == []
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.2)
    assert caught.value.status_code == 502
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.3)
    assert caught.value.status_code == 200
    assert sdk.get_metrics(name="acc")[0]["value"] == 0.3
    assert sdk.record_metric_value("acc", 0.4) is True  # the stall: late but answered
    with pytest.raises(SdkException) as caught:  # a failure before storing hits a listing too
        sdk.get_metrics()
    assert caught.value.status_code == 500
    assert [(e.route, e.status) for e in platform.requests_log if e.route != ROUTE_AUTH] == [
        (ROUTE_SCALAR_GET, 200),
        (ROUTE_LIST_GET, 200),
        (ROUTE_SCALAR_PUT, 502),
        (ROUTE_SCALAR_PUT, 200),
        (ROUTE_SCALAR_GET, 200),
        (ROUTE_SCALAR_PUT, 200),
        (ROUTE_SCALAR_GET, 500),
    ]


def test_a_refused_write_stores_nothing_whatever_the_fault(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    platform.fail_next(1, status=502, after_store=True)
    platform.garble_next(1)
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", "0.5")
    assert caught.value.status_code == 502  # the gateway's answer replaces the platform's 400
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", "0.5")
    assert caught.value.status_code == 400  # garbled, the refusal keeps its status
    assert platform.store.scalars == {}


def test_reset_clears_every_queued_fault_and_each_answer_is_logged(
    platform: PlatformEmulator, sdk: CraftAiSdk
) -> None:
    sdk.record_metric_value("acc", 0.0)
    platform.drop_next(1)
    platform.fail_next(1, status=503)
    with pytest.raises(SdkException):
        sdk.record_metric_value("acc", 0.1)  # fail_next first
    with pytest.raises(SdkException) as caught:
        sdk.record_metric_value("acc", 0.2)  # then the drop
    assert caught.value.name == "RequestError"
    platform.fail_next(3, status=502, after_store=True)
    platform.garble_next(2)
    platform.stall_after_store_next(2, seconds=30)
    platform.drop_next(2)
    platform.failure_rate = 1.0
    platform.reset()
    for value in (0.3, 0.4):
        assert sdk.record_metric_value("acc", value) is True
    assert platform.store.scalars == {(EXEC, "acc"): 0.4}
    assert write_statuses(platform) == [200, 503, None, 200, 200]
