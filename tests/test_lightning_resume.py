"""Resume with Lightning: ``fit(ckpt_path=...)`` in a new process continues the run, each step once.

A real ``L.Trainer`` (tiny model, CPU) runs in a subprocess, checkpoints every
10 steps into the run's folder and crashes at step 13: the process raises and
exits (locally), or is killed (SIGKILL, as a preempted machine, on the
platform). A new process resumes from the step-10 checkpoint with
``trainer.fit(model, ckpt_path=...)``. A spy
logger beside ours keeps, with the process's attempt number, every
``(step, metrics)`` Lightning hands to loggers. The module logs ``attempt``
too, so the store shows which process each value came from.

* Locally (the run named by ``$CRAFT_CALLBACKS_RUN_ID``) the store holds one
  run, which ended in success, with one value per logged step (20 of 20): the
  crashed process's up to the checkpoint, the resumed process's after it.
* On the platform (the emulator, inside an execution) the lists only grow:
  what the crashed process sent stays, and the resumed process sends only the
  steps that were never sent, none twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from craft_callbacks import CraftCallbacksWarning, LocalStore, safe_name
from craft_callbacks.lightning import CraftAiLogger
from platform_emulator import PlatformEmulator

TIMEOUT_S = 120
BATCHES, EPOCHS = 10, 2  # 20 optimizer steps, logged at steps 0..19
STEPS = BATCHES * EPOCHS
CHECKPOINT_EVERY = 10
CRASH_AT = 13  # the process dies in the training step at global step 13: steps 0..12 were logged
EXECUTION = "exec-test-1"  # the platform fixture's execution
CLEARED_ENV = (
    "CRAFT_AI_EXECUTION_ID",
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
    "CRAFT_CALLBACKS_STORE",
    "CRAFT_CALLBACKS_RUN_ID",
    "CRAFT_CALLBACKS_DISABLED",
)

TRAIN_SCRIPT = """
import json
import os
import signal
import sys

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset

from craft_callbacks.lightning import CraftAiLogger

settings = json.loads(sys.argv[1])
ATTEMPT = settings["attempt"]


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        if self.global_step == settings.get("crash_at"):
            if settings["crash"] == "kill":  # what was logged has reached the sink; then the process dies
                self.loggers[0].experiment.flush(timeout=30)
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"crash at step {self.global_step}")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        self.log("attempt", float(ATTEMPT))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Spy(Logger):
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
            file.write(json.dumps({"attempt": ATTEMPT, "step": step, "metrics": metrics}) + "\\n")

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs):
        pass


def loader(batches, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batches * 4, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)


if __name__ == "__main__":
    torch.manual_seed(0)
    ours = CraftAiLogger(name="tiny", flush_interval=0.05, **settings.get("logger", {}))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=settings["epochs"],
        log_every_n_steps=1,
        logger=[ours, Spy(settings["spy"])],
        callbacks=[ModelCheckpoint(every_n_train_steps=settings["every"], save_top_k=-1)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train, val = loader(settings["batches"], seed=0), loader(3, seed=1)
    trainer.fit(Tiny(), train, val, ckpt_path=settings.get("ckpt"))
    print(json.dumps({"run": ours.version, "log_dir": ours.log_dir}))
"""


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **extra}
    env.pop("PYTHONWARNINGS", None)
    return env


def local_env(**extra: str) -> dict[str, str]:
    """Outside any platform execution, with no run id but the one the test gives."""
    env = subprocess_env(**extra)
    for name in CLEARED_ENV:
        if name not in extra:
            env.pop(name, None)
    return env


def train(
    folder: Path, env: dict[str, str], attempt: int, **settings: Any
) -> subprocess.CompletedProcess[str]:
    """One training process (its own process group, killed whole on a timeout); its outcome."""
    script = folder / "train.py"
    script.write_text(TRAIN_SCRIPT)
    arguments = {
        "attempt": attempt,
        "spy": str(folder / "spy.jsonl"),
        "batches": BATCHES,
        "epochs": EPOCHS,
        "every": CHECKPOINT_EVERY,
        **settings,
    }
    process = subprocess.Popen(
        [sys.executable, str(script), json.dumps(arguments)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stdout, stderr = "", ""
        pytest.fail(f"attempt {attempt} did not finish in {TIMEOUT_S} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def crash(folder: Path, env: dict[str, str], how: str) -> None:
    """The first attempt: it dies at step ``CRASH_AT``, by an exception or by SIGKILL."""
    done = train(folder, env, attempt=1, crash_at=CRASH_AT, crash=how)
    if how == "kill":
        assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-8000:])
    else:
        assert done.returncode == 1 and f"crash at step {CRASH_AT}" in done.stderr, done.stderr[-8000:]


def resume(folder: Path, env: dict[str, str], checkpoint: Path, **logger: Any) -> dict[str, str]:
    """The second attempt: a new process resumes from ``checkpoint`` and finishes."""
    done = train(folder, env, attempt=2, ckpt=str(checkpoint), logger=logger)
    assert done.returncode == 0, done.stderr[-12000:]
    assert "resumes from a checkpoint of run" not in done.stderr, done.stderr[-8000:]
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


Pairs = list[tuple[int, float]]


def spy_attempts(folder: Path) -> dict[int, dict[str, Pairs]]:
    """Attempt -> name -> every (step, value) Lightning handed the loggers in that process."""
    attempts: dict[int, dict[str, Pairs]] = {}
    for line in (folder / "spy.jsonl").read_text().splitlines():
        call = json.loads(line)
        for key, value in call["metrics"].items():
            attempts.setdefault(call["attempt"], {}).setdefault(safe_name(key), []).append(
                (call["step"], value)
            )
    return attempts


def the_checkpoint(run_folder: Path) -> Path:
    """The crashed run's step-10 checkpoint, which ModelCheckpoint wrote inside the run's folder."""
    (checkpoint,) = sorted(run_folder.rglob(f"*step={CHECKPOINT_EVERY}.ckpt"))
    return checkpoint


@pytest.mark.slow
def test_a_crashed_fit_resumed_in_a_new_process_keeps_each_step_once(tmp_path: Path) -> None:
    crash(tmp_path, local_env(), "raise")
    folder = tmp_path / "craft_metrics"
    store = LocalStore(folder / "metrics.db")
    try:
        (crashed,) = store.executions()
        run = crashed["execution_id"]
        assert crashed["status"] == "failed"
        logged = spy_attempts(tmp_path)[1]
        assert [step for step, _ in logged["train_loss"]] == list(range(CRASH_AT))
        assert store.list_series(run, "train_loss") == logged["train_loss"]  # all of it reached the store
        checkpoint = the_checkpoint(folder / run)

        result = resume(tmp_path, local_env(CRAFT_CALLBACKS_RUN_ID=run), checkpoint)  # the run to continue
        assert result == {"run": run, "log_dir": str(Path("craft_metrics") / run)}

        (resumed,) = store.executions()  # ONE run
        assert resumed["execution_id"] == run and resumed["status"] == "success"
        attempts = spy_attempts(tmp_path)
        replay_from = attempts[2]["train_loss"][0][0]
        assert replay_from == CHECKPOINT_EVERY  # the resumed fit logs again from the checkpoint on
        train_loss = store.list_series(run, "train_loss")
        assert [step for step, _ in train_loss] == list(range(STEPS))  # 20 of 20, each once
        assert store.list_series(run, "attempt") == [(step, 1.0) for step in range(CHECKPOINT_EVERY)] + [
            (step, 2.0) for step in range(CHECKPOINT_EVERY, STEPS)
        ]
        for name, pairs in attempts[2].items():  # every value: the crashed one before, the resumed one after
            before = [(step, value) for step, value in attempts[1][name] if step < replay_from]
            assert store.list_series(run, name) == before + pairs, name
        assert len(store.list_series(run, "val_loss")) == EPOCHS
        assert {path.name for path in (folder / run).rglob("*.ckpt")} == {
            f"epoch=0-step={CHECKPOINT_EVERY}.ckpt",
            f"epoch=1-step={STEPS}.ckpt",
        }  # the resumed fit's checkpoints are in the run's own folder too
        scalars = {row["name"]: row["value"] for row in store.get_metrics(execution_id=run)}
        assert scalars["train_loss"] == train_loss[-1][1]
    finally:
        store.close()


@pytest.mark.slow
def test_a_crashed_fit_resumed_on_the_platform_sends_no_value_twice(platform: PlatformEmulator) -> None:
    folder = Path.cwd()  # the test's folder (the platform fixture chdir-ed there)
    crash(folder, subprocess_env(), "kill")
    sent = {name: list(values) for (execution, name), values in platform.store.lists.items()}
    logged = spy_attempts(folder)[1]
    assert sent == {name: [value for _, value in pairs] for name, pairs in logged.items()}  # all sent
    checkpoint = the_checkpoint(folder / "craft_metrics" / EXECUTION)

    result = resume(folder, subprocess_env(), checkpoint)  # the same execution, restarted: no id to give
    assert result["run"] == EXECUTION

    attempts = spy_attempts(folder)
    assert {execution for execution, _ in platform.store.lists} == {EXECUTION}
    lists = {name: values for (_, name), values in platform.store.lists.items()}
    assert len(lists["train_loss"]) == STEPS  # 20 of 20
    assert lists["attempt"] == [1.0] * CRASH_AT + [2.0] * (STEPS - CRASH_AT)
    for name, pairs in attempts[2].items():  # the lists only grow: sent once, never again
        last_sent = max(step for step, _ in attempts[1][name])
        expected = [value for _, value in attempts[1][name]] + [
            value for step, value in pairs if step > last_sent
        ]
        assert lists[name] == expected, name
    assert platform.store.scalars[(EXECUTION, "train_loss")] == lists["train_loss"][-1]


# -- in this process: which run a resumed fit records ----------------------------------------------


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    x = torch.randn(BATCHES * 4, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)


def fit(logger: CraftAiLogger, max_steps: int, ckpt_path: Path | None = None) -> None:
    L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        log_every_n_steps=1,
        logger=logger,
        callbacks=[ModelCheckpoint(every_n_train_steps=CHECKPOINT_EVERY, save_top_k=-1)],
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(Tiny(), loader(), ckpt_path=ckpt_path)


def test_a_fit_resumed_without_the_run_id_records_a_new_run_and_says_which_to_continue(
    store: LocalStore,
) -> None:
    fit(CraftAiLogger(sink=store), max_steps=CRASH_AT)
    (first,) = store.executions()
    run = first["execution_id"]
    checkpoint = the_checkpoint(store.path.parent / run)

    unnamed = CraftAiLogger(sink=store)
    with pytest.warns(CraftCallbacksWarning, match="resumes from a checkpoint of run") as caught:
        fit(unnamed, max_steps=STEPS, ckpt_path=checkpoint)
    said = [str(w.message) for w in caught if "resumes from a checkpoint" in str(w.message)]
    assert said == [
        f"craft_callbacks: this fit resumes from a checkpoint of run {run} but records a new run, "
        f"{unnamed.version}; to continue run {run}, pass CraftAiLogger(run_id={run!r}) "
        f"or set CRAFT_CALLBACKS_RUN_ID={run}"
    ]
    assert len(store.executions()) == 2
    new_steps = [step for step, _ in store.list_series(unnamed.version, "train_loss")]
    assert new_steps == list(range(CHECKPOINT_EVERY, STEPS))
    assert [step for step, _ in store.list_series(run, "train_loss")] == list(range(CRASH_AT))  # untouched


def test_a_fit_resumed_with_the_run_id_continues_it_silently(store: LocalStore) -> None:
    fit(CraftAiLogger(sink=store), max_steps=CRASH_AT)
    (first,) = store.executions()
    run = first["execution_id"]
    checkpoint = the_checkpoint(store.path.parent / run)

    named = CraftAiLogger(sink=store, run_id=run)
    assert named.version == run and named.log_dir == str(store.path.parent / run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(named, max_steps=STEPS, ckpt_path=checkpoint)
    assert not [w for w in caught if issubclass(w.category, CraftCallbacksWarning)]
    (resumed,) = store.executions()
    assert resumed["status"] == "success"
    assert [step for step, _ in store.list_series(run, "train_loss")] == list(range(STEPS))


def test_a_checkpoint_waits_for_the_values_logged_before_it(store: LocalStore) -> None:
    """Nothing is delivered on its own here (an hour between deliveries) but at each checkpoint."""
    held: dict[int, list[int]] = {}

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            held[trainer.global_step] = [step for step, _ in store.list_series(ours.version, "train_loss")]

    ours = CraftAiLogger(sink=store, flush_interval=3600)
    L.Trainer(
        accelerator="cpu",
        max_steps=STEPS,
        log_every_n_steps=1,
        logger=ours,
        callbacks=[Watch(), ModelCheckpoint(every_n_train_steps=CHECKPOINT_EVERY, save_top_k=-1)],
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(Tiny(), loader())
    assert held[CHECKPOINT_EVERY - 1] == []
    # saved at the end of step 9, whose values Lightning logs right after: steps 0..8 were delivered
    assert held[CHECKPOINT_EVERY] == held[STEPS - 1] == list(range(CHECKPOINT_EVERY - 1))
    assert [step for step, _ in store.list_series(ours.version, "train_loss")] == list(range(STEPS))
