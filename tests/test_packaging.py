"""Packaging promises: a light import, a consistent public API, type information, the extras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import craft_callbacks

ROOT = Path(__file__).resolve().parents[1]

# Importing craft_callbacks (and recording into memory) must import none of these:
# each framework and the SDK are optional extras, imported only by their adapter.
HEAVY_MODULES = (
    "torch",
    "tensorflow",
    "jax",
    "keras",
    "transformers",
    "lightning",
    "pytorch_lightning",
    "numpy",
    "craft_ai_sdk",
    "requests",
    "digitalhub",
    "mlflow",
)

WARNING_CATEGORIES = (
    "CraftCallbacksWarning",
    "DeliveryWarning",
    "MetricLimitWarning",
    "MetricNameWarning",
    "NonFiniteMetricWarning",
    "NonNumericMetricWarning",
)


def imported_heavy_modules(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the heavy top-level packages it left in ``sys.modules``."""
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"heavy = {list(HEAVY_MODULES)!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"the child interpreter failed:\n{result.stdout}\n{result.stderr}"
    offenders: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return offenders


def test_import_pulls_in_no_framework_or_sdk() -> None:
    offenders = imported_heavy_modules("import craft_callbacks")
    assert offenders == [], f"`import craft_callbacks` imported {offenders}"


def test_recording_into_memory_pulls_in_no_framework_or_sdk() -> None:
    code = (
        "from craft_callbacks import MemorySink, MetricRecorder\n"
        "sink = MemorySink()\n"
        "recorder = MetricRecorder(sink)\n"
        "recorder.log_step({'loss': 0.5, 'lr': 1e-3}, step=1)\n"
        "recorder.log_final({'accuracy': 0.9})\n"
        "recorder.close()\n"
        "assert sink.lists == {'loss': [0.5], 'lr': [1e-3]}, sink.lists\n"
        "assert sink.scalars == {'accuracy': 0.9, 'loss': 0.5, 'lr': 1e-3}, sink.scalars\n"
    )
    offenders = imported_heavy_modules(code)
    assert offenders == [], f"recording into a MemorySink imported {offenders}"


def test_public_names_resolve() -> None:
    missing = [name for name in craft_callbacks.__all__ if not hasattr(craft_callbacks, name)]
    assert missing == []
    assert len(set(craft_callbacks.__all__)) == len(craft_callbacks.__all__)


@pytest.mark.parametrize("name", WARNING_CATEGORIES)
def test_warning_categories_are_exported_user_warnings(name: str) -> None:
    assert name in craft_callbacks.__all__
    category = getattr(craft_callbacks, name)
    assert isinstance(category, type)
    assert issubclass(category, craft_callbacks.CraftCallbacksWarning)
    assert issubclass(category, UserWarning)


def test_every_exported_warning_is_a_package_warning() -> None:
    exported = [getattr(craft_callbacks, name) for name in craft_callbacks.__all__]
    warnings_ = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, Warning)]
    assert {cls.__name__ for cls in warnings_} == set(WARNING_CATEGORIES)


def test_py_typed_is_shipped() -> None:
    package_dir = Path(craft_callbacks.__file__).parent
    assert (package_dir / "__init__.py").is_file()
    assert (package_dir / "py.typed").is_file()


def test_pyproject_declares_the_extras() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    extras = project["optional-dependencies"]
    for extra in ("huggingface", "lightning", "keras", "craft", "digitalhub", "mlflow", "all", "test"):
        assert extra in extras, f"extra {extra!r} missing from pyproject.toml"
    required = " ".join(project.get("dependencies", [])).lower().replace("_", "-")
    for optional in (
        "torch",
        "tensorflow",
        "jax",
        "keras",
        "transformers",
        "lightning",
        "craft-ai-sdk",
        "digitalhub",
        "mlflow",
    ):
        assert optional not in required, f"{optional} must be an extra, not a required dependency"
