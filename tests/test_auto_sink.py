"""sink="auto": the local store outside a platform execution, the platform inside one."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from craft_ai_sdk import CraftAiSdk

from craft_callbacks import DeliveryWarning, LocalStore, MetricRecorder
from craft_callbacks.sinks import auto


class ConnectionCounter:
    """A TCP listener on 127.0.0.1 that counts the connections it receives."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.close()


@pytest.fixture
def platform_url(monkeypatch: pytest.MonkeyPatch) -> object:
    counter = ConnectionCounter()
    monkeypatch.setenv("CRAFT_AI_ENVIRONMENT_URL", counter.url)
    monkeypatch.setenv("CRAFT_AI_CONTROL_URL", counter.url)
    monkeypatch.setenv("CRAFT_AI_SDK_TOKEN", "secret-token-for-tests")
    yield counter
    counter.close()


def test_outside_an_execution_metrics_go_to_the_default_local_store(
    isolated: Path, platform_url: ConnectionCounter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="craft_callbacks")
    with MetricRecorder() as recorder:
        recorder.log_step({"loss": 0.5})
        recorder.log_final({"accuracy": 0.9})
    assert isinstance(recorder.sink, LocalStore)
    assert recorder.sink.path == Path("craft_metrics") / "metrics.db"
    assert (isolated / "craft_metrics" / "metrics.db").is_file()
    assert LocalStore().get_list_metrics(execution_id=recorder.execution_id)[0]["values"] == [0.5]
    assert platform_url.connections == 0  # nothing was sent anywhere
    where = [r.getMessage() for r in caplog.records if "recording run" in r.getMessage()]
    assert where == [
        f"craft_callbacks: recording run {recorder.execution_id} to local store {recorder.sink.path}"
    ]


def test_the_store_path_comes_from_the_environment_or_the_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRAFT_CALLBACKS_STORE", str(tmp_path / "from-env.db"))
    with MetricRecorder() as from_env:
        from_env.log_step({"loss": 1.0})
    with MetricRecorder(store_path=tmp_path / "from-arg.db") as from_arg:
        from_arg.log_step({"loss": 2.0})
    assert from_env.sink.path == tmp_path / "from-env.db"
    assert from_arg.sink.path == tmp_path / "from-arg.db"
    assert LocalStore(tmp_path / "from-env.db").get_list_metrics()[0]["values"] == [1.0]
    assert LocalStore(tmp_path / "from-arg.db").get_list_metrics()[0]["values"] == [2.0]


def test_inside_an_execution_the_platform_sdk_is_the_sink(
    monkeypatch: pytest.MonkeyPatch, platform_url: ConnectionCounter
) -> None:
    monkeypatch.setenv("CRAFT_AI_EXECUTION_ID", "exec-42")
    with MetricRecorder() as recorder:
        pass
    assert isinstance(recorder.sink, CraftAiSdk)
    assert recorder.execution_id == "exec-42"
    assert not Path("craft_metrics/metrics.db").exists()  # no local store: only the spool
    assert Path("craft_metrics/spool.db").is_file()


def test_inside_an_execution_without_the_sdk_a_loud_warning_and_local_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRAFT_AI_EXECUTION_ID", "exec-43")
    monkeypatch.setattr(auto, "sdk_installed", lambda: False)
    with pytest.warns(DeliveryWarning, match=r"NOT reaching the platform") as caught:
        recorder = MetricRecorder()
    assert "requirements.txt" in str(caught[0].message)
    assert "craft-callbacks[craft]" in str(caught[0].message)
    recorder.log_step({"loss": 1.0})
    recorder.close()
    assert isinstance(recorder.sink, LocalStore)
    assert recorder.sink.get_list_metrics()[0]["values"] == [1.0]


def test_inside_an_execution_with_a_broken_sdk_setup_metrics_stay_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRAFT_AI_EXECUTION_ID", "exec-44")  # but no token nor URL
    with pytest.warns(DeliveryWarning, match=r"cannot be set up .*sdk_token"):
        recorder = MetricRecorder()
    recorder.close()
    assert isinstance(recorder.sink, LocalStore)


def test_the_platforms_injected_context_is_found_without_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import craft_ai_sdk.shared.execution_context as context

    (tmp_path / f"{auto.INJECTED_CONTEXT}.py").write_text(
        "import contextvars\n"
        "current_execution_id = contextvars.ContextVar('current_execution_id')\n"
        "current_execution_id.set('exec-injected')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(context, "_execution_context", None)  # the SDK caches its first look
    monkeypatch.delitem(sys.modules, auto.INJECTED_CONTEXT, raising=False)
    try:
        assert auto.platform_execution_id() == "exec-injected"
    finally:
        sys.modules.pop(auto.INJECTED_CONTEXT, None)


def test_outside_an_execution_the_sdk_is_not_even_imported(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from craft_callbacks import MetricRecorder
        with MetricRecorder(store_path={str(tmp_path / "m.db")!r}) as recorder:
            recorder.log_step({{"loss": 1.0}})
        assert "craft_ai_sdk" not in sys.modules, "craft_ai_sdk imported outside an execution"
        """
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRAFT_AI")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
