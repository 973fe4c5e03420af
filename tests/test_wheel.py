"""The built wheel, installed in a fresh virtual environment, carries its code, its package data and
its command: an editable install (the dev venv's) reads ``src/`` and would hide a file that
``[tool.setuptools.package-data]`` forgot, a stale module in ``build/``, or a broken entry point.

The wheel is built from a copy of the checkout (the files git tracks, plus untracked files git does
not ignore, as they are in the working tree), never in place: an in-tree build would reuse whatever
an old build left in ``build/lib`` and write into the repository. It is installed, by the dev venv's
pip (``pip --python``, pip 22.3 or later) into a venv made without pip, with its declared dependencies
(``rich`` and what ``rich`` needs, from the package index pip is configured with, under
``constraints.txt``) and nothing else. Every command then runs with the fresh venv's interpreter, in
a folder outside the checkout, with no ``PYTHONPATH``: the package imported is the installed one.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "craft_callbacks"
DIST_NAME = "craft-callbacks"
STATIC = f"{PACKAGE}/cli/ui/static"
# The dashboard's files the pages cannot do without (the rest of static/ is checked against the source).
REQUIRED_STATIC = (
    "index.html",
    "compare.html",
    "run.html",
    "app.js",
    "app.css",
    "vendor/uPlot.iife.min.js",
    "vendor/uPlot.min.css",
)
SUBCOMMANDS = ("runs", "show", "compare", "plot", "ui", "report", "export", "sync")
BIN = "Scripts" if os.name == "nt" else "bin"
EXE = ".exe" if os.name == "nt" else ""
# Variables that would make the fresh venv's interpreter import something other than what it installed,
# or make the commands read another store than the test's.
CLEARED_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONSAFEPATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CRAFT_AI_EXECUTION_ID",
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
    "CRAFT_CALLBACKS_STORE",
    "CRAFT_CALLBACKS_RUN_ID",
    "CRAFT_CALLBACKS_RUN_NAME",
)

BUILD_TIMEOUT_S = 300
VENV_TIMEOUT_S = 180
INSTALL_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 120
SERVER_START_TIMEOUT_S = 60
HTTP_TIMEOUT_S = 30


def run(
    command: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    what: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; fail the test, with its output, if it fails or outlives ``timeout``."""
    try:
        result = subprocess.run(
            [str(part) for part in command],
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{what}: still running after {timeout} s\n{expired.stdout!r}\n{expired.stderr!r}")
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode}): {' '.join(map(str, command))}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def project_version() -> str:
    """``version`` in the ``[project]`` table of pyproject.toml (no tomllib: Python 3.10 is supported)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    table = re.search(r"^\[project\]\s*$(.*?)(?=^\[)", text, re.MULTILINE | re.DOTALL)
    assert table is not None, "pyproject.toml has no [project] table"
    found = re.search(r'^version\s*=\s*"([^"]+)"', table.group(1), re.MULTILINE)
    assert found is not None, "pyproject.toml's [project] table has no literal version"
    return found.group(1)


def copy_checkout(target: Path) -> Path:
    """The checkout's files (tracked, and untracked but not ignored) as they are now, copied to ``target``."""
    git = shutil.which("git")
    assert git is not None, "git is needed to list the checkout's files (git ls-files); it is not on PATH"
    listing = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert listing.returncode == 0, (
        f"git ls-files failed in {ROOT}: {listing.stderr.decode(errors='replace')}"
    )
    copied = 0
    for name in listing.stdout.decode().split("\0"):
        source = ROOT / name
        if not name or not source.is_file():  # deleted (or renamed away) in the working tree
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        copied += 1
    assert (target / "pyproject.toml").is_file(), f"copied {copied} files from {ROOT} but no pyproject.toml"
    return target


def clean_env(venv: Path) -> dict[str, str]:
    """The environment the installed package runs in: the fresh venv first on PATH, nothing of ours."""
    env = {name: value for name, value in os.environ.items() if name not in CLEARED_ENV}
    env["PATH"] = os.pathsep.join([str(venv / BIN), env.get("PATH", os.defpath)])
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONNOUSERSITE"] = "1"  # nor the user's site-packages
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["NO_COLOR"] = "1"
    return env


@dataclass(frozen=True)
class Installed:
    """The built wheel and the fresh venv it is installed in."""

    wheel: Path
    source: Path  # the copy of the checkout the wheel was built from
    venv: Path
    work: Path  # a folder outside the checkout, the commands' working directory
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / BIN / f"python{EXE}"

    @property
    def command(self) -> Path:
        return self.venv / BIN / f"craft-callbacks{EXE}"

    def run(self, *args: str | os.PathLike[str], what: str) -> subprocess.CompletedProcess[str]:
        return run(args, cwd=self.work, env=self.env, timeout=COMMAND_TIMEOUT_S, what=what)

    def python_json(self, code: str, what: str) -> Any:
        """Run ``code`` in the fresh venv's interpreter; the JSON its last line of output prints."""
        out = self.run(self.python, "-c", code, what=what).stdout.strip().splitlines()
        assert out, f"{what}: printed nothing"
        return json.loads(out[-1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel from a copy of the checkout, then install it in a fresh venv."""
    base = tmp_path_factory.mktemp("wheel")
    source = copy_checkout(base / "source")
    dist = base / "dist"
    build_env = {name: value for name, value in os.environ.items() if name not in CLEARED_ENV}
    run(
        # --no-build-isolation: the dev venv's setuptools and wheel, no download of a build backend.
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, source],
        cwd=base,
        env=build_env,
        timeout=BUILD_TIMEOUT_S,
        what="building the wheel (pip wheel --no-build-isolation needs setuptools and wheel in the dev venv)",
    )
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}, found {[w.name for w in wheels]}"

    venv = base / "venv"
    run(
        # Without pip (ensurepip takes most of the time): the dev venv's pip installs into it (--python).
        [sys.executable, "-m", "venv", "--without-pip", venv],
        cwd=base,
        env=build_env,
        timeout=VENV_TIMEOUT_S,
        what="creating a fresh venv",
    )
    work = base / "work"
    work.mkdir()
    env = clean_env(venv)
    python = venv / BIN / f"python{EXE}"
    pip = [sys.executable, "-m", "pip", "--python", python]
    run(
        # With its dependencies as declared (rich and its own), from the configured index.
        [*pip, "install", "--no-input", "-c", ROOT / "constraints.txt", wheels[0]],
        cwd=work,
        env=env,
        timeout=INSTALL_TIMEOUT_S,
        what="installing the wheel and its dependencies in the fresh venv",
    )
    run([*pip, "check"], cwd=work, env=env, timeout=COMMAND_TIMEOUT_S, what="pip check")
    return Installed(wheel=wheels[0], source=source, venv=venv, work=work, env=env)


@pytest.fixture(scope="module")
def recorded(installed: Installed) -> tuple[Path, str]:
    """A local store with one run in it, recorded by the installed package; (store, run id)."""
    store = installed.work / "store" / "metrics.db"
    code = (
        "import json\n"
        "from craft_callbacks import LocalStore, MetricRecorder\n"
        f"store = LocalStore({str(store)!r})\n"
        "recorder = MetricRecorder(store, pipeline_name='wheel-smoke', hyperparameters={'lr': 0.001})\n"
        "for step in range(1, 21):\n"
        "    recorder.log_step({'loss': 1.0 / step, 'accuracy': step / 20}, step=step)\n"
        "recorder.log_final({'test_accuracy': 0.93})\n"
        "recorder.close()\n"
        "store.close()\n"
        "print(json.dumps(recorder.execution_id))\n"
    )
    run_id = installed.python_json(code, "recording a run with the installed package")
    assert isinstance(run_id, str) and run_id, run_id
    assert store.is_file(), f"the recorder wrote no store at {store}"
    return store, run_id


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def wheel_bytes(wheel: Path, name: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        assert name in archive.namelist(), f"the wheel has no {name}"
        return archive.read(name)


def wheel_text(wheel: Path, name: str) -> str:
    return wheel_bytes(wheel, name).decode("utf-8")


def test_the_wheel_holds_the_package_tree_its_data_and_its_command(installed: Installed) -> None:
    names = wheel_names(installed.wheel)
    version = project_version()
    assert installed.wheel.name == f"{PACKAGE}-{version}-py3-none-any.whl"

    assert f"{PACKAGE}/py.typed" in names
    missing_static = [f for f in REQUIRED_STATIC if f"{STATIC}/{f}" not in names]
    assert missing_static == [], (
        f"the wheel lacks {missing_static} under {STATIC}/: check [tool.setuptools.package-data]"
    )
    # Exactly the source's package: nothing forgotten (package data) and nothing stale (an old build).
    package_source = installed.source / "src" / PACKAGE
    expected = {
        f"{PACKAGE}/{path.relative_to(package_source).as_posix()}"
        for path in package_source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    in_wheel = {name for name in names if name.startswith(f"{PACKAGE}/") and not name.endswith("/")}
    assert sorted(expected - in_wheel) == [], "files of src/craft_callbacks the wheel lacks"
    assert sorted(in_wheel - expected) == [], "files in the wheel that src/craft_callbacks does not have"

    dist_info = f"{PACKAGE}-{version}.dist-info"
    entry_points = wheel_text(installed.wheel, f"{dist_info}/entry_points.txt")
    assert re.search(r"^craft-callbacks\s*=\s*craft_callbacks\.cli:main\s*$", entry_points, re.MULTILINE), (
        entry_points
    )
    metadata = wheel_text(installed.wheel, f"{dist_info}/METADATA")
    requires = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert [re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower() for r in requires] == ["rich"], requires


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    found = installed.python_json(
        "import json, sys, importlib.metadata as md\n"
        "import craft_callbacks, craft_callbacks.cli.ui.server as server, rich\n"
        "print(json.dumps({'file': craft_callbacks.__file__, 'version': craft_callbacks.__version__,\n"
        "    'metadata': md.version('craft-callbacks'), 'static': str(server.STATIC_DIR),\n"
        "    'rich': rich.__file__, 'prefix': sys.prefix, 'base': sys.base_prefix, 'path': sys.path}))\n",
        "importing the installed package",
    )
    venv = installed.venv.resolve()
    for key in ("file", "static", "rich", "prefix"):
        assert Path(found[key]).resolve().is_relative_to(venv), f"{key}: {found[key]} is not in {venv}"
    source_tree = (ROOT / "src").resolve()
    assert not any(entry and Path(entry).resolve().is_relative_to(source_tree) for entry in found["path"]), (
        found["path"]
    )
    version = project_version()
    assert found["metadata"] == version
    assert found["version"] == version


def test_the_command_runs_from_the_fresh_venv(installed: Installed) -> None:
    assert installed.command.is_file(), f"the wheel installed no console script at {installed.command}"
    result = installed.run(installed.command, "--help", what="craft-callbacks --help")
    assert result.stdout.startswith("usage: craft-callbacks"), result.stdout
    for command in SUBCOMMANDS:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), (command, result.stdout)


def test_runs_lists_the_run_through_rich(installed: Installed, recorded: tuple[Path, str]) -> None:
    store, run_id = recorded
    listed = json.loads(
        installed.run(installed.command, "runs", "--store", store, "--json", what="runs --json").stdout
    )
    assert [run["execution_id"] for run in listed] == [run_id]
    table = installed.run(installed.command, "runs", "--store", store, what="runs (a rich table)").stdout
    assert "wheel-smoke" in table, table


def test_report_is_one_file_with_uplot_and_the_app_inline(
    installed: Installed, recorded: tuple[Path, str]
) -> None:
    store, run_id = recorded
    output = installed.work / "report.html"
    installed.run(
        installed.command, "report", "--store", store, run_id, "-o", output, what="craft-callbacks report"
    )
    html = output.read_text(encoding="utf-8")
    assert run_id in html
    assert '<script type="application/json" id="report-data">' in html
    # The real compare page, its scripts and styles inline (not the fallback for a package without them).
    for name, head in (
        ("vendor/uPlot.iife.min.js", "var uPlot="),
        ("vendor/uPlot.min.css", ".uplot"),
        ("app.css", None),
        ("app.js", None),
    ):
        text = wheel_text(installed.wheel, f"{STATIC}/{name}")
        opening = text[:200] if head is None else text[: text.index(head) + 200]
        assert opening in html, f"{name} is not inline in the report"
    # Nothing loaded from anywhere: no script src, no stylesheet link, certainly not from a CDN.
    refs = References.of(html)
    assert refs.scripts == [] and refs.stylesheets == [], (refs.scripts, refs.stylesheets)
    assert not re.search(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*["']?https?:""", html, re.I)


def test_dashboard_serves_its_pages_and_assets(installed: Installed, recorded: tuple[Path, str]) -> None:
    store, run_id = recorded
    with dashboard(installed, store) as base_url:
        assets: set[str] = set()
        for page in ("/", f"/compare?runs={run_id}", f"/run/{run_id}"):
            status, body = fetch(base_url + page.lstrip("/"))
            assert status == 200, page
            refs = References.of(body.decode("utf-8"))
            local = [ref for ref in refs.scripts + refs.stylesheets if ref.startswith("/static/")]
            assert local == refs.scripts + refs.stylesheets, f"{page} loads from elsewhere: {refs}"
            assert {f"/static/{name}" for name in REQUIRED_STATIC if not name.endswith(".html")} <= set(
                local
            ), f"{page} is not the dashboard's page (the package's placeholder?): {refs}"
            assets.update(local)
        for asset in sorted(assets):
            status, body = fetch(base_url + asset.lstrip("/"))
            assert status == 200, asset
            assert body, f"{asset} is empty"
            assert body == wheel_bytes(installed.wheel, f"{STATIC}/{asset.removeprefix('/static/')}"), asset
        status, body = fetch(base_url + "api/runs")
        assert status == 200
        assert run_id in body.decode("utf-8")


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as answer:
        return answer.status, answer.read()


class References(HTMLParser):
    """The scripts (``<script src>``) and stylesheets (``<link rel=stylesheet href>``) a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []

    @classmethod
    def of(cls, html: str) -> References:
        parser = cls()
        parser.feed(html)
        parser.close()
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.scripts.append(str(attributes["src"]))
        elif tag == "link" and "stylesheet" in (attributes.get("rel") or "").lower().split():
            self.stylesheets.append(str(attributes.get("href")))

    def __repr__(self) -> str:
        return f"References(scripts={self.scripts}, stylesheets={self.stylesheets})"


@contextmanager
def dashboard(installed: Installed, store: Path) -> Iterator[str]:
    """``craft-callbacks ui --port 0`` running from the fresh venv; yields the URL it prints first.

    On leaving it sends SIGINT, what Ctrl-C sends, and expects a clean exit (status 0, no traceback).
    """
    errors = installed.work / "ui.stderr"
    with errors.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [str(installed.command), "ui", "--store", str(store), "--port", "0"],
            cwd=installed.work,
            env=installed.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    completed = False
    try:
        try:
            url = lines.get(timeout=SERVER_START_TIMEOUT_S).strip()
        except queue.Empty:
            pytest.fail(f"craft-callbacks ui printed no URL in {SERVER_START_TIMEOUT_S} s: {read(errors)}")
        if not re.fullmatch(r"http://127\.0\.0\.1:\d+/", url):
            pytest.fail(f"craft-callbacks ui printed {url!r} first, not its URL: {read(errors)}")
        yield url
        completed = True
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=HTTP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=HTTP_TIMEOUT_S)
        stdout.close()
    if completed:
        assert process.returncode == 0, (
            f"craft-callbacks ui exited {process.returncode} on SIGINT: {read(errors)}"
        )
        assert "Traceback" not in read(errors), read(errors)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
