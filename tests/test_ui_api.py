"""The dashboard's server and JSON API, over real HTTP, on a store filled by real recordings.

The server is the real one (``craft_callbacks.cli.ui.server.serve``) on 127.0.0.1 and a free port;
the store is written by ``MetricRecorder`` into a ``LocalStore``; requests go out with
``http.client``, which sends the path exactly as written (``..`` and all). Also here: the
downsampling functions, the report (``craft-callbacks report``) and ``craft-callbacks ui`` as a
user starts and stops it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from craft_callbacks import LocalStore, LocalStoreError, MetricRecorder
from craft_callbacks.cli import main as cli_main
from craft_callbacks.cli.ui import api
from craft_callbacks.cli.ui.downsample import in_order, min_max, smooth, step_range
from craft_callbacks.cli.ui.report import DATA_BLOCK_ID, embed_json, render
from craft_callbacks.cli.ui.server import serve, static_file

IMG = "<img src=x onerror=alert(1)>"
CLOSE_SCRIPT = "</script><script>alert(1)</script>"
SPIKE_STEP = 2500
LONG = 5000


def _loss(step: int) -> float:
    return 50.0 if step == SPIKE_STEP else 1.0 / (step + 1)


def _record(path: Path, name: str, steps: int, hyperparameters: dict[str, Any], acc: bool) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = LocalStore(path)
        recorder = MetricRecorder(store, pipeline_name=name, hyperparameters=hyperparameters)
        for step in range(steps):
            values = {"loss": _loss(step)}
            if acc and step % 10 == 0:
                values["acc"] = step / steps
            recorder.log_step(values, step=step)
        recorder.log_final({"best": 0.5})
        recorder.close()
        store.close()
    return recorder.execution_id


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three runs: a long one (a spike in ``loss``, hyperparameters that are markup), a short one
    whose pipeline name is markup, and one still running with a list recorded without steps."""
    path = tmp_path_factory.mktemp("ui") / "metrics.db"
    long = _record(path, "train", LONG, {"lr": 0.1, "note": IMG, "evil": CLOSE_SCRIPT}, acc=True)
    short = _record(path, "<b>bold</b>", 300, {"lr": 0.01, "note": IMG}, acc=False)
    store = LocalStore(path)
    running = store.start_execution(pipeline_name="live", hyperparameters={"lr": 0.5})
    store.write(running, lists=[("loss", [0, 1, 2], [3.0, 2.0, 1.0]), ("tokens", [None] * 4, [5, 6, 7, 8])])
    store.close()
    assert not Path(f"{path}-wal").exists()
    return {"path": path, "long": long, "short": short, "running": running}


@pytest.fixture(scope="module")
def url(recorded: dict[str, Any]) -> Iterator[str]:
    server, address = serve(recorded["path"], port=0)
    server.start()
    try:
        yield address
    finally:
        server.stop()


class Answer:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json; charset=utf-8", self.headers
        return json.loads(self.body)


def request(url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    """One request with ``path`` sent exactly as written (http.client normalises nothing)."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


# -- /api/runs and /api/runs/<id> ------------------------------------------------------------------


def test_runs_lists_every_run_with_scalars_counts_and_hyperparameters(
    url: str, recorded: dict[str, Any]
) -> None:
    answer = request(url, "/api/runs")
    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    data = answer.json()
    assert data["store"] == str(recorded["path"])
    runs = {run["id"]: run for run in data["runs"]}
    assert [run["id"] for run in data["runs"]] == [recorded["long"], recorded["short"], recorded["running"]]
    long = runs[recorded["long"]]
    assert long["pipeline"] == "train" and long["deployment"] is None and long["status"] == "success"
    assert long["lists"] == {"acc": LONG // 10, "loss": LONG}
    assert long["scalars"]["best"] == 0.5 and long["scalars"]["loss"] == _loss(LONG - 1)
    assert long["hyperparameters"] == {"lr": 0.1, "note": IMG, "evil": CLOSE_SCRIPT}
    assert isinstance(long["duration_s"], float) and long["duration_s"] >= 0
    assert long["created_at"].endswith("Z") and long["ended_at"].endswith("Z")
    live = runs[recorded["running"]]
    assert live["status"] == "running" and live["ended_at"] is None
    assert live["duration_s"] >= 0 and live["lists"] == {"loss": 3, "tokens": 4}
    assert runs[recorded["short"]]["pipeline"] == "<b>bold</b>"


def test_one_run_has_its_lists_summarised(url: str, recorded: dict[str, Any]) -> None:
    run = request(url, f"/api/runs/{recorded['long']}").json()
    assert run["id"] == recorded["long"] and run["lists"] == {"acc": LONG // 10, "loss": LONG}
    summaries = {summary["name"]: summary for summary in run["list_summaries"]}
    assert summaries["loss"] == {
        "name": "loss",
        "count": LONG,
        "first": 1.0,
        "last": _loss(LONG - 1),
        "min": _loss(LONG - 1),
        "max": 50.0,
        "first_step": 0,
        "last_step": LONG - 1,
    }
    assert summaries["acc"]["count"] == LONG // 10 and summaries["acc"]["last_step"] == LONG - 10
    tokens = request(url, f"/api/runs/{recorded['running']}").json()["list_summaries"][1]
    assert tokens == {
        "name": "tokens",
        "count": 4,
        "first": 5,
        "last": 8,
        "min": 5,
        "max": 8,
        "first_step": 0,
        "last_step": 3,
    }
    assert request(url, "/api/runs/latest").json()["id"] == recorded["running"]
    assert request(url, f"/api/runs/{recorded['short'][:-2]}").json()["id"] == recorded["short"]


@pytest.mark.parametrize(
    "path",
    ["/api/runs/no-such-run", "/api/series?runs=no-such-run&metric=loss", "/api/runs/%3Cimg%3E"],
)
def test_an_unknown_run_is_a_404_in_json(url: str, path: str) -> None:
    answer = request(url, path)
    assert answer.status == 404
    error = answer.json()["error"]
    assert error.startswith("no run '") and "Traceback" not in error and "\n" not in error


# -- /api/series -------------------------------------------------------------------------------------


def test_a_long_series_is_downsampled_keeping_its_shape(url: str, recorded: dict[str, Any]) -> None:
    ids = f"{recorded['long']},{recorded['short']}"
    data = request(url, f"/api/series?runs={ids}&metric=loss&points=50").json()
    assert data["metric"] == "loss"
    long, short = data["series"]
    assert long["run"] == recorded["long"] and long["downsampled"] is True
    assert long["total"] == LONG and long["last_step"] == LONG - 1
    assert len(long["steps"]) == len(long["values"]) <= 100
    assert (long["steps"][0], long["values"][0]) == (0, 1.0)
    assert (long["steps"][-1], long["values"][-1]) == (LONG - 1, _loss(LONG - 1))
    assert long["steps"] == sorted(long["steps"])
    assert 50.0 in long["values"] and long["values"][long["steps"].index(SPIKE_STEP)] == 50.0
    assert all(value == _loss(step) for step, value in zip(long["steps"], long["values"], strict=True))
    assert short["downsampled"] is True and short["total"] == 300 and len(short["values"]) <= 100
    whole = request(url, f"/api/series?runs={ids}&metric=loss&points=150").json()["series"][1]
    assert whole["downsampled"] is False and whole["steps"] == list(range(300))


def test_the_default_is_1000_points_per_run(url: str, recorded: dict[str, Any]) -> None:
    series = request(url, f"/api/series?runs={recorded['long']}&metric=loss").json()["series"][0]
    assert 1000 < len(series["steps"]) <= 2000 and series["downsampled"] is True


def test_a_step_range_gives_full_resolution(url: str, recorded: dict[str, Any]) -> None:
    path = f"/api/series?runs={recorded['long']}&metric=loss&points=500&start=2000&end=2800"
    series = request(url, path).json()["series"][0]
    assert series["downsampled"] is False
    assert series["steps"] == list(range(2000, 2801))
    assert series["values"] == [_loss(step) for step in range(2000, 2801)]
    assert series["total"] == LONG and series["last_step"] == LONG - 1
    wide = request(url, f"/api/series?runs={recorded['long']}&metric=loss&points=100&start=100").json()
    steps = wide["series"][0]["steps"]
    assert wide["series"][0]["downsampled"] is True and len(steps) <= 200
    assert steps[0] == 100 and steps[-1] == LONG - 1 and SPIKE_STEP in steps


def test_after_returns_only_the_new_points(url: str, recorded: dict[str, Any]) -> None:
    path = f"/api/series?runs={recorded['long']},{recorded['running']}&metric=loss&after=4990"
    long, running = request(url, path).json()["series"]
    assert long["steps"] == list(range(4991, LONG)) and long["downsampled"] is False
    assert long["total"] == LONG and long["last_step"] == LONG - 1
    assert running["steps"] == [] and running["last_step"] == 2 and running["total"] == 3
    tail = request(url, f"/api/series?runs={recorded['long']}&metric=loss&after=0&points=10").json()
    assert tail["series"][0]["downsampled"] is True and len(tail["series"][0]["steps"]) <= 20
    assert tail["series"][0]["steps"][0] == 1


def test_a_run_without_the_metric_gets_an_empty_series(url: str, recorded: dict[str, Any]) -> None:
    data = request(url, f"/api/series?runs={recorded['short']},{recorded['long']}&metric=acc").json()
    short, long = data["series"]
    assert short == {
        "run": recorded["short"],
        "steps": [],
        "values": [],
        "total": 0,
        "last_step": None,
        "downsampled": False,
    }
    assert long["total"] == LONG // 10 and long["steps"] == list(range(0, LONG, 10))


def test_values_without_steps_stand_at_their_index(url: str, recorded: dict[str, Any]) -> None:
    series = request(url, f"/api/series?runs={recorded['running']}&metric=tokens").json()["series"][0]
    assert series["steps"] == [0, 1, 2, 3] and series["values"] == [5, 6, 7, 8]


def test_a_metric_no_run_has_is_a_404(url: str, recorded: dict[str, Any]) -> None:
    answer = request(url, f"/api/series?runs={recorded['short']},{recorded['running']}&metric=nope")
    assert answer.status == 404
    assert answer.json()["error"] == (
        f"no list metric 'nope' in runs {recorded['short']}, {recorded['running']}"
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("metric=loss", "'runs' is required"),
        ("runs=,,&metric=loss", "'runs' is required"),
        ("runs=RUN", "'metric' is required"),
        ("runs=RUN&metric=loss&points=abc", "'points' must be a whole number"),
        ("runs=RUN&metric=loss&points=0", "'points' must be between 1 and 10000"),
        ("runs=RUN&metric=loss&points=10001", "'points' must be between 1 and 10000"),
        ("runs=RUN&metric=loss&points=1&points=2", "'points' is given 2 times"),
        ("runs=RUN&metric=loss&start=x", "'start' must be a number"),
        ("runs=RUN&metric=loss&after=nan", "'after' must be a finite number"),
        ("runs=RUN&metric=loss&end=inf", "'end' must be a finite number"),
        ("runs=RUN&metric=loss&start=5&end=1", "'start' (5) is after 'end' (1)"),
    ],
)
def test_a_bad_parameter_is_a_400_in_json(
    url: str, recorded: dict[str, Any], query: str, message: str
) -> None:
    answer = request(url, "/api/series?" + query.replace("RUN", recorded["long"]))
    assert answer.status == 400
    assert message in answer.json()["error"]


# -- what comes from the store is data ------------------------------------------------------------


def test_strings_from_the_store_come_back_as_json_strings(url: str, recorded: dict[str, Any]) -> None:
    answer = request(url, "/api/runs")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    runs = {run["id"]: run for run in answer.json()["runs"]}
    assert runs[recorded["long"]]["hyperparameters"]["note"] == IMG
    assert runs[recorded["long"]]["hyperparameters"]["evil"] == CLOSE_SCRIPT
    assert runs[recorded["short"]]["pipeline"] == "<b>bold</b>"
    assert b'"note":"<img src=x onerror=alert(1)>"' in answer.body  # a JSON string, as it was stored


# -- pages and static files -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/compare?runs=a,b", "/run/RUN", "/run/RUN/"])
def test_the_pages_are_html_with_a_policy(url: str, recorded: dict[str, Any], path: str) -> None:
    answer = request(url, path.replace("RUN", recorded["long"]))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.body.lstrip().lower().startswith(b"<!doctype html")


def test_static_files_are_served_with_their_type(url: str) -> None:
    script = request(url, "/static/vendor/uPlot.iife.min.js")
    assert script.status == 200 and script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert b"uPlot" in script.body
    style = request(url, "/static/vendor/uPlot.min.css")
    assert style.status == 200 and style.headers["Content-Type"] == "text/css; charset=utf-8"
    head = request(url, "/static/vendor/uPlot.iife.min.js", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(len(script.body))


TRAVERSALS = [
    "/static/../../etc/passwd",
    "/static/../server.py",
    "/static/vendor/../../server.py",
    "/static/%2e%2e/server.py",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e%2f%2e%2e%2fui%2fserver.py",
    "/static/%252e%252e/server.py",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "/static/..%5c..%5cserver.py",
    "/static/..\\..\\server.py",
    "/static/%c0%ae%c0%ae/server.py",
    "/static/%00",
    "/static/vendor/uPlot.min.css%00.js",
    "/static/",
    "/static/vendor",
    "/static/.hidden",
    "/run/../../etc/passwd",
    "/run/..%2F..%2Fetc%2Fpasswd",
    "/run/%2e%2e",
    "/run/",
    "/api/runs/..%2F..%2Fetc%2Fpasswd",
    "/api/runs/../../etc/passwd",
    "/../../etc/passwd",
    "/etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_reaches_a_file_outside_the_static_folder(url: str, path: str) -> None:
    answer = request(url, path)
    assert answer.status == 404, (path, answer.body[:200])
    assert "error" in answer.json()
    assert b"root:" not in answer.body and b"import" not in answer.body


def test_static_file_stays_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "static"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.js").write_text("ok")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert static_file(root, "sub/ok.js") == (root / "sub" / "ok.js").resolve()
    assert static_file(root, "sub%2Fok.js") == (root / "sub" / "ok.js").resolve()
    for name in ("../secret.txt", "%2e%2e/secret.txt", "sub/../../secret.txt", "link.txt", "sub", ""):
        assert static_file(root, name) is None, name
    assert static_file(root, str(tmp_path / "secret.txt")) is None


def test_unknown_routes_methods_and_hosts_are_refused_in_json(url: str) -> None:
    assert request(url, "/nope").status == 404
    assert request(url, "/api/nope").json()["error"] == "no such API route: /api/nope"
    posted = request(url, "/api/runs", method="POST")
    assert posted.status == 405 and "read-only" in posted.json()["error"]
    foreign = request(url, "/api/runs", headers={"Host": "evil.example:8765"})
    assert foreign.status == 403 and "127.0.0.1" in foreign.json()["error"]
    assert request(url, "/api/runs", headers={"Host": "localhost:1"}).status == 200


def test_an_unexpected_error_is_a_500_in_json_and_logged(
    url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(store: Any) -> Any:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(api, "runs", broken)
    with caplog.at_level("ERROR", logger="craft_callbacks.ui"):
        answer = request(url, "/api/runs")
    assert answer.status == 500
    assert answer.json() == {"error": "internal error: RuntimeError: boom second line"}
    assert any("boom" in record.getMessage() or record.exc_info for record in caplog.records)


# -- read-only -----------------------------------------------------------------------------------------


def test_a_session_changes_nothing_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    run = _record(path, "train", 3000, {"lr": 0.1}, acc=True)
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(tmp_path)))
    assert before[2] == ["metrics.db"]
    server, address = serve(path, port=0)
    server.start()
    try:
        assert request(address, "/api/runs").status == 200
        assert request(address, f"/api/runs/{run}").status == 200
        assert request(address, f"/api/series?runs={run}&metric=loss&points=10").status == 200
        assert request(address, "/").status == 200
    finally:
        server.stop()
    assert (path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(tmp_path))) == before


def test_a_missing_or_bad_store_is_refused_and_never_created(tmp_path: Path) -> None:
    with pytest.raises(LocalStoreError, match="no metrics store at"):
        serve(tmp_path / "absent.db", port=0)
    assert not (tmp_path / "absent.db").exists()
    (tmp_path / "text.db").write_text("not a database")
    with pytest.raises(LocalStoreError, match="does not start with SQLite's header"):
        serve(tmp_path / "text.db", port=0)
    newer = tmp_path / "newer.db"
    LocalStore(newer).close()
    import sqlite3

    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(LocalStoreError, match="newer craft_callbacks"):
        serve(newer, port=0)


def test_a_run_being_recorded_grows_in_the_answers(tmp_path: Path) -> None:
    path = tmp_path / "metrics.db"
    writer = LocalStore(path)
    run = writer.start_execution(pipeline_name="live")
    writer.write(run, lists=[("loss", [0, 1], [1.0, 0.9])])
    server, address = serve(path, port=0)
    server.start()
    try:
        first = request(address, f"/api/series?runs={run}&metric=loss").json()["series"][0]
        assert first["steps"] == [0, 1] and first["last_step"] == 1
        writer.write(run, lists=[("loss", [2, 3], [0.8, 0.7])])
        grown = request(address, f"/api/series?runs={run}&metric=loss&after=1").json()["series"][0]
        assert grown["steps"] == [2, 3] and grown["values"] == [0.8, 0.7] and grown["total"] == 4
        writer.set_status(run, "success")
        assert request(address, f"/api/runs/{run}").json()["status"] == "success"
    finally:
        server.stop()
        writer.close()
    assert LocalStore(path).list_series(run, "loss") == [(0, 1.0), (1, 0.9), (2, 0.8), (3, 0.7)]


def test_a_cached_series_follows_every_change_of_its_list(tmp_path: Path) -> None:
    """Whole-list answers are cached while the list is unchanged; a write, or a resumed run's
    rewritten values, gives the new answer."""
    path = tmp_path / "metrics.db"
    writer = LocalStore(path)
    run = writer.start_execution(pipeline_name="cached")
    writer.write(run, lists=[("loss", list(range(10)), [float(step) for step in range(10)])])
    server, address = serve(path, port=0)
    server.start()
    query = f"/api/series?runs={run}&metric=loss"
    try:
        assert request(address, query).json()["series"][0]["values"] == [float(s) for s in range(10)]
        assert request(address, query).json()["series"][0]["values"] == [float(s) for s in range(10)]
        writer.write(run, lists=[("loss", [10], [10.0])])
        assert request(address, query).json()["series"][0]["steps"] == list(range(11))
        writer.forget_after(run, 4)  # a resumed run replaces the steps after its checkpoint
        writer.write(run, lists=[("loss", [5, 6], [-5.0, -6.0])])
        again = request(address, query).json()["series"][0]
        assert again["steps"] == [0, 1, 2, 3, 4, 5, 6]
        assert again["values"] == [0.0, 1.0, 2.0, 3.0, 4.0, -5.0, -6.0]
    finally:
        server.stop()
        writer.close()


# -- craft-callbacks ui, as a user runs it --------------------------------------------------------------


def test_ui_prints_its_url_first_and_stops_on_ctrl_c(recorded: dict[str, Any]) -> None:
    command = [
        sys.executable,
        "-m",
        "craft_callbacks.cli",
        "ui",
        "--store",
        str(recorded["path"]),
        "--port",
        "0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline().strip() if process.stdout else ""
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", first), first
        assert request(first, "/api/runs").status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        stderr = process.stderr.read() if process.stderr else ""
        assert "Traceback" not in stderr and "read-only" in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ui_without_a_store_says_so_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "craft_callbacks.cli", "ui", "--store", str(tmp_path / "absent.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().startswith("craft-callbacks ui: no metrics store at")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "absent.db").exists()


def test_ui_on_a_busy_port_says_so(
    recorded: dict[str, Any], url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = url.rstrip("/").rsplit(":", 1)[1]
    assert cli_main(["ui", "--store", str(recorded["path"]), "--port", port]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


# -- downsampling ---------------------------------------------------------------------------------------


def test_min_max_keeps_first_last_and_a_spike() -> None:
    steps = list(range(10_000))
    values = [float(step % 7) for step in steps]
    values[4321] = 1e6
    values[7777] = -1e6
    kept_steps, kept_values, downsampled = min_max(steps, values, 100)
    assert downsampled and len(kept_steps) == len(kept_values) <= 200
    assert kept_steps[0] == 0 and kept_steps[-1] == 9999
    assert kept_steps == sorted(kept_steps) and len(set(kept_steps)) == len(kept_steps)
    assert 1e6 in kept_values and -1e6 in kept_values
    assert all(values[step] == value for step, value in zip(kept_steps, kept_values, strict=True))
    assert min_max([1, 2, 3], [1.0, 2.0, 3.0], 2) == ([1, 2, 3], [1.0, 2.0, 3.0], False)
    assert min_max(steps, values, 1)[0] == [0, 9999]
    with pytest.raises(ValueError, match="at least 1"):
        min_max(steps, values, 0)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=400),
    points=st.integers(min_value=1, max_value=60),
)
def test_min_max_properties(values: list[float], points: int) -> None:
    steps = list(range(0, 3 * len(values), 3))
    kept_steps, kept_values, downsampled = min_max(steps, values, points)
    assert len(kept_steps) == len(kept_values)
    assert len(kept_steps) <= 2 * points or kept_steps == steps
    assert downsampled == (len(values) > 2 * points)
    assert kept_steps == sorted(set(kept_steps))
    assert all(values[step // 3] == value for step, value in zip(kept_steps, kept_values, strict=True))
    if values:
        assert kept_steps[0] == steps[0] and kept_steps[-1] == steps[-1]
    if values and points > 1:  # one point per run is the first and the last only
        assert max(values) in kept_values and min(values) in kept_values


def test_in_order_and_step_range() -> None:
    assert in_order([3, 1, 2, 1], [30, 10, 20, 11]) == ([1, 1, 2, 3], [10, 11, 20, 30])
    steps, values = list(range(10)), [float(step) for step in range(10)]
    assert step_range(steps, values, 3, 5) == ([3, 4, 5], [3.0, 4.0, 5.0])
    assert step_range(steps, values, after=7) == ([8, 9], [8.0, 9.0])
    assert step_range(steps, values, 2, 8, after=6) == ([7, 8], [7.0, 8.0])
    assert step_range(steps, values, 20) == ([], [])


def test_smooth_is_tensorboards_moving_average() -> None:
    assert smooth([1.0, 2.0, 3.0], 0) == [1.0, 2.0, 3.0]
    assert smooth([4.0, 4.0, 4.0], 0.9) == [4.0, 4.0, 4.0]
    smoothed = smooth([0.0, 1.0, 0.0, 1.0], 0.5)
    assert smoothed[0] == 0.0  # debiased: the first point is the first value
    assert smoothed[1] == pytest.approx((0.5 * 1.0) / (1 - 0.25))
    assert max(smoothed) - min(smoothed) < 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        smooth([1.0], 1.0)


# -- the report -------------------------------------------------------------------------------------------


def _data_block(html: str) -> Any:
    opening = f'<script type="application/json" id="{DATA_BLOCK_ID}">'
    assert html.count(opening) >= 1
    start = html.index(opening) + len(opening)
    return json.loads(html[start : html.index("</script>", start)])


def _inline_scripts(html: str) -> list[str]:
    return [
        body
        for attributes, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
        if "application/json" not in attributes
    ]


def test_report_is_one_file_with_everything_inline(recorded: dict[str, Any], tmp_path: Path) -> None:
    output = tmp_path / "report.html"
    arguments = ["report", recorded["long"], recorded["short"], "-o", str(output), "--points", "100"]
    assert cli_main([*arguments, "--store", str(recorded["path"])]) == 0
    html = output.read_text(encoding="utf-8")
    remote = re.findall(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert remote == []
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", html, re.IGNORECASE)
    assert not re.search(r"<link\b[^>]*\brel\s*=\s*[\"']?stylesheet", html, re.IGNORECASE)
    assert "uPlot" in html and ".uplot" in html  # the chart library and its styles, inline
    data = _data_block(html)
    assert [run["id"] for run in data["runs"]] == [recorded["long"], recorded["short"]]
    assert data["metrics"] == ["acc", "loss"] and data["points"] == 100
    long, short = data["series"]["loss"]["series"]
    assert len(long["steps"]) <= 200 and long["downsampled"] and 50.0 in long["values"]
    assert short["total"] == 300 and len(short["steps"]) <= 200 and short["steps"][-1] == 299
    assert data["series"]["acc"]["series"][1]["steps"] == []
    assert data["runs"][0]["hyperparameters"] == {"lr": 0.1, "note": IMG, "evil": CLOSE_SCRIPT}


def test_no_string_from_the_store_can_close_the_data_block(recorded: dict[str, Any], tmp_path: Path) -> None:
    output = tmp_path / "report.html"
    assert cli_main(["report", recorded["long"], "-o", str(output), "--store", str(recorded["path"])]) == 0
    html = output.read_text(encoding="utf-8")
    assert CLOSE_SCRIPT not in html and IMG not in html
    assert "<script>alert(1)" not in html
    assert _data_block(html)["runs"][0]["hyperparameters"]["evil"] == CLOSE_SCRIPT
    assert "</" not in embed_json({"a": CLOSE_SCRIPT, "b": "<!--", "c": "&amp;"})


def test_report_policy_allows_its_own_scripts_and_no_network(
    recorded: dict[str, Any], tmp_path: Path
) -> None:
    output = tmp_path / "report.html"
    assert cli_main(["report", recorded["long"], "-o", str(output), "--store", str(recorded["path"])]) == 0
    html = output.read_text(encoding="utf-8")
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html)
    assert policy is not None and html.index(policy.group(0)) < html.index("<script")
    assert "default-src 'none'" in policy.group(1) and "connect-src 'none'" in policy.group(1)
    assert "'unsafe-inline'" not in policy.group(1).split("script-src", 1)[1].split(";", 1)[0]
    for body in _inline_scripts(html):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        assert f"'sha256-{digest}'" in policy.group(1)


def test_report_inlines_a_page_assets_and_drops_remote_ones(tmp_path: Path) -> None:
    static = tmp_path / "static"
    (static / "vendor").mkdir(parents=True)
    (static / "vendor" / "lib.js").write_text('var lib = "</script><!-- x";\r\n', encoding="utf-8")
    (static / "app.js").write_text("window.appRan = typeof lib;\n", encoding="utf-8")
    (static / "app.css").write_text("body { color: red } /* </style> */\n", encoding="utf-8")
    (static / "icon.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (static / "compare.html").write_text(
        "<!doctype html><html><head><title>t</title>"
        '<link rel="stylesheet" href="/static/app.css">'
        '<link rel="preconnect" href="https://cdn.example.com">'
        '<link rel="icon" href="/static/icon.png">'
        '<script src="https://cdn.example.com/x.js"></script>'
        '<script defer src="/static/app.js"></script>'
        "</head><body><p>hi</p>"
        '<script src="static/vendor/lib.js?v=1"></script>'
        "</body></html>",
        encoding="utf-8",
    )
    html = render({"runs": [], "series": {}}, static_dir=static)
    assert "cdn.example.com" not in html
    assert "<style>body { color: red } /* <\\/style> */\n</style>" in html
    assert 'href="data:image/png;base64,' in html
    assert 'var lib = "<\\/script><\\!-- x";\n' in html and "\r" not in html
    # the deferred script now runs after the document, after lib.js, as it would have
    assert html.index("window.appRan") > html.index("var lib") > html.index("<p>hi</p>")
    assert html.index(f'id="{DATA_BLOCK_ID}"') < html.index("var lib")
    (static / "compare.html").write_text('<html><script src="/static/missing.js"></script></html>')
    from craft_callbacks.exceptions import CraftCallbacksError

    with pytest.raises(CraftCallbacksError, match=r"missing\.js"):
        render({}, static_dir=static)


def test_report_without_the_pages_still_writes_the_data(tmp_path: Path) -> None:
    html = render({"runs": [{"id": "r1"}], "series": {}}, static_dir=tmp_path / "nothing")
    assert _data_block(html)["runs"] == [{"id": "r1"}]


def test_report_of_an_unknown_run_is_one_line(recorded: dict[str, Any], tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "craft_callbacks.cli",
            "report",
            "no-such-run",
            "-o",
            str(tmp_path / "r.html"),
            "--store",
            str(recorded["path"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr.strip()
        == f"craft-callbacks report: no run 'no-such-run' in {recorded['path']} (see: craft-callbacks runs)"
    )
    assert not (tmp_path / "r.html").exists()


def test_api_answers_quickly_enough_for_a_page(url: str, recorded: dict[str, Any]) -> None:
    """A smoke check of speed (benchmarks/bench_ui.py measures the 50 × 4 × 50,000 store)."""
    started = time.perf_counter()
    request(url, f"/api/series?runs={recorded['long']},{recorded['short']}&metric=loss&points=1000")
    request(url, "/api/runs")
    assert time.perf_counter() - started < 5
