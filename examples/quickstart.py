"""The demo: train tiny models with all three adapters, then show the runs.

    python examples/quickstart.py

Trains a HuggingFace Trainer model, a Lightning model and a Keras model on a
CPU (tiny models built in code, no download), each recorded by its
craft_callbacks adapter into the local store ./craft_metrics/metrics.db (or
the platform inside a Craft AI execution), then prints the runs, writes a
plot of the Lightning and Keras training curves and ``report.html`` (the
dashboard's compare view of the three runs, one file that opens from disk with
no network), and ends with the command that serves the live dashboard.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).parent))

import hf_trainer
import keras_fit
import lightning_module

from craft_callbacks import LocalStore


def craft_callbacks(*args: str) -> None:
    """Run the craft-callbacks command the way a user would."""
    subprocess.run([sys.executable, "-m", "craft_callbacks.cli", *args], check=True)


def ui_command() -> str:
    """``craft-callbacks ui`` as the user can type it here: through this Python's environment (the
    demo's .venv) when that is not the one on the PATH."""
    script = Path(sys.executable).parent / "craft-callbacks"
    if not script.exists():
        return "craft-callbacks ui"
    try:
        shown = script.relative_to(Path.cwd())
    except ValueError:
        shown = script
    return f"{shown} ui"


def main() -> None:
    started = time.perf_counter()
    for label, train in (
        ("HuggingFace Trainer", hf_trainer.main),
        ("Lightning", lightning_module.main),
        ("Keras", keras_fit.main),
    ):
        print(f"\n=== {label} ===", flush=True)
        train()
    print(f"\nTrained three models in {time.perf_counter() - started:.0f} s.\n", flush=True)
    store = LocalStore.existing()
    craft_callbacks("runs")
    runs = [run["execution_id"] for run in store.executions()[-3:]]
    plot = Path("craft_metrics") / "quickstart.png"
    craft_callbacks(
        "plot", runs[1], runs[2], "--metric", "train_loss", "--metric", "batch_loss", "-o", str(plot)
    )
    print(f"\nThe plot is at {plot.resolve()}", flush=True)
    report = Path("report.html")
    craft_callbacks("report", *runs, "-o", str(report))
    print(f"The report (the three runs compared; it opens from disk, offline) is at {report.resolve()}")
    print("Next: craft-callbacks show latest, craft-callbacks compare RUN RUN, craft-callbacks export latest")
    print("\nSee the runs live in your browser (http://127.0.0.1:8765/; Ctrl-C stops it), run:")
    print(f"    {ui_command()}")


if __name__ == "__main__":
    main()
