"""The Keras adapter on the JAX and TensorFlow backends, each in its own process.

Keras picks its backend once, at import, from ``KERAS_BACKEND``: the test
process has imported it on torch (tests/test_keras.py), so each backend runs
the same scenario as the torch tests in a subprocess (the venv's python, a
script written to ``tmp_path``) with ``KERAS_BACKEND`` set. The script fits,
evaluates and fits again, and writes what Keras saw (``History.history``,
``evaluate()``'s results, the backend, the run ids) to a JSON file; the test
then reads the local store and checks it against that, as the torch tests do.

jax and tensorflow-cpu come with the test extra: a missing one is a failure
here, not a skip, so that a backend that is not exercised cannot pass.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from craft_callbacks import LocalStore

TIMEOUT_S = 300
STEPS_PER_EPOCH = 6  # 48 training samples of 64 after the validation split, batches of 8
EPOCHS = 3
LOG_EVERY_N_STEPS = 3
BACKEND_MODULES = {"jax": "jax", "tensorflow": "tensorflow"}
CLEARED_ENV = (
    "CRAFT_AI_EXECUTION_ID",
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
    "CRAFT_CALLBACKS_STORE",
    "CRAFT_CALLBACKS_DISABLED",
    "PYTHONWARNINGS",
)

SCRIPT = """
import json
import sys

import keras
import numpy as np

from craft_callbacks.keras import CraftAiKerasCallback

store_path, out_path = sys.argv[1], sys.argv[2]


def data(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x.sum(axis=1) > 0).astype("float32")


keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
model.compile(
    optimizer=keras.optimizers.SGD(learning_rate=0.05),
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
    metrics=["binary_accuracy"],
)
callback = CraftAiKerasCallback(store_path=store_path, log_every_n_steps=3)
x, y = data(0)
history = model.fit(x, y, batch_size=8, epochs=3, validation_split=0.25, callbacks=[callback], verbose=0)
first = callback.recorder.execution_id
first_closed = callback.recorder.closed
results = model.evaluate(*data(1), batch_size=8, callbacks=[callback], return_dict=True, verbose=0)
model.fit(x, y, batch_size=8, epochs=1, callbacks=[callback], verbose=0)
second = callback.recorder.execution_id
report = {
    "backend": keras.backend.backend(),
    "history": {key: [float(value) for value in values] for key, values in history.history.items()},
    "evaluate": {key: float(value) for key, value in results.items()},
    "first_run": first,
    "first_closed": first_closed,
    "second_run": second,
    "second_closed": callback.recorder.closed,
}
with open(out_path, "w") as out:
    json.dump(report, out)
"""


def subprocess_env(backend: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in CLEARED_ENV:  # outside any platform execution, recording on
        env.pop(name, None)
    env.update(
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        JAX_PLATFORMS="cpu",
        CRAFT_CALLBACKS_VERBOSITY="warning",
    )
    return env


def run_backend(tmp_path: Path, backend: str, store_path: Path) -> dict[str, Any]:
    script, out = tmp_path / f"fit_{backend}.py", tmp_path / f"fit_{backend}.json"
    script.write_text(SCRIPT)
    try:
        done = subprocess.run(
            [sys.executable, str(script), str(store_path), str(out)],
            cwd=tmp_path,
            env=subprocess_env(backend),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode() if isinstance(expired.stderr, bytes) else expired.stderr
        pytest.fail(f"the {backend} script did not finish in {TIMEOUT_S} s; stderr:\n{stderr}")
    assert done.returncode == 0, (
        f"the {backend} script exited {done.returncode}; stderr:\n{done.stderr[-8000:]}"
    )
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def lists_of(store: LocalStore, run: str) -> dict[str, list[float]]:
    return {row["name"]: row["values"] for row in store.get_list_metrics(execution_id=run)}


def scalars_of(store: LocalStore, run: str) -> dict[str, float]:
    return {row["name"]: row["value"] for row in store.get_metrics(execution_id=run)}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_fit_evaluate_and_a_second_fit_on_the_backend(tmp_path: Path, backend: str) -> None:
    if importlib.util.find_spec(BACKEND_MODULES[backend]) is None:
        pytest.fail(
            f"{BACKEND_MODULES[backend]} is not installed: the test extra installs it "
            "(pip install -c constraints.txt -e '.[test]')"
        )
    store_path = tmp_path / "store" / "metrics.db"
    report = run_backend(tmp_path, backend, store_path)
    assert report["backend"] == backend
    assert report["first_closed"] and report["second_closed"]
    history, first, second = report["history"], report["first_run"], report["second_run"]
    assert len(history["loss"]) == EPOCHS

    store = LocalStore(store_path)
    try:
        lists = lists_of(store, first)
        for key, values in history.items():  # every epoch list equals what History recorded
            assert lists[key] == pytest.approx(values, rel=1e-6), key
        assert set(lists) >= {"batch_loss", "batch_binary_accuracy", "val_loss", "val_binary_accuracy"}
        epoch_steps = [STEPS_PER_EPOCH * (epoch + 1) for epoch in range(EPOCHS)]
        assert [step for step, _ in store.list_series(first, "loss")] == epoch_steps
        batch_steps = [step for step, _ in store.list_series(first, "batch_loss")]
        # the step counts across epochs: 6 steps a epoch, every 3rd logged
        assert batch_steps == list(range(LOG_EVERY_N_STEPS, EPOCHS * STEPS_PER_EPOCH + 1, LOG_EVERY_N_STEPS))
        assert len(lists["batch_binary_accuracy"]) == len(batch_steps)

        scalars = scalars_of(store, first)  # the last values, then evaluate()'s results
        assert scalars["val_loss"] == pytest.approx(history["val_loss"][-1], rel=1e-6)
        assert scalars["batch_loss"] == lists["batch_loss"][-1]
        results = report["evaluate"]
        assert scalars["loss"] == pytest.approx(results["loss"], rel=1e-6)
        assert scalars["binary_accuracy"] == pytest.approx(results["binary_accuracy"], rel=1e-6)
        assert len(lists["loss"]) == EPOCHS  # evaluate() did not grow the list

        assert second != first  # the second fit() is a new run
        runs = {run["execution_id"]: run for run in store.executions()}
        assert set(runs) == {first, second}
        assert runs[first]["status"] == runs[second]["status"] == "success"
        assert len(lists_of(store, second)["loss"]) == 1
    finally:
        store.close()
