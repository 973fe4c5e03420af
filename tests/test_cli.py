"""The craft-callbacks command, run as a user runs it, on a store filled by real training runs."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from craft_callbacks import LocalStore
from craft_callbacks.cli.export import read_csv_value

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def craft_callbacks(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "craft_callbacks.cli", *args]
    if store is not None:
        command += ["--store", str(store)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """A store with three real runs: the Lightning example twice (two learning rates), Keras once."""
    folder = tmp_path_factory.mktemp("runs")
    store = folder / "metrics.db"
    script = (
        "import sys, warnings\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        "warnings.simplefilter('ignore')\n"
        "import keras_fit, lightning_module\n"
        "lightning_module.main(lr=0.01, epochs=2)\n"
        "lightning_module.main(lr=0.05, epochs=2)\n"
        "keras_fit.main(epochs=2)\n"
    )
    env = {"CRAFT_CALLBACKS_STORE": str(store), "KERAS_BACKEND": "torch", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [run["execution_id"] for run in LocalStore(store).executions()]
    assert len(runs) == 3
    yield store, runs


def test_runs_lists_every_run(filled: tuple[Path, list[str]]) -> None:
    store, runs = filled
    table = craft_callbacks("runs", store=store)
    assert table.returncode == 0, table.stderr
    assert all(run in table.stdout for run in runs)
    assert "lightning-regressor" in table.stdout and "keras-classifier" in table.stdout
    listed = json.loads(craft_callbacks("runs", "--json", store=store).stdout)
    assert [run["execution_id"] for run in listed] == runs
    assert all(run["status"] == "success" for run in listed)
    assert "train_loss" in listed[0]["scalars"]


def test_show_a_run_by_prefix_and_latest(filled: tuple[Path, list[str]]) -> None:
    store, runs = filled
    shown = craft_callbacks("show", "latest", store=store)
    assert shown.returncode == 0, shown.stderr
    assert runs[-1] in shown.stdout
    for expected in ("scalars", "lists", "hyperparameters", "batch_loss", "val_binary_accuracy", "dataset"):
        assert expected in shown.stdout
    prefix = runs[0][: len(runs[0]) - 3]
    if any(run != runs[0] and run.startswith(prefix) for run in runs):
        prefix = runs[0]
    data = json.loads(craft_callbacks("show", prefix, "--json", store=store).stdout)
    assert data["execution_id"] == runs[0]
    assert data["hyperparameters"]["lr"] == 0.01
    # 320 samples in batches of 16: 20 steps per epoch, logged every 2nd step, for 2 epochs
    assert data["lists"]["train_loss"]["steps"] == list(range(1, 40, 2))


def test_compare_puts_runs_side_by_side(filled: tuple[Path, list[str]]) -> None:
    store, runs = filled
    compared = craft_callbacks("compare", runs[0], runs[1], store=store)
    assert compared.returncode == 0, compared.stderr
    assert runs[0] in compared.stdout and runs[1] in compared.stdout and "lr" in compared.stdout
    data = json.loads(craft_callbacks("compare", runs[0], runs[1], "--json", store=store).stdout)
    assert data[runs[0]]["hyperparameters"]["lr"] == 0.01
    assert data[runs[1]]["hyperparameters"]["lr"] == 0.05
    assert data[runs[0]]["scalars"]["val_loss"] != data[runs[1]]["scalars"]["val_loss"]


def test_plot_writes_a_png_with_the_runs_curves(filled: tuple[Path, list[str]], tmp_path: Path) -> None:
    store, runs = filled
    output = tmp_path / "curves.png"
    plotted = craft_callbacks(
        "plot",
        runs[0],
        runs[1],
        "--metric",
        "train_loss",
        "--metric",
        "val_loss",
        "-o",
        str(output),
        store=store,
    )
    assert plotted.returncode == 0, plotted.stderr
    assert str(output) in plotted.stdout
    with Image.open(output) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 200
        pixels = {color for _, color in image.convert("RGB").getcolors(maxcolors=1 << 24) or []}
    assert (31, 119, 180) in pixels  # matplotlib's first line colour: the first run
    assert (255, 127, 14) in pixels  # its second: the second run


def test_export_round_trips_every_value_exactly(filled: tuple[Path, list[str]], tmp_path: Path) -> None:
    store, runs = filled
    reader = LocalStore(store)
    for run in runs:
        exported = json.loads(craft_callbacks("export", run, "--format", "json", store=store).stdout)
        for row in reader.get_list_metrics(execution_id=run):
            pairs = reader.list_series(run, row["name"])
            assert exported["lists"][row["name"]]["values"] == [value for _, value in pairs]
            assert exported["lists"][row["name"]]["steps"] == [step for step, _ in pairs]
        assert exported["scalars"] == {
            row["name"]: row["value"] for row in reader.get_metrics(execution_id=run)
        }
        path = tmp_path / f"{run}.csv"
        written = craft_callbacks("export", run, "--format", "csv", "-o", str(path), store=store)
        assert written.returncode == 0, written.stderr
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        lists: dict[str, list[int | float]] = {}
        for line in rows:
            if line["kind"] == "list":
                lists.setdefault(line["name"], []).append(read_csv_value(line["value"]))
            else:
                assert read_csv_value(line["value"]) == exported["scalars"][line["name"]]
        assert lists == {name: series["values"] for name, series in exported["lists"].items()}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no-such-run"], "no run 'no-such-run'"),
        (["show", "2"], "matches 3 runs"),
        (["plot", "latest", "--metric", "nope", "-o", "x.png"], "no list metric 'nope'"),
        (["plot", "latest", "-o", "/proc/forbidden/x.png"], "cannot write /proc/forbidden/x.png"),
        (["export", "latest", "-o", "/proc/forbidden/x.json"], "cannot write /proc/forbidden/x.json"),
    ],
)
def test_user_errors_are_one_line_and_a_non_zero_exit(
    filled: tuple[Path, list[str]], args: list[str], message: str
) -> None:
    store, _ = filled
    failed = craft_callbacks(*args, store=store)
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert message in failed.stderr and "Traceback" not in failed.stderr


def test_no_store_and_a_store_from_a_newer_version(tmp_path: Path) -> None:
    missing = craft_callbacks("runs", store=tmp_path / "absent.db")
    assert missing.returncode == 2 and "no metrics store at" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "absent.db").exists()
    newer = tmp_path / "newer.db"
    LocalStore(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 7")
    refused = craft_callbacks("runs", store=newer)
    assert refused.returncode == 2 and "newer craft_callbacks" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    LocalStore(tmp_path / "empty.db").close()
    shown = craft_callbacks("show", "latest", store=tmp_path / "empty.db")
    assert shown.returncode == 2 and "has no runs yet" in shown.stderr


@pytest.fixture
def many_metrics(tmp_path: Path) -> tuple[Path, str]:
    """A run with 16 list metrics, 12 of them alphabetically before ``loss``."""
    path = tmp_path / "many.db"
    store = LocalStore(path)
    run = store.start_execution(pipeline_name="many")
    names = [f"a_metric_{index:02d}" for index in range(12)] + ["loss", "train_loss", "val_loss", "epoch"]
    steps = list(range(50))
    store.write(run, lists=[(name, steps, [1.0 / (step + 1) for step in steps]) for name in names])
    store.set_status(run, "success")
    store.close()
    return path, run


def test_plot_says_which_metrics_it_left_out_and_draws_the_losses(
    many_metrics: tuple[Path, str], tmp_path: Path
) -> None:
    path, run = many_metrics
    output = tmp_path / "many.png"
    plotted = craft_callbacks("plot", run, "-o", str(output), store=path)
    assert plotted.returncode == 0, plotted.stderr
    assert output.is_file()
    message = plotted.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "16 list metrics, drew 12 (loss, train_loss, val_loss, " in message
    assert "left out 4: a_metric_09, a_metric_10, a_metric_11, epoch" in message
    assert "--metric NAME" in message
    chosen = craft_callbacks("plot", run, "--metric", "a_metric_11", "-o", str(output), store=path)
    assert chosen.returncode == 0 and chosen.stderr == ""


def test_plot_order_puts_the_usual_training_names_first() -> None:
    from craft_callbacks.cli.commands import plot_order

    assert plot_order(["zeta", "val_accuracy", "batch_loss", "loss", "val_loss", "f1", "epoch"]) == [
        "loss",
        "val_loss",
        "val_accuracy",
        "batch_loss",
        "f1",
        "epoch",
        "zeta",
    ]


def test_plot_smooth_draws_the_smoothed_line_over_the_faint_raw_one(
    filled: tuple[Path, list[str]], tmp_path: Path
) -> None:
    store, runs = filled
    output = tmp_path / "smooth.png"
    plotted = craft_callbacks(
        "plot", runs[0], "--metric", "train_loss", "--smooth", "0.6", "-o", str(output), store=store
    )
    assert plotted.returncode == 0, plotted.stderr
    with Image.open(output) as image:
        pixels = {color for _, color in image.convert("RGB").getcolors(maxcolors=1 << 24) or []}
    assert (31, 119, 180) in pixels  # the smoothed line, in the run's colour


@pytest.mark.parametrize("weight", ["1", "-0.1", "abc"])
def test_plot_smooth_takes_a_weight_in_0_1(filled: tuple[Path, list[str]], weight: str) -> None:
    store, _ = filled
    refused = craft_callbacks("plot", "latest", "--smooth", weight, "-o", "x.png", store=store)
    assert refused.returncode == 2 and "--smooth" in refused.stderr and "Traceback" not in refused.stderr
