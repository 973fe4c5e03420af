"""One retry policy (craft_callbacks.delivery.retry) and one rule for which failures may have landed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from craft_ai_sdk.exceptions import SdkException

from craft_callbacks import PermanentError
from craft_callbacks.delivery.retry import Backoff, is_permanent, may_have_landed, retrying
from craft_callbacks.exceptions import NotSentError

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "craft_callbacks"


@pytest.mark.parametrize(
    ("error", "permanent", "landed"),
    [
        pytest.param(SdkException("bad", status_code=400), True, False, id="400"),
        pytest.param(SdkException("gone", status_code=404), True, False, id="404"),
        pytest.param(SdkException("auth", status_code=401), False, False, id="401"),
        pytest.param(SdkException("slow", status_code=408), False, False, id="408"),
        pytest.param(SdkException("busy", status_code=429), False, False, id="429"),
        pytest.param(SdkException("oops", status_code=500), False, True, id="500"),
        pytest.param(SdkException("<html>502</html>", status_code=502), False, True, id="502-html"),
        pytest.param(SdkException("Unable to decode", status_code=200), False, True, id="2xx-unreadable"),
        pytest.param(
            SdkException("Unable to perform the request", name="RequestError"), False, True, id="no-answer"
        ),
        pytest.param(TimeoutError("read timed out"), False, True, id="timeout"),
        pytest.param(ConnectionResetError(), False, True, id="connection-reset"),
        pytest.param(PermanentError("refused"), True, False, id="PermanentError"),
        pytest.param(NotSentError("sent nothing"), False, False, id="NotSentError"),
    ],
)
def test_only_a_4xx_or_a_sink_that_sent_nothing_is_certain(
    error: BaseException, permanent: bool, landed: bool
) -> None:
    assert is_permanent(error) is permanent
    assert may_have_landed(error) is landed


def test_retrying_stops_at_a_refusal_and_after_the_last_attempt() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def refused() -> None:
        calls.append(1)
        raise SdkException("bad", status_code=400)

    with pytest.raises(SdkException):
        retrying(refused, attempts=4, sleep=waits.append)
    assert (len(calls), waits) == (1, [])

    def failing() -> None:
        calls.append(1)
        raise SdkException("down", status_code=503)

    calls.clear()
    with pytest.raises(SdkException):
        retrying(failing, attempts=4, backoff=Backoff(first=0.5, longest=1.0), sleep=waits.append)
    assert len(calls) == 4 and len(waits) == 3
    assert 0.25 <= waits[0] <= 0.5 and all(0.5 <= wait <= 1.0 for wait in waits[1:])


def _modules() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE)): ast.parse(path.read_text(), str(path))
        for path in PACKAGE.rglob("*.py")
    }


def test_the_policy_is_written_once() -> None:
    """Status classes, backoff and retry loops live in delivery/retry.py; the worker, sync, the
    remotes and the delivery after close use it."""
    for name, tree in _modules().items():
        if name == "delivery/retry.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in (401, 408, 429):
                raise AssertionError(f"{name}:{node.lineno} decides on HTTP statuses itself")
            if isinstance(node, ast.Attribute) and node.attr == "status_code":
                raise AssertionError(f"{name}:{node.lineno} reads status_code itself")
            if isinstance(node, ast.FunctionDef) and node.name in (
                "is_permanent",
                "is_uncertain",
                "_retrying",
            ):
                raise AssertionError(f"{name}:{node.lineno} defines its own {node.name}")
    users = {
        "delivery/destination.py",
        "delivery/worker.py",
        "delivery/sync.py",
        "delivery/remote.py",
        "delivery/craft_ai.py",
    }
    for name in users:
        imports = {
            node.module
            for node in ast.walk(_modules()[name])
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "craft_callbacks.delivery.retry" in imports, name
