"""HF resume: ``train(resume_from_checkpoint=...)`` continues the checkpoint's run, each step once.

A real Trainer in a child process is killed at step 13 (SIGKILL: no atexit,
no close); a new process resumes from the step-10 checkpoint and trains to
step 20. The run id travels in the checkpoint's ``trainer_state.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from craft_callbacks import LocalStore
from platform_emulator import PlatformEmulator

TRAIN = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from transformers import Trainer, TrainerCallback
    from craft_callbacks.huggingface import CraftAiCallback
    from test_huggingface import TinyDataset, arguments, tiny_model
    from pathlib import Path

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 13:
                os.kill(os.getpid(), signal.SIGKILL)  # the process dies, nothing is closed

    resume = sys.argv[2] == "resume"
    args = arguments(Path("."), max_steps=20, save_strategy="steps", save_steps=10, logging_steps=1)
    trainer = Trainer(
        model=tiny_model(),
        args=args,
        train_dataset=TinyDataset(64),
        callbacks=[CraftAiCallback(flush_interval=60)] + ([] if resume else [Crash()]),
    )
    trainer.train(resume_from_checkpoint="out/checkpoint-10" if resume else None)
    with open("history.json", "w") as out:
        import json
        json.dump(trainer.state.log_history, out)
    """
)


def _train(mode: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    tests = str(Path(__file__).resolve().parent)
    return subprocess.run(
        [sys.executable, "-c", TRAIN, tests, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def _crash_then_resume(env: dict[str, str] | None = None) -> list[float]:
    crashed = _train("crash", env)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert Path("out/checkpoint-10/trainer_state.json").is_file()
    saved = json.loads(Path("out/checkpoint-10/trainer_state.json").read_text())["stateful_callbacks"]
    assert saved["CraftAiCallback"]["attributes"]["run_id"]  # the run id travels with the checkpoint
    resumed = _train("resume", env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    history = json.loads(Path("history.json").read_text())
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.mark.slow
def test_a_resumed_trainer_continues_its_run_each_step_once() -> None:
    resumed_losses = _crash_then_resume()
    store = LocalStore()
    (run,) = store.executions()  # one run, not two
    assert run["status"] == "success"
    series = store.list_series(run["execution_id"], "loss")
    assert [step for step, _ in series] == list(range(1, 21))  # 20 of 20, each once
    assert [value for step, value in series if step > 10] == pytest.approx(resumed_losses[-10:])


@pytest.mark.slow
def test_a_resumed_trainer_on_the_platform_sends_no_step_twice(platform: PlatformEmulator) -> None:
    _crash_then_resume()
    losses = platform.store.lists[("exec-test-1", "loss")]
    assert len(losses) == 20  # steps 1-13 from the first try (11-13 kept), 14-20 from the resumed one
    assert len(platform.store.lists[("exec-test-1", "learning_rate")]) == 20
