"""``Fabric(loggers=[CraftAiLogger()])``: a real Lightning Fabric on CPU, a tiny model, ``fabric.log_dict``.

Fabric hands its loggers only ``log_metrics`` (from ``fabric.log`` and
``fabric.log_dict``) and whatever the script calls on ``fabric.logger``; it
never calls ``finalize``. So the run is the script's: it ends with
``fabric.logger.finalize(status)``, or when the script ends, with the status
of how it ended (``success``, ``failed`` for an exception, ``interrupted``
for Ctrl-C). The scripts that end on their own run in a subprocess, as a user
would run them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from craft_callbacks import LocalStore
from craft_callbacks.lightning import CraftAiLogger

TIMEOUT_S = 300
STEPS = 12
VAL_EVERY = 4
CLEARED_ENV = (
    "CRAFT_AI_EXECUTION_ID",
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
    "CRAFT_CALLBACKS_STORE",
    "CRAFT_CALLBACKS_DISABLED",
    "CRAFT_CALLBACKS_RUN_ID",
    "CRAFT_CALLBACKS_RUN_NAME",
    "PYTHONWARNINGS",
)

# The training loop of a Fabric script; `logged` keeps every value as the script logged it.
TRAINING = """
def train(fabric, steps, val_every, logged):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model, optimizer = fabric.setup(model, optimizer)
    fabric.logger.log_hyperparams({"lr": 0.05, "optimizer": {"name": "sgd"}, "steps": steps})
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(8, 4, generator=generator)
        y = x.sum(dim=1, keepdim=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        fabric.backward(loss)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        fabric.log_dict({"train/loss": loss.detach(), "lr": lr}, step=step)
        logged.setdefault("train_loss", []).append([step, loss.item()])
        logged.setdefault("lr", []).append([step, lr])
        if (step + 1) % val_every == 0:
            val = torch.tensor(1.0 / (step + 1))
            fabric.log("val/loss", val, step=step)
            logged.setdefault("val_loss", []).append([step, val.item()])
"""

SCRIPT = (
    """
import json
import sys

import lightning as L
import torch

from craft_callbacks.lightning import CraftAiLogger
"""
    + TRAINING
    + """

if __name__ == "__main__":
    store_path, out_path, steps, val_every, ending = sys.argv[1:6]
    logger = CraftAiLogger(store_path=store_path, name="fabric")
    fabric = L.Fabric(accelerator="cpu", devices=1, loggers=[logger])
    logged = {}
    train(fabric, int(steps), int(val_every), logged)
    with open(out_path, "w") as out:
        json.dump({"logged": logged, "run": fabric.logger.version}, out)
    if ending == "exception":
        raise RuntimeError("boom after training")
    if ending == "interrupt":
        raise KeyboardInterrupt
    # "normal": the script ends here, as most do, without finalize
"""
)

namespace: dict[str, Any] = {"torch": torch}
exec(TRAINING, namespace)  # the same loop, in this process
train = namespace["train"]


def series_of(store: LocalStore, run: str) -> dict[str, list[list[Any]]]:
    names = [row["name"] for row in store.get_list_metrics(execution_id=run)]
    return {name: [[step, value] for step, value in store.list_series(run, name)] for name in names}


def test_fabric_log_dict_is_recorded_exactly(store: LocalStore, tmp_path: Path) -> None:
    fabric = L.Fabric(accelerator="cpu", devices=1, loggers=[CraftAiLogger(sink=store, name="fabric")])
    logged: dict[str, list[list[Any]]] = {}
    train(fabric, STEPS, VAL_EVERY, logged)
    fabric.logger.finalize("success")

    (run,) = store.executions()
    assert run["status"] == "success" and run["pipeline_name"] == "fabric"
    assert run["execution_id"] == fabric.logger.version
    assert len(logged["train_loss"]) == STEPS and len(logged["val_loss"]) == STEPS // VAL_EVERY
    assert series_of(store, run["execution_id"]) == logged  # every value, its step, in order, nothing else
    scalars = {row["name"]: row["value"] for row in store.get_metrics(execution_id=run["execution_id"])}
    assert scalars == {name: pairs[-1][1] for name, pairs in logged.items()}
    params = run["hyperparameters"]
    assert params["lr"] == 0.05 and params["optimizer/name"] == "sgd" and params["steps"] == STEPS


def run_fabric_script(tmp_path: Path, ending: str) -> tuple[int, str, dict[str, Any], LocalStore]:
    script, out_path, store_path = tmp_path / "train_fabric.py", tmp_path / "logged.json", tmp_path / "m.db"
    script.write_text(SCRIPT)
    env = {key: value for key, value in os.environ.items() if key not in CLEARED_ENV}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", CRAFT_CALLBACKS_VERBOSITY="warning")
    done = subprocess.run(
        [sys.executable, str(script), str(store_path), str(out_path), str(STEPS), str(VAL_EVERY), ending],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert out_path.exists(), f"the script did not train (exit {done.returncode}):\n{done.stderr[-8000:]}"
    return done.returncode, done.stderr, json.loads(out_path.read_text()), LocalStore(store_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ending", "status", "exit_code"),
    [("normal", "success", 0), ("exception", "failed", 1), ("interrupt", "interrupted", -signal.SIGINT)],
)
def test_a_fabric_script_ends_its_run_as_it_ended(
    tmp_path: Path, ending: str, status: str, exit_code: int
) -> None:
    code, stderr, report, store = run_fabric_script(tmp_path, ending)
    try:
        assert code == exit_code, stderr[-8000:]
        (run,) = store.executions()
        assert run["execution_id"] == report["run"] and run["pipeline_name"] == "fabric"
        assert run["status"] == status, stderr[-8000:]
        assert series_of(store, run["execution_id"]) == report["logged"]
        assert run["hyperparameters"]["optimizer/name"] == "sgd"
    finally:
        store.close()
