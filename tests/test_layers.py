"""Dependencies point one way: each module imports only from its own layer or the layers below.

The layers, bottom to top (CONTRIBUTING.md draws them):

0. rules and SQLite plumbing: values, names, thinning, ordering, hyperparameters,
   exceptions, notices, defaults, logs, sqlite_files;
1. sinks: ``craft_callbacks.sinks`` (the local store, memory, DigitalHub, the SDK's helpers);
2. delivery: ``craft_callbacks.delivery`` (worker, retry policy, spool, destinations, sync);
3. recorder and runs: recorder, runs, series, run_summary, process_hooks, and the package's
   ``__init__``;
4. adapters (huggingface, lightning, keras, accelerate, mlflow) and cli (``craft_callbacks.cli``),
   side by side: neither imports the other.

Every import counts, at module level or inside a function, under ``TYPE_CHECKING`` too: a lazy
import that runs back up the layers is still a dependency the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "craft_callbacks"

RULES, SINKS, DELIVERY, RECORDER, TOP = range(5)
LAYER_NAMES = {
    RULES: "rules",
    SINKS: "sinks",
    DELIVERY: "delivery",
    RECORDER: "recorder",
    TOP: "adapters/cli",
}
RULE_MODULES = {
    "values",
    "names",
    "thinning",
    "ordering",
    "hyperparameters",
    "exceptions",
    "notices",
    "defaults",
    "logs",
    "sqlite_files",
}
RECORDER_MODULES = {"recorder", "runs", "series", "run_summary", "process_hooks", "__init__"}
ADAPTERS = {"huggingface", "lightning", "keras", "accelerate", "mlflow"}


def layer_of(module: str) -> tuple[int, str]:
    """The layer of a ``craft_callbacks`` module, and its side within the top layer."""
    parts = module.split(".")[1:] or ["__init__"]
    head = parts[0]
    if head in RULE_MODULES:
        return RULES, ""
    if head == "sinks":
        return SINKS, ""
    if head == "delivery":
        return DELIVERY, ""
    if head in RECORDER_MODULES:
        return RECORDER, ""
    if head in ADAPTERS:
        return TOP, "adapters"
    if head == "cli":
        return TOP, "cli"
    raise LookupError(f"{module} has no layer: add it to tests/test_layers.py and CONTRIBUTING.md")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imported(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``craft_callbacks`` module a source imports, with its line, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # ``from craft_callbacks import process_hooks`` imports that module, not the package's names
            modules = [f"{target}.{alias.name}" for alias in node.names if is_module(target, alias.name)]
            found += [(node.lineno, name) for name in modules]
            if len(modules) < len(node.names):
                found.append((node.lineno, target))
    return [
        (line, name)
        for line, name in found
        if name == "craft_callbacks" or name.startswith("craft_callbacks.")
    ]


def is_module(package: str, name: str) -> bool:
    base = PACKAGE.parent.joinpath(*package.split("."))
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that run up the layers, or sideways between adapters and cli."""
    own, own_side = layer_of(module)
    wrong = []
    for line, target in imported(source, module, is_package):
        if target == "craft_callbacks" and module != "craft_callbacks":
            target = "craft_callbacks.__init__"
        layer, side = layer_of(target)
        if layer > own or (layer == TOP and side != own_side):
            wrong.append(
                f"{module}:{line} ({LAYER_NAMES[own]}) imports {target} ({LAYER_NAMES[layer]} {side}".rstrip()
                + ")"
            )
    return wrong


def package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    names = [module_name(path) for path in package_modules()]
    assert len(names) > 30
    for name in names:
        layer_of(name)


def test_no_import_runs_back_up_the_layers() -> None:
    wrong = []
    for path in package_modules():
        wrong += upward_imports(path.read_text(), module_name(path), path.name == "__init__.py")
    assert wrong == [], "imports that run up the layers (see CONTRIBUTING.md):\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "craft_callbacks.sinks.local_store",
            "from craft_callbacks.delivery.spool import Spool",
            "(delivery)",
        ),
        ("craft_callbacks.delivery.worker", "import craft_callbacks.recorder", "(recorder)"),
        (
            "craft_callbacks.recorder",
            "def f():\n    from craft_callbacks.cli import main",
            "(adapters/cli cli)",
        ),
        ("craft_callbacks.values", "from craft_callbacks import process_hooks", "(recorder)"),
        ("craft_callbacks.delivery.sync", "from ..recorder import MetricRecorder", "(recorder)"),
        (
            "craft_callbacks.cli.commands",
            "from craft_callbacks.keras import CraftAiKerasCallback",
            "adapters)",
        ),
        (
            "craft_callbacks.names",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import craft_callbacks.sinks",
            "(sinks)",
        ),
    ],
)
def test_the_check_catches_each_kind_of_wrong_import(module: str, source: str, expected: str) -> None:
    """The check itself can fail: module level, lazy, relative, TYPE_CHECKING and sideways imports."""
    wrong = upward_imports(source, module)
    assert len(wrong) == 1 and wrong[0].endswith(expected), wrong


def test_the_check_lets_downward_and_same_layer_imports_through() -> None:
    source = (
        "from craft_callbacks.values import to_number\n"
        "from craft_callbacks.sinks.local_store import LocalStore\n"
        "from craft_callbacks.delivery.retry import retrying\n"
        "from . import spool\n"
    )
    assert upward_imports(source, "craft_callbacks.delivery.sync") == []


def test_the_recorder_knows_no_concrete_sink() -> None:
    """MetricRecorder talks to a Destination; which sink is behind it is delivery.factory's business."""
    path = PACKAGE / "recorder.py"
    targets = {name for _, name in imported(path.read_text(), "craft_callbacks.recorder", False)}
    concrete = {
        name
        for name in targets
        if name.startswith("craft_callbacks.sinks")
        or name.split(".")[-1] in {"craft_ai", "digitalhub", "remote", "spool", "sync"}
    }
    assert "craft_callbacks.delivery.factory" in targets  # the check reads the imports it means to read
    assert concrete == set()
