"""The HuggingFace adapter under ``torchrun --nproc_per_node=2`` on CPU (gloo): each value recorded once.

A real two-process DDP training (torch's launcher, the venv's python) of a
tiny model built from a config in code; both processes build the callback on
the same store, only the world process zero may record.
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

from craft_callbacks import LocalStore
from store_checks import the_one_run
from test_huggingface import SUMMARY, expected_lists

pytest.importorskip("transformers")
pytest.importorskip("torch.distributed.run")

MAX_STEPS = 20
TIMEOUT_S = 240
CLEARED_ENV = (
    "CRAFT_AI_EXECUTION_ID",
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
    "CRAFT_CALLBACKS_STORE",
    "CRAFT_CALLBACKS_DISABLED",
)

SCRIPT = """
import json
import os
import sys

out_dir, store_path, history_path, pids_dir = sys.argv[1:5]
max_steps = int(sys.argv[5])
with open(os.path.join(pids_dir, os.environ["RANK"]), "w") as file:
    file.write(str(os.getpid()))  # first thing, so the test can end this worker if the run hangs

import torch
import torch.distributed as dist
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from craft_callbacks.huggingface import CraftAiCallback


class TinyDataset(torch.utils.data.Dataset):
    def __init__(self, size):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 64, (size, 8), generator=generator)
        self.labels = (self.ids[:, 0] > 32).long()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


torch.manual_seed(0)
config = BertConfig(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
    num_labels=2,
)
args = TrainingArguments(
    output_dir=out_dir,
    max_steps=max_steps,
    logging_steps=1,
    per_device_train_batch_size=4,
    learning_rate=1e-3,
    use_cpu=True,
    report_to="none",
    save_strategy="no",
    disable_tqdm=True,
    ddp_backend="gloo",
    seed=0,
)
callback = CraftAiCallback(store_path=store_path)
trainer = Trainer(
    model=BertForSequenceClassification(config),
    args=args,
    train_dataset=TinyDataset(64),
    callbacks=[callback],
)
trainer.train()
recorded = callback.recorder is not None
if trainer.is_world_process_zero():
    with open(history_path, "w") as file:
        json.dump(
            {
                "world_size": args.world_size,
                "distributed": dist.is_available() and dist.is_initialized(),
                "backend": dist.get_backend() if dist.is_initialized() else None,
                "rank0_recorded": recorded,
                "log_history": trainer.state.log_history,
            },
            file,
        )
else:
    # the other rank must not even have opened a run
    assert not recorded, "a process other than the world process zero opened a run"
"""


def run_torchrun(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    store_path = tmp_path / "store" / "metrics.db"
    history_path = tmp_path / "history.json"
    pids = tmp_path / "pids"
    pids.mkdir()
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        TOKENIZERS_PARALLELISM="false",
        CRAFT_CALLBACKS_VERBOSITY="warning",
    )
    for name in CLEARED_ENV:  # outside any platform execution, recording on
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        str(script),
        str(tmp_path / "out"),
        str(store_path),
        str(history_path),
        str(pids),
        str(MAX_STEPS),
    ]
    log_path = tmp_path / "torchrun.log"
    # Output to a file, not a pipe: a worker left behind cannot block the reading.
    with (
        log_path.open("w") as log,
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log) as torchrun,
    ):
        try:
            torchrun.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            end_hung_run(torchrun, pids, script)
            pytest.fail(f"torchrun did not finish in {TIMEOUT_S} s; output:\n{tail(log_path)}")
    assert torchrun.returncode == 0, f"torchrun exited {torchrun.returncode}; output:\n{tail(log_path)}"
    assert history_path.exists(), f"rank 0 wrote no log history; output:\n{tail(log_path)}"
    return store_path, json.loads(history_path.read_text())


def tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-8000:]


def end_hung_run(torchrun: subprocess.Popen[Any], pids: Path, script: Path) -> None:
    """torchrun ends its workers on SIGTERM; the workers (in sessions of their own) are killed
    by their pid as well, in case torchrun could not."""
    torchrun.terminate()
    try:
        torchrun.wait(timeout=30)
    except subprocess.TimeoutExpired:
        torchrun.kill()
        torchrun.wait()
    for pid_file in pids.iterdir():
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text())
            # only a process still running this test's script (never a pid reused since)
            if str(script).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_torchrun_two_processes_record_each_value_once(tmp_path: Path) -> None:
    store_path, result = run_torchrun(tmp_path)
    assert result["world_size"] == 2 and result["distributed"], result
    assert result["backend"] == "gloo"
    assert result["rank0_recorded"]
    history = result["log_history"]
    expected = expected_lists(history)
    assert len(expected["loss"]) == MAX_STEPS

    store = LocalStore(store_path)
    try:
        run_id, lists = the_one_run(store)
        assert lists == expected  # value for value: nothing from rank 1, nothing twice
        for name, values in lists.items():
            steps = [step for step, _ in store.list_series(run_id, name)]
            assert len(steps) == len(set(steps)) == len(values), name
        assert [step for step, _ in store.list_series(run_id, "loss")] == list(range(1, MAX_STEPS + 1))
        scalars = {row["name"]: row["value"] for row in store.get_metrics()}
        summary = history[-1]
        assert SUMMARY in summary
        assert scalars[SUMMARY] == summary[SUMMARY]
        assert scalars["train_loss"] == summary["train_loss"]
    finally:
        store.close()
