"""The Lightning adapter in other processes: ``strategy="ddp_spawn"`` on 2 CPUs, and ``LightningCLI``.

Both trainings run in a subprocess (the venv's python, a script written to
the test's folder), as a user would run them:

* ``ddp_spawn`` pickles the trainer and its loggers into two fresh
  processes; a spy logger beside ours keeps, on global rank 0 only, every
  ``(step, metrics)`` Lightning hands to loggers. The store must hold one run
  whose lists are exactly the spy's, value for value and step for step:
  nothing from rank 1, nothing twice.
* ``LightningCLI`` builds our logger from the command line
  (``--trainer.logger=craft_callbacks.lightning.CraftAiLogger`` and its
  ``init_args``); the run gets its name, its values, the model's
  hyperparameters and its status.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from craft_callbacks import LocalStore, safe_name
from store_checks import the_one_run

pytest.importorskip("lightning")
pytest.importorskip("torch.distributed")

TIMEOUT_S = 300
HANG_DUMP_S = 240  # a spawned rank still running then prints its stack and exits
CLEARED_ENV = (
    "CRAFT_AI_EXECUTION_ID",
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
    "CRAFT_CALLBACKS_STORE",
    "CRAFT_CALLBACKS_DISABLED",
    "PYTHONWARNINGS",
)

# 16 batches of 4 shared by 2 processes: 8 optimizer steps per epoch on each, 2 epochs.
DDP_BATCHES = 16
DDP_EPOCHS = 2
DDP_STEPS = DDP_BATCHES // 2 * DDP_EPOCHS

DDP_SCRIPT = """
import faulthandler
import json
import os
import sys

if __name__ == "__mp_main__":  # a spawned rank: if it hangs, print where, and exit (the test shows it)
    faulthandler.dump_traceback_later(float(os.environ["HANG_DUMP_S"]), exit=True)

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset

from craft_callbacks.lightning import CraftAiLogger


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Spy(Logger):
    # Picklable (ddp_spawn sends it to each process); appends on global rank 0 only.
    def __init__(self, path):
        super().__init__()
        self.path = path

    @property
    def name(self):
        return "spy"

    @property
    def version(self):
        return "0"

    @rank_zero_only
    def log_metrics(self, metrics, step=None):
        with open(self.path, "a") as file:
            file.write(json.dumps({"pid": os.getpid(), "step": step, "metrics": metrics}) + "\\n")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs):
        pass


def loader(batches, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batches * 4, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)


if __name__ == "__main__":
    store_path, spy_path, batches, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=epochs,
        log_every_n_steps=1,
        logger=[CraftAiLogger(store_path=store_path), Spy(spy_path)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), loader(batches, seed=0), loader(4, seed=1))
    print(json.dumps({"main_pid": os.getpid(), "world_size": trainer.world_size}))
"""

CLI_HIDDEN = 12  # not the default (8): it must come from the command line
CLI_BATCHES = 6

CLI_SCRIPT = """
import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI
from torch.utils.data import DataLoader, TensorDataset


class Model(L.LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class DataModule(L.LightningDataModule):
    def __init__(self, batches: int = 6, batch_size: int = 4):
        super().__init__()
        self.save_hyperparameters()

    def _loader(self, batches, seed):
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(batches * self.hparams.batch_size, 4, generator=generator)
        return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=self.hparams.batch_size)

    def train_dataloader(self):
        return self._loader(self.hparams.batches, seed=0)

    def val_dataloader(self):
        return self._loader(2, seed=1)


if __name__ == "__main__":
    LightningCLI(Model, DataModule)  # Lightning's defaults: the config is saved, never overwritten
"""


def cli_arguments(*extra: str) -> list[str]:
    """``fit`` with our logger built from the command line, a tiny CPU training."""
    return [
        "fit",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.max_epochs=1",
        "--trainer.log_every_n_steps=1",
        "--trainer.logger=craft_callbacks.lightning.CraftAiLogger",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--data.batches={CLI_BATCHES}",
        *extra,
    ]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        CRAFT_CALLBACKS_VERBOSITY="warning",
        HANG_DUMP_S=str(HANG_DUMP_S),
    )
    for name in CLEARED_ENV:  # outside any platform execution, recording on, Python's own warning filters
        env.pop(name, None)
    return env


def run_script(tmp_path: Path, name: str, source: str, *args: str) -> tuple[str, str]:
    """Run ``source`` as a script in its own process group; (stdout, stderr), or the test fails.

    On a timeout the whole group is killed: spawned ranks outlive their parent otherwise.
    """
    script = tmp_path / name
    script.write_text(source)
    process = subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{name} did not finish in {TIMEOUT_S} s; stderr:\n{stderr[-8000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing of the run may outlive the test
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"{name} exited {process.returncode}; stderr:\n{stderr[-12000:]}"
    return stdout, stderr


def spy_series(spy_path: Path) -> tuple[set[int], dict[str, list[tuple[int | None, float]]]]:
    """The processes the spy recorded in, and every value it was handed, name by name, with its step."""
    pids: set[int] = set()
    series: dict[str, list[tuple[int | None, float]]] = {}
    for line in spy_path.read_text().splitlines():
        call: dict[str, Any] = json.loads(line)
        pids.add(call["pid"])
        for key, value in call["metrics"].items():
            series.setdefault(safe_name(key), []).append((call["step"], value))
    return pids, series


@pytest.mark.slow
def test_ddp_spawn_two_processes_record_each_value_once(tmp_path: Path) -> None:
    store_path = tmp_path / "store" / "metrics.db"
    spy_path = tmp_path / "spy.jsonl"
    stdout, stderr = run_script(
        tmp_path,
        "train_spawn.py",
        DDP_SCRIPT,
        str(store_path),
        str(spy_path),
        str(DDP_BATCHES),
        str(DDP_EPOCHS),
    )
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["world_size"] == 2, result
    assert spy_path.exists(), f"the spy recorded nothing; stderr:\n{stderr[-8000:]}"
    pids, expected = spy_series(spy_path)
    assert len(pids) == 1 and result["main_pid"] not in pids, "the spy ran on more than one rank, or in main"
    assert {"train_loss", "val_loss", "epoch"} <= set(expected), sorted(expected)
    assert len(expected["train_loss"]) == DDP_STEPS  # each rank's share of the batches, once
    assert len(expected["val_loss"]) == DDP_EPOCHS

    store = LocalStore(store_path)
    try:
        run_id, lists = the_one_run(store)
        assert lists == {name: [value for _, value in pairs] for name, pairs in expected.items()}
        for name, pairs in expected.items():
            assert store.list_series(run_id, name) == pairs, name  # same values, same steps, same order
        # one value per step (``epoch`` is not: Lightning sends it with train_loss and with val_loss)
        for name in ("train_loss", "val_loss"):
            steps = [step for step, _ in store.list_series(run_id, name)]
            assert len(steps) == len(set(steps)), f"{name}: a step recorded twice"
        scalars = {row["name"]: row["value"] for row in store.get_metrics(execution_id=run_id)}
        assert scalars["train_loss"] == expected["train_loss"][-1][1]
    finally:
        store.close()


@pytest.mark.slow
def test_lightning_cli_builds_the_logger_from_the_command_line(tmp_path: Path) -> None:
    store_path = tmp_path / "metrics.db"
    run_script(
        tmp_path,
        "train_cli.py",
        CLI_SCRIPT,
        *cli_arguments(
            f"--trainer.logger.init_args.store_path={store_path}",
            "--trainer.logger.init_args.name=cli_run",
            "--trainer.enable_checkpointing=false",
            f"--model.hidden={CLI_HIDDEN}",
        ),
    )
    store = LocalStore(store_path)
    try:
        runs = store.executions()
        assert len(runs) == 1, f"expected one run, found {len(runs)}: {runs}"
        run = runs[0]
        assert run["pipeline_name"] == "cli_run"
        assert run["status"] == "success"
        hyperparameters = run["hyperparameters"]
        assert hyperparameters["hidden"] == CLI_HIDDEN, hyperparameters
        assert hyperparameters["lr"] == 0.05, hyperparameters
        assert hyperparameters["batches"] == CLI_BATCHES, hyperparameters  # the datamodule's, merged in
        run_id = run["execution_id"]
        assert (tmp_path / run_id / "config.yaml").is_file()  # the run's folder, beside the named store
        train_loss = store.list_series(run_id, "train_loss")
        assert len(train_loss) == CLI_BATCHES, train_loss
        assert [step for step, _ in train_loss] == list(range(CLI_BATCHES))
        lists = {row["name"]: row["values"] for row in store.get_list_metrics(execution_id=run_id)}
        assert len(lists["val_loss"]) == 1
    finally:
        store.close()


@pytest.mark.slow
def test_lightning_cli_twice_in_one_folder_one_folder_per_run(tmp_path: Path) -> None:
    """Each run gets its folder, ``craft_metrics/<run id>/``: its saved config and its checkpoints."""
    yaml = pytest.importorskip("yaml")
    hidden_sizes = (CLI_HIDDEN, CLI_HIDDEN + 4)  # one per run: they tell the runs and configs apart
    for hidden in hidden_sizes:
        run_script(tmp_path, "train_cli.py", CLI_SCRIPT, *cli_arguments(f"--model.hidden={hidden}"))

    folder = tmp_path / "craft_metrics"
    store = LocalStore(folder / "metrics.db")
    try:
        runs = store.executions()
        assert sorted(run["hyperparameters"]["hidden"] for run in runs) == sorted(hidden_sizes), runs
        for run in runs:
            run_id, hidden = run["execution_id"], run["hyperparameters"]["hidden"]
            assert run["status"] == "success", run
            train_loss = store.list_series(run_id, "train_loss")
            assert [step for step, _ in train_loss] == list(range(CLI_BATCHES)), (hidden, train_loss)
            run_folder = folder / run_id
            config = yaml.safe_load((run_folder / "config.yaml").read_text())
            assert config["model"]["hidden"] == hidden, config["model"]
            checkpoints = sorted(run_folder.rglob("*.ckpt"))
            assert len(checkpoints) == 1, (run_id, sorted(folder.rglob("*")))
        assert len({run["execution_id"] for run in runs}) == 2
        assert sorted(path.relative_to(folder).parts[0] for path in folder.rglob("config.yaml")) == sorted(
            run["execution_id"] for run in runs
        )
        assert sorted(path.relative_to(folder).parts[0] for path in folder.rglob("*.ckpt")) == sorted(
            run["execution_id"] for run in runs
        )
    finally:
        store.close()
