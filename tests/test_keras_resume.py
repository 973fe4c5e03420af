"""Keras resume: a fit restored by ``BackupAndRestore`` continues its run, each step once.

The crash is real: a script trains 6 epochs with ``BackupAndRestore`` saving each
epoch, and its process dies in epoch 4 (index 3), at batch 6 of 8, after the
backup of epoch 3 and after its recorder delivered the values of steps past that
backup (so the resume has values to replace, or not to send again). A NEW process
runs the same script: Keras restores epoch 3 and trains epochs 4 to 6. Each
attempt writes what Keras gave its callbacks (the truth) to a file as it goes, so
the store can be checked value by value.

With 64 samples in batches of 8 an epoch is 8 steps: the epochs end at steps 8,
16, ..., 48; batch values (``log_every_n_steps=2``) are at steps 2, 4, ..., 48.
The backup is at step 24; the crash at step 30.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import torch

from craft_callbacks import CraftCallbacksWarning, LocalStore
from craft_callbacks.keras import RUN_FILE, CraftAiKerasCallback
from platform_emulator import PlatformEmulator

EXECUTION = "exec-test-1"
EPOCHS = 6
STEPS_PER_EPOCH = 8
EVERY = 2
CRASH_EPOCH, CRASH_BATCH = 3, 5  # epoch index 3 (the 4th), batch index 5: step 30
BACKUP_STEP = CRASH_EPOCH * STEPS_PER_EPOCH  # 24: the end of the last epoch backed up
CRASH_STEP = BACKUP_STEP + CRASH_BATCH + 1  # 30
TIMEOUT_S = 240

SCRIPT = """
import json, os, signal, sys
import keras
import numpy as np
from craft_callbacks.keras import CraftAiKerasCallback

backup_dir, store_path, truth_path, crash = sys.argv[1:5]

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
model = keras.Sequential(
    [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
)
model.compile(
    optimizer=keras.optimizers.SGD(learning_rate=0.05),
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
)
backup = keras.callbacks.BackupAndRestore(backup_dir)  # saves at the end of each epoch
craft = CraftAiKerasCallback(
    backup_dir=backup, store_path=store_path, log_every_n_steps=2, flush_interval=0.05
)


def keep(name, step, value):  # appended at once: what a killed process wrote stays
    with open(truth_path, "a") as out:
        out.write(json.dumps([name, step, float(value)]) + "\\n")


class Truth(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.epoch * 8 + batch + 1
        if step % 2 == 0:
            keep("batch_loss", step, logs["loss"])
        if crash != "none" and (self.epoch, batch) == (3, 5):
            # the recorder delivered what it logged (as it does every flush_interval), then the
            # process dies: killed, or an exception out of fit
            craft.recorder.flush(timeout=30)
            print("crashing", flush=True)
            if crash == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("the training crashed")

    def on_epoch_end(self, epoch, logs=None):
        keep("loss", (epoch + 1) * 8, logs["loss"])


history = model.fit(x, y, batch_size=8, epochs=6, callbacks=[backup, craft, Truth()], verbose=0)
print(json.dumps({"run": craft.recorder.execution_id, "epochs": len(history.history["loss"])}))
"""


def run_script(folder: Path, crash: str, attempt: int) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the training script in a new process; its truth file is returned with it."""
    script = folder / "train.py"
    script.write_text(SCRIPT)
    truth = folder / f"truth_{attempt}.jsonl"
    env = {
        **os.environ,
        "KERAS_BACKEND": "torch",
        "CUDA_VISIBLE_DEVICES": "",
        "CRAFT_CALLBACKS_VERBOSITY": "warning",
    }
    env.pop("PYTHONWARNINGS", None)
    try:
        done = subprocess.run(
            [
                sys.executable,
                str(script),
                str(folder / "backup"),
                str(folder / "store" / "metrics.db"),
                str(truth),
                crash,
            ],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the training script did not finish in {TIMEOUT_S} s; stderr:\n{expired.stderr!r}")
    return done, truth


def read_truth(path: Path) -> dict[str, dict[int, float]]:
    """What Keras gave the callbacks in one attempt: name -> step -> value."""
    truth: dict[str, dict[int, float]] = {"loss": {}, "batch_loss": {}}
    for line in path.read_text().splitlines():
        name, step, value = json.loads(line)
        assert step not in truth[name], (name, step)
        truth[name][step] = value
    return truth


def crash_then_resume(folder: Path, crash: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The crashed attempt's truth, the resumed attempt's truth, the resumed script's report."""
    crashed, first_truth = run_script(folder, crash, 1)
    assert "crashing" in crashed.stdout, crashed.stderr[-8000:]
    if crash == "kill":
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-8000:]
    else:
        assert crashed.returncode == 1 and "the training crashed" in crashed.stderr, crashed.stderr[-8000:]
    first = read_truth(first_truth)
    assert sorted(first["loss"]) == [8, 16, 24] and max(first["batch_loss"]) == CRASH_STEP
    backup = folder / "backup"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == CRASH_EPOCH
    kept = json.loads((backup / RUN_FILE).read_text())
    assert kept["epoch_steps"] == {"1": 8, "2": 16, "3": 24}
    return first, kept, kept["run_id"]


def resume(folder: Path) -> tuple[dict[str, dict[int, float]], dict[str, Any]]:
    resumed, second_truth = run_script(folder, "none", 2)
    assert resumed.returncode == 0, resumed.stderr[-8000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["epochs"] == EPOCHS - CRASH_EPOCH  # Keras restored the backup: epochs 4 to 6
    second = read_truth(second_truth)
    assert min(second["loss"]) == 32 and min(second["batch_loss"]) == BACKUP_STEP + EVERY
    assert not (folder / "backup").exists()  # BackupAndRestore removed its folder, the run file with it
    return second, report


def expected_series(
    first: dict[int, float], second: dict[int, float], kept_up_to: int
) -> list[tuple[int, float]]:
    """The first attempt's values up to ``kept_up_to``, the resumed attempt's after it."""
    merged = {step: value for step, value in first.items() if step <= kept_up_to}
    merged.update({step: value for step, value in second.items() if step > kept_up_to})
    return sorted(merged.items())


@pytest.mark.slow
def test_a_killed_fit_resumed_by_backup_and_restore_is_one_run_each_step_once(tmp_path: Path) -> None:
    first, _, run_id = crash_then_resume(tmp_path, "kill")
    store = LocalStore(tmp_path / "store" / "metrics.db")
    try:
        (crashed_run,) = store.executions()
        assert crashed_run["execution_id"] == run_id and crashed_run["status"] == "running"  # killed
        batch_steps = [step for step, _ in store.list_series(run_id, "batch_loss")]
        assert batch_steps == list(range(EVERY, CRASH_STEP + 1, EVERY))  # steps past the backup, too

        second, report = resume(tmp_path)

        assert report["run"] == run_id
        (run,) = store.executions()  # ONE run
        assert run["execution_id"] == run_id and run["status"] == "success"
        loss = store.list_series(run_id, "loss")
        assert [step for step, _ in loss] == list(range(8, 49, 8))  # 6 of 6, each once
        expected = expected_series(first["loss"], second["loss"], BACKUP_STEP)
        assert loss == [(step, pytest.approx(value, rel=1e-6)) for step, value in expected]
        batch_loss = store.list_series(run_id, "batch_loss")
        assert [step for step, _ in batch_loss] == list(range(EVERY, 49, EVERY))  # 24 of 24, each once
        # the values of steps 26, 28, 30 are the resumed attempt's: the crashed ones were replaced
        expected = expected_series(first["batch_loss"], second["batch_loss"], BACKUP_STEP)
        assert batch_loss == [(step, pytest.approx(value, rel=1e-6)) for step, value in expected]
        assert first["batch_loss"][26] != pytest.approx(second["batch_loss"][26], rel=1e-6)
    finally:
        store.close()


@pytest.mark.slow
def test_a_resumed_fit_on_the_platform_sends_no_value_twice(
    platform: PlatformEmulator, tmp_path: Path
) -> None:
    first, _, run_id = crash_then_resume(tmp_path, "raise")
    assert run_id == EXECUTION
    lists = platform.store.lists
    assert lists[(EXECUTION, "loss")] == pytest.approx([first["loss"][step] for step in (8, 16, 24)])
    assert len(lists[(EXECUTION, "batch_loss")]) == CRASH_STEP // EVERY  # 2..30 sent before the crash

    second, report = resume(tmp_path)

    assert report["run"] == EXECUTION
    lists = platform.store.lists
    # the platform's lists only grow: what it holds is sent once; steps past the crash come after
    loss = lists[(EXECUTION, "loss")]
    assert len(loss) == EPOCHS
    assert loss == pytest.approx([value for _, value in expected_series(first["loss"], second["loss"], 24)])
    batch_loss = lists[(EXECUTION, "batch_loss")]
    assert len(batch_loss) == 48 // EVERY
    expected = expected_series(first["batch_loss"], second["batch_loss"], CRASH_STEP)
    assert batch_loss == pytest.approx([value for _, value in expected])


# -- in one process: the same events, cheaper ----------------------------------------------------

BATCH_SIZE = 8


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH_SIZE, 4)).astype("float32")
    return x, (x.sum(axis=1) > 0).astype("float32")


def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    built = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    built.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return built


class Batches(torch.utils.data.IterableDataset):  # type: ignore[misc,type-arg]
    """The same batches, from a loader of unknown length (Keras's ``params["steps"]`` is None)."""

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x, y = data()
        for start in range(0, len(x), BATCH_SIZE):
            yield x[start : start + BATCH_SIZE], y[start : start + BATCH_SIZE]


def fit(trained: keras.Model, callbacks: list[Any], inputs: Any = None, **options: Any) -> Any:
    if inputs is None:
        return trained.fit(
            *data(), batch_size=BATCH_SIZE, epochs=EPOCHS, callbacks=callbacks, verbose=0, **options
        )
    return trained.fit(inputs, epochs=EPOCHS, shuffle=False, callbacks=callbacks, verbose=0, **options)


class Crash(keras.callbacks.Callback):  # type: ignore[misc]
    """Raise out of fit at (CRASH_EPOCH, CRASH_BATCH), after the callbacks before it ran."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if (self.epoch, batch) == (CRASH_EPOCH, CRASH_BATCH):
            raise RuntimeError("the training crashed")


def crash(callbacks: list[Any], inputs: Any = None) -> CraftAiKerasCallback:
    """A fit that crashes at step 30; its recorder ends as the dying process would end it."""
    with pytest.raises(RuntimeError, match="the training crashed"):
        fit(model(), callbacks=[*callbacks, Crash()], inputs=inputs)
    craft = next(c for c in callbacks if isinstance(c, CraftAiKerasCallback))
    assert craft.recorder is not None
    craft.recorder.close("failed")
    return craft


def assert_each_step_once(store: LocalStore, run_id: str) -> None:
    (run,) = store.executions()
    assert run["execution_id"] == run_id and run["status"] == "success"
    assert [step for step, _ in store.list_series(run_id, "loss")] == list(range(8, 49, 8))
    assert [step for step, _ in store.list_series(run_id, "batch_loss")] == list(range(EVERY, 49, EVERY))


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # how Keras finds an epoch's end
@pytest.mark.parametrize("length", ["known", "unknown"])
def test_the_order_of_the_callbacks_does_not_matter(store: LocalStore, tmp_path: Path, length: str) -> None:
    """The craft callback before BackupAndRestore: it reads the epoch Keras starts at, not Keras's
    file. Of unknown length (a loader with no ``len``), the step the epoch began at is the run
    file's."""
    backup_dir = tmp_path / "backup"
    inputs = torch.utils.data.DataLoader(Batches(), batch_size=None) if length == "unknown" else None
    crashed = crash(
        [
            CraftAiKerasCallback(sink=store, backup_dir=backup_dir, log_every_n_steps=EVERY),
            keras.callbacks.BackupAndRestore(backup_dir),
        ],
        inputs,
    )
    assert crashed.recorder is not None
    run_id = crashed.recorder.execution_id
    craft = CraftAiKerasCallback(sink=store, backup_dir=str(backup_dir), log_every_n_steps=EVERY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(model(), callbacks=[craft, keras.callbacks.BackupAndRestore(backup_dir)], inputs=inputs)
    assert not [w for w in caught if issubclass(w.category, CraftCallbacksWarning)]
    assert craft.params["steps"] == (None if length == "unknown" else STEPS_PER_EPOCH)
    assert len(history.history["loss"]) == EPOCHS - CRASH_EPOCH
    assert craft.recorder is not None and craft.recorder.execution_id == run_id
    assert_each_step_once(store, run_id)
    resumed = store.list_series(run_id, "loss")[CRASH_EPOCH:]
    assert [step for step, _ in resumed] == [32, 40, 48]
    assert [value for _, value in resumed] == pytest.approx(history.history["loss"], rel=1e-6)


@pytest.mark.parametrize("how", ["run_id", "environment"])
def test_run_id_continues_a_fit_from_initial_epoch(
    store: LocalStore, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Your own checkpoints: ``run_id=`` (or ``$CRAFT_CALLBACKS_RUN_ID``) and ``fit(initial_epoch=3)``."""
    crashed = crash([CraftAiKerasCallback(sink=store, log_every_n_steps=EVERY)])
    assert crashed.recorder is not None
    run_id = crashed.recorder.execution_id
    assert store.list_series(run_id, "batch_loss")[-1][0] == CRASH_STEP
    if how == "environment":
        monkeypatch.setenv("CRAFT_CALLBACKS_RUN_ID", run_id)
        craft = CraftAiKerasCallback(sink=store, log_every_n_steps=EVERY)
    else:
        craft = CraftAiKerasCallback(sink=store, log_every_n_steps=EVERY, run_id=run_id)
    history = fit(model(), callbacks=[craft], initial_epoch=CRASH_EPOCH)
    assert craft.recorder is not None and craft.recorder.execution_id == run_id
    assert_each_step_once(store, run_id)
    resumed = dict(store.list_series(run_id, "loss"))
    assert [resumed[step] for step in (32, 40, 48)] == pytest.approx(history.history["loss"], rel=1e-6)


def test_a_fit_that_ended_leaves_no_run_file_and_the_next_fit_is_a_new_run(
    store: LocalStore, tmp_path: Path
) -> None:
    """``delete_checkpoint=False`` keeps Keras's backup; the run ended, so a later fit is a new run
    that counts its steps on from the epoch Keras restores."""
    backup_dir = tmp_path / "backup"
    trained = model()
    first = CraftAiKerasCallback(sink=store, backup_dir=backup_dir, log_every_n_steps=0)
    keep = keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)
    trained.fit(*data(), batch_size=BATCH_SIZE, epochs=2, callbacks=[keep, first], verbose=0)
    assert (backup_dir / "training_metadata.json").exists() and not (backup_dir / RUN_FILE).exists()

    again = CraftAiKerasCallback(sink=store, backup_dir=keep, log_every_n_steps=0)
    history = model().fit(*data(), batch_size=BATCH_SIZE, epochs=4, callbacks=[keep, again], verbose=0)
    assert len(history.history["loss"]) == 2  # Keras restored epoch 2
    assert first.recorder is not None and again.recorder is not None
    assert again.recorder.execution_id != first.recorder.execution_id
    assert len(store.executions()) == 2
    assert [step for step, _ in store.list_series(again.recorder.execution_id, "loss")] == [24, 32]


def test_an_unreadable_run_file_is_one_warning_and_a_new_run(store: LocalStore, tmp_path: Path) -> None:
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / RUN_FILE).write_text("{not json")
    craft = CraftAiKerasCallback(sink=store, backup_dir=backup_dir, log_every_n_steps=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model().fit(
            *data(),
            batch_size=BATCH_SIZE,
            epochs=2,
            callbacks=[keras.callbacks.BackupAndRestore(backup_dir), craft],
            verbose=0,
        )
    assert len(history.history["loss"]) == 2
    said = [str(w.message) for w in caught if issubclass(w.category, CraftCallbacksWarning)]
    assert len(said) == 1 and RUN_FILE in said[0] and "new run" in said[0]
    (run,) = store.executions()
    assert [step for step, _ in store.list_series(run["execution_id"], "loss")] == [8, 16]


def test_backup_dir_is_a_backup_and_restore_or_a_folder() -> None:
    assert CraftAiKerasCallback(backup_dir=keras.callbacks.BackupAndRestore("b")).backup_dir == "b"
    assert CraftAiKerasCallback(backup_dir=Path("b")).backup_dir == "b"
    with pytest.raises(TypeError, match="backup_dir must be"):
        CraftAiKerasCallback(backup_dir=3)
