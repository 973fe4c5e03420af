"""Shared fixtures: every test runs in its own folder, outside any platform execution."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from craft_callbacks import LocalStore
from platform_emulator import PlatformEmulator

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may download a model
os.environ.setdefault("KERAS_BACKEND", "torch")

PLATFORM_ENV = (
    "CRAFT_AI_EXECUTION_ID",
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
    "CRAFT_CALLBACKS_STORE",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in a fresh folder (so ./craft_metrics lands there) with no platform settings."""
    monkeypatch.chdir(tmp_path)
    for name in PLATFORM_ENV:
        monkeypatch.delenv(name, raising=False)
    yield tmp_path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    """A LocalStore in the test's folder."""
    opened = LocalStore(tmp_path / "store" / "metrics.db")
    yield opened
    opened.close()


PLATFORM_EXECUTION_ID = "exec-test-1"


@pytest.fixture
def platform(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PlatformEmulator]:
    """A running PlatformEmulator, with the environment of a step running inside execution
    ``exec-test-1`` on it: ``CraftAiSdk()`` built in the test talks to the emulator.

    Depends on ``isolated`` so that it sets the variables after they were cleared.
    """
    with PlatformEmulator() as emulator:
        monkeypatch.setenv("CRAFT_AI_SDK_TOKEN", emulator.token)
        monkeypatch.setenv("CRAFT_AI_ENVIRONMENT_URL", emulator.url)
        monkeypatch.setenv("CRAFT_AI_CONTROL_URL", emulator.url)
        monkeypatch.setenv("CRAFT_AI_EXECUTION_ID", PLATFORM_EXECUTION_ID)
        yield emulator


@pytest.fixture
def digitalhub(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A running DigitalHubEmulator (tests/digitalhub_emulator.py), with the real ``digitalhub``
    SDK configured for it through the environment and its global caches reset before and
    after: ``dh.get_or_create_project(...)`` built in the test talks to the emulator.

    Named like the SDK package: in a test taking it, ``digitalhub`` is the emulator, so import
    the SDK under another name (``import digitalhub as dh``).
    """
    from digitalhub_emulator import digitalhub_backend

    yield from digitalhub_backend(isolated, monkeypatch)
