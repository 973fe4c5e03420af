"""The Keras adapter on the JAX and TensorFlow backends, each in its own process.

Keras picks its backend once, at import, from ``KERAS_BACKEND``: the test
process has imported it on torch (tests/test_keras.py), so each backend runs
the same scenario as the torch tests in a subprocess (the venv's python, a
script written to a temporary folder) with ``KERAS_BACKEND`` set. The script
fits, evaluates and fits again, then fits a model compiled with
``steps_per_execution=4`` (which the torch backend refuses), and writes what
Keras saw (``History.history``, ``evaluate()``'s results, the batch hooks'
arguments, the backend, the run ids) to a JSON file; the tests then read the
local store and check it against that, as the torch tests do. One subprocess
per backend (a module-scoped fixture): importing TensorFlow takes seconds.

jax and tensorflow-cpu come with the test extra: a missing one is a failure
here, not a skip, so that a backend that is not exercised cannot pass.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from craft_callbacks import LocalStore

TIMEOUT_S = 300
STEPS_PER_EPOCH = 6  # 48 training samples of 64 after the validation split, batches of 8
EPOCHS = 3
LOG_EVERY_N_STEPS = 3
GROUP = 4  # steps_per_execution of the grouped fit
GROUPED_STEPS_PER_EPOCH = 102  # 204 samples, batches of 2: the last group of an epoch holds 2
GROUPED_EPOCHS = 2
DEFAULT_LOG_EVERY_N_STEPS = 50
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


class Hooks(keras.callbacks.Callback):
    # what Keras passes the batch hook: (epoch, batch, loss); async_safe, as ours, to keep the thread pool

    async_safe = True

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.calls = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append([self.epoch, batch, float(logs["loss"])])


rng = np.random.default_rng(2)
gx = rng.normal(size=(204, 4)).astype("float32")
gy = (gx.sum(axis=1) > 0).astype("float32")
keras.utils.set_random_seed(0)
grouped = keras.Sequential(
    [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
)
grouped.compile(
    optimizer=keras.optimizers.SGD(learning_rate=0.05),
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
    steps_per_execution=4,
)
hooks = Hooks()
grouped_callback = CraftAiKerasCallback(store_path=store_path)  # log_every_n_steps: the default
grouped_history = grouped.fit(gx, gy, batch_size=2, epochs=2, callbacks=[hooks, grouped_callback], verbose=0)
report["grouped_run"] = grouped_callback.recorder.execution_id
report["grouped_history"] = {
    key: [float(value) for value in values] for key, values in grouped_history.history.items()
}
report["grouped_hooks"] = hooks.calls
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


def run_backend(folder: Path, backend: str, store_path: Path) -> dict[str, Any]:
    script, out = folder / f"fit_{backend}.py", folder / f"fit_{backend}.json"
    script.write_text(SCRIPT)
    try:
        done = subprocess.run(
            [sys.executable, str(script), str(store_path), str(out)],
            cwd=folder,
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
    assert report["backend"] == backend
    return report


def lists_of(store: LocalStore, run: str) -> dict[str, list[float]]:
    return {row["name"]: row["values"] for row in store.get_list_metrics(execution_id=run)}


def scalars_of(store: LocalStore, run: str) -> dict[str, float]:
    return {row["name"]: row["value"] for row in store.get_metrics(execution_id=run)}


@pytest.fixture(scope="module", params=["jax", "tensorflow"])
def backend_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], LocalStore]]:
    """The script's report on one backend, and the local store it recorded into."""
    backend: str = request.param
    if importlib.util.find_spec(BACKEND_MODULES[backend]) is None:
        pytest.fail(
            f"{BACKEND_MODULES[backend]} is not installed: the test extra installs it "
            "(pip install -c constraints.txt -e '.[test]')"
        )
    folder = tmp_path_factory.mktemp(backend)
    store_path = folder / "store" / "metrics.db"
    report = run_backend(folder, backend, store_path)
    store = LocalStore(store_path)
    try:
        yield report, store
    finally:
        store.close()


@pytest.mark.slow
def test_fit_evaluate_and_a_second_fit_on_the_backend(backend_run: tuple[dict[str, Any], LocalStore]) -> None:
    report, store = backend_run
    assert report["first_closed"] and report["second_closed"]
    history, first, second = report["history"], report["first_run"], report["second_run"]
    assert len(history["loss"]) == EPOCHS

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

    scalars = scalars_of(store, first)  # the last values of the lists, then evaluate()'s results
    for key, values in history.items():  # training's scalars: evaluate() wrote over none of them
        assert scalars[key] == pytest.approx(values[-1], rel=1e-6), key
    assert scalars["batch_loss"] == lists["batch_loss"][-1]
    results = report["evaluate"]
    assert results["loss"] != pytest.approx(history["loss"][-1])  # other data, another loss
    assert scalars["eval_loss"] == pytest.approx(results["loss"], rel=1e-6)
    assert scalars["eval_binary_accuracy"] == pytest.approx(results["binary_accuracy"], rel=1e-6)
    assert len(lists["loss"]) == EPOCHS  # evaluate() did not grow the list

    assert second != first  # the second fit() is a new run
    runs = {run["execution_id"]: run for run in store.executions()}
    assert set(runs) == {first, second, report["grouped_run"]}
    assert runs[first]["status"] == runs[second]["status"] == "success"
    assert len(lists_of(store, second)["loss"]) == 1


@pytest.mark.slow
def test_steps_per_execution_records_a_batch_value_each_log_every_n_steps(
    backend_run: tuple[dict[str, Any], LocalStore],
) -> None:
    """Batches run in groups of 4: Keras calls the batch hook once a group, with the group's last index."""
    report, store = backend_run
    run, history = report["grouped_run"], report["grouped_history"]
    hooks: dict[int, float] = {}  # the batch count at each hook (the last group is short) -> its loss
    for epoch in range(GROUPED_EPOCHS):
        batches = sorted(batch for seen, batch, _ in report["grouped_hooks"] if seen == epoch)
        assert batches == list(range(GROUP - 1, GROUPED_STEPS_PER_EPOCH + GROUP - 1, GROUP))  # 3, 7, ..., 103
    for epoch, batch, loss in report["grouped_hooks"]:
        hooks[epoch * GROUPED_STEPS_PER_EPOCH + min(batch + 1, GROUPED_STEPS_PER_EPOCH)] = loss

    total = GROUPED_EPOCHS * GROUPED_STEPS_PER_EPOCH
    series = store.list_series(run, "batch_loss")
    steps = [step for step, _ in series]
    # one value each 50 batches: at the first hook at or past 50, 100, 150, 200 (groups end at 4k,
    # the second epoch's at 102 + 4k)
    assert steps == [52, 100, 150, 202]
    assert abs(len(steps) - total / DEFAULT_LOG_EVERY_N_STEPS) <= 1
    assert [value for _, value in series] == pytest.approx([hooks[step] for step in steps], rel=1e-6)
    assert store.list_series(run, "loss") == [
        (GROUPED_STEPS_PER_EPOCH * (epoch + 1), pytest.approx(value, rel=1e-6))
        for epoch, value in enumerate(history["loss"])
    ]
    assert next(row for row in store.executions() if row["execution_id"] == run)["status"] == "success"
