"""Benchmark of the Keras adapter: µs per ``on_train_batch_end`` call, against what users would use instead.

Each callback is driven through its real Keras API on a tiny compiled model:
``set_model``, ``set_params({"epochs": 1, "steps": N, "verbose": 0})``,
``on_train_begin``, ``on_epoch_begin(0)``, then N timed
``on_train_batch_end(batch, logs)`` calls with a 2-key dict of Python floats
(``loss``, ``binary_accuracy``: Keras's ``CallbackList`` pythonifies the logs
before any callback sees them); ``on_epoch_end`` and ``on_train_end`` run
after the timing. Median µs per call over interleaved repeats (every case,
then every case again...), each repeat on a fresh callback: our recorder's
background worker runs during the timing, as in a real run.

Cases: the floor (a bare loop doing ``float()`` and ``list.append`` per key),
ours with ``log_every_n_steps=1`` (every batch logged: the worst case) and
with the default (50), ``keras.callbacks.CSVLogger``,
``keras.callbacks.TensorBoard`` (default ``update_freq="epoch"``, and
``update_freq=1``: every batch written) and ``dvclive.keras.DVCLiveCallback``.
A callback that cannot be built or run on the backend is reported with its
error. The goal: ours lower than every one of them, judged on
``on_train_batch_end`` alone. A second column times
``on_train_batch_begin`` + ``on_train_batch_end`` per batch (TensorBoard
switches its summary writer in ``on_train_batch_begin``), for information.
Our runs are read back from the local store: every logged value is checked.

Run: ``.venv/bin/python benchmarks/bench_keras.py [--backend torch|jax|tensorflow|all]
[--calls N] [--repeats R] [--json PATH]`` (``all``: each backend in its own process).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness
from harness import Goal, num, ratio, table, verdict

BACKENDS = ("torch", "jax", "tensorflow")
KEYS = ("loss", "binary_accuracy")
CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}

Logs = dict[str, float]
Factory = Callable[[Path], Any]


def batch_logs(calls: int) -> list[Logs]:
    """``calls`` distinct logs as Keras hands them to callbacks: running means, Python floats."""
    return [{"loss": 1.0 / (i + 1), "binary_accuracy": 0.5 + i * 1e-5} for i in range(calls)]


def new_model() -> Any:
    import keras

    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=["binary_accuracy"],
    )
    return model


def ours(every: int) -> Factory:
    def make(folder: Path) -> Any:
        from craft_callbacks.keras import CraftAiKerasCallback

        return CraftAiKerasCallback(store_path=folder / "metrics.db", log_every_n_steps=every)

    return make


def csv_logger(folder: Path) -> Any:
    import keras

    return keras.callbacks.CSVLogger(str(folder / "log.csv"))


def tensorboard(update_freq: int | str) -> Factory:
    def make(folder: Path) -> Any:
        import keras

        return keras.callbacks.TensorBoard(log_dir=str(folder / "tb"), update_freq=update_freq)

    return make


def dvclive_callback(folder: Path) -> Any:
    from dvclive.keras import DVCLiveCallback

    return DVCLiveCallback(dir=str(folder / "dvclive"), save_dvc_exp=False, dvcyaml=False)


CASES: list[tuple[str, Factory, str]] = [  # (label, factory, role)
    ("ours, log_every_n_steps=1", ours(1), "ours"),
    ("ours, log_every_n_steps=50 (default)", ours(50), "ours"),
    ("keras CSVLogger", csv_logger, "peer"),
    ("keras TensorBoard (update_freq='epoch')", tensorboard("epoch"), "peer"),
    ("keras TensorBoard (update_freq=1)", tensorboard(1), "peer"),
    ("dvclive DVCLiveCallback", dvclive_callback, "peer"),
]
FLOOR = "floor: float() + list.append per key"


def time_floor(logs: list[Logs]) -> float:
    """Seconds for the floor over ``logs``: float() and list.append per key, nothing else. Its loop
    enumerates the batches as the timed callback loop does (not ``harness.time_floor``: no enumerate)."""
    lists: dict[str, list[float]] = {key: [] for key in KEYS}
    start = time.perf_counter()
    for _batch, metrics in enumerate(logs):
        for key, value in metrics.items():
            lists[key].append(float(value))
    return time.perf_counter() - start


@contextmanager
def quiet() -> Iterator[None]:
    """Outside the timing: silence numpy 2's warning about Keras's own tensors (not ours)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword")
        yield


def time_callback(
    factory: Factory, logs: list[Logs], folder: Path, with_begin: bool
) -> tuple[float, Any, Path]:
    """Seconds for the batch hooks of one fresh callback over ``logs``; also the callback, ended, and
    the folder it wrote to."""
    folder = Path(tempfile.mkdtemp(dir=folder))
    with quiet():
        callback = factory(folder)
        callback.set_model(new_model())
        callback.set_params({"epochs": 1, "steps": len(logs), "verbose": 0})
        callback.on_train_begin()
        callback.on_epoch_begin(0)
    end = callback.on_train_batch_end
    if with_begin:
        begin = callback.on_train_batch_begin
        start = time.perf_counter()
        for batch, metrics in enumerate(logs):
            begin(batch)
            end(batch, metrics)
        elapsed = time.perf_counter() - start
    else:
        start = time.perf_counter()
        for batch, metrics in enumerate(logs):
            end(batch, metrics)
        elapsed = time.perf_counter() - start
    with quiet():
        callback.on_epoch_end(0, dict(logs[-1]))
        callback.on_train_end()
    return elapsed, callback, folder


def check_ours(callback: Any, logs: list[Logs], folder: Path) -> None:
    """Every batch value our callback logged is in the store, in order, at its step."""
    from craft_callbacks import LocalStore

    recorder = callback.recorder
    assert recorder is not None and recorder.closed, "our run did not close"
    every = callback.log_every_n_steps
    store = LocalStore(folder / "metrics.db")
    try:
        for key in KEYS:
            series = store.list_series(recorder.execution_id, f"batch_{key}")
            expected = [(step, logs[step - 1][key]) for step in range(every, len(logs) + 1, every)]
            assert series == expected, f"batch_{key}: {len(series)} values stored, {len(expected)} expected"
    finally:
        store.close()


def bench(calls: int, repeats: int, backend: str, folder: Path) -> list[dict[str, Any]]:
    logs = batch_logs(calls)
    rows: dict[str, dict[str, Any]] = {FLOOR: {"case": FLOOR, "role": "floor", "end_us": [], "pair_us": []}}
    for label, _, role in CASES:
        rows[label] = {"case": label, "role": role, "end_us": [], "pair_us": []}
    for _ in range(repeats):  # interleaved: noise hits every case alike
        for with_begin in (False, True):
            column = "pair_us" if with_begin else "end_us"
            rows[FLOOR][column].append(time_floor(logs) / calls * 1e6)
            for label, factory, role in CASES:
                row = rows[label]
                if "error" in row:
                    continue
                try:
                    elapsed, callback, written = time_callback(factory, logs, folder, with_begin)
                except Exception as error:
                    row["error"] = f"fails on the {backend} backend: {harness.error_text(error, 140)}"
                    continue
                if role == "ours":
                    check_ours(callback, logs, written)
                row[column].append(elapsed / calls * 1e6)
    results = list(rows.values())
    for row in results:
        for column in ("end_us", "pair_us"):
            row[column.replace("_us", "_median_us")] = harness.median_or_none(row[column])
    judge(results)
    return results


def judge(rows: list[dict[str, Any]]) -> None:
    """Ratio ours/peer for each of our cases against each peer that ran; PASS when ours is lower."""
    mine = [row for row in rows if row["role"] == "ours" and row["end_median_us"] is not None]
    for row in rows:
        if row["role"] != "peer" or row["end_median_us"] is None:
            continue
        row["vs"] = {
            own["case"]: {
                "ratio": own["end_median_us"] / row["end_median_us"],
                "pass": own["end_median_us"] < row["end_median_us"],
            }
            for own in mine
        }


def versions(backend: str) -> dict[str, str]:
    packages = ("keras", "torch", "jax", "tensorflow-cpu", "tensorflow", "tensorboard", "dvclive")
    return {**harness.running_here(), "backend": backend, **harness.package_versions(packages)}


def print_table(result: dict[str, Any]) -> None:
    rows, backend = result["rows"], result["versions"]["backend"]
    print(
        f"KERAS_BACKEND={backend}: on_train_batch_end with {len(KEYS)} keys (Python floats), "
        f"median µs/call over {result['repeats']} interleaved repeats of {result['calls']:,} calls"
    )
    print("  " + harness.versions_line({k: v for k, v in result["versions"].items() if k != "backend"}))
    mine = [row["case"] for row in rows if row["role"] == "ours"]
    short = {case: f"ours({case.split('=')[1].split()[0]})/peer" for case in mine}
    width = max(len(row["case"]) for row in rows)
    header = f"{'case':<{width}} {'end µs':>9} {'begin+end µs':>13}" + "".join(
        f"  {short[case]:>19}" for case in mine
    )
    harness.print_header(header)
    for row in rows:
        if "error" in row:
            print(f"{row['case']:<{width}} {row['error']}")
            continue
        line = f"{row['case']:<{width}} {row['end_median_us']:>9.3f} {row['pair_median_us']:>13.3f}"
        for case in mine:
            judged = row.get("vs", {}).get(case)
            line += (
                f"  {judged['ratio']:>12.2f}x {harness.verdict(judged['pass'])}" if judged else f"  {'':>19}"
            )
        print(line)
    for case in mine:
        peers = [row for row in rows if row["role"] == "peer" and case in row.get("vs", {})]
        beaten = [row["case"] for row in peers if row["vs"][case]["pass"]]
        lost = [row["case"] for row in peers if not row["vs"][case]["pass"]]
        failed = [row["case"] for row in rows if row["role"] == "peer" and "error" in row]
        goal = harness.verdict(bool(peers) and not lost)
        text = f"goal, {case} lower than every peer that runs: {goal}"
        text += f"; lower than: {', '.join(beaten) or 'none'}"
        if lost:
            text += f"; not lower than: {', '.join(lost)}"
        if failed:
            text += f"; did not run here: {', '.join(failed)}"
        print(text)


def run_one(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    os.environ["KERAS_BACKEND"] = backend  # before the first import of keras
    for name, value in CHILD_ENV.items():
        os.environ.setdefault(name, value)
    os.environ["CRAFT_CALLBACKS_VERBOSITY"] = "warning"  # read when the first recorder is made
    import keras

    # Importing craft_ai_sdk runs warnings.simplefilter("always", DeprecationWarning) for the whole
    # process; import it once here with the filters restored after, so the tables stay readable.
    harness.import_quietly("craft_ai_sdk")
    assert keras.backend.backend() == backend, f"keras runs on {keras.backend.backend()}, not {backend}"
    # DVCLive's Live() runs `dvc init` at the root of the git repository around the current
    # folder (and stages its files there): run every case in a folder outside any repository.
    with tempfile.TemporaryDirectory(prefix="bench-keras-") as tmp, harness.working_directory(Path(tmp)):
        rows = bench(args.calls, args.repeats, backend, Path(tmp))
    return {"calls": args.calls, "repeats": args.repeats, "versions": versions(backend), "rows": rows}


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each backend in its own process (Keras picks its backend once, at import)."""
    results = []
    for backend in BACKENDS:
        arguments = ["--backend", backend, "--calls", str(args.calls), "--repeats", str(args.repeats)]
        child = harness.run_child(__file__, arguments, env={**os.environ, **CHILD_ENV})
        if child.result is None:
            print(f"KERAS_BACKEND={backend}: the benchmark exited {child.returncode}\n")
            results.append({"versions": {"backend": backend}, "error": f"exit {child.returncode}"})
            continue
        print()
        results.extend(child.result)
    return results


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: list[dict[str, Any]]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
    lines: list[str] = []
    for backend in result:
        if "rows" not in backend:
            lines.append(f"Backend {backend.get('versions', {}).get('backend')}: {backend.get('error')}")
            continue
        rows = backend["rows"]
        mine = [row["case"] for row in rows if row["role"] == "ours"]
        table_rows = []
        for row in rows:
            if "error" in row:
                table_rows.append([row["case"], row["error"], "", *["" for _ in mine]])
                continue
            judged = row.get("vs", {})
            table_rows.append(
                [
                    row["case"],
                    num(row["end_median_us"], 3),
                    num(row["pair_median_us"], 3),
                    *[
                        f"{ratio(judged[case]['ratio'])} {verdict(judged[case]['pass'])}"
                        if case in judged
                        else ""
                        for case in mine
                    ],
                ]
            )
        lines += [
            f"Backend **{backend['versions'].get('backend')}**: `on_train_batch_end` with a 2-key log, "
            f"{backend['calls']:,} calls, median µs per call over {backend['repeats']} interleaved repeats; "
            "begin+end: `on_train_batch_begin` + `on_train_batch_end` per batch (information); "
            "ours/peer judged on `on_train_batch_end` (PASS: ours lower). Keras's `CSVLogger` and "
            "DVCLive's Keras callback do nothing per batch (they write once per epoch): their figure is "
            "the cost of calling an empty method.",
            "",
            *table(
                ["case", "end µs", "begin+end µs", *[f"{case} / peer" for case in mine]],
                table_rows,
            ),
            "",
        ]
    goals: list[Goal] = []
    with contextlib.suppress(Exception):  # without its figures, no goal row; the section is still shown
        for backend in result:
            rows = backend["rows"]
            for own in [r for r in rows if r["role"] == "ours"]:
                judged = [(r["case"], r["end_median_us"], r["vs"][own["case"]]) for r in rows if "vs" in r]
                goals.append(
                    harness.lower_than_every_peer(
                        f"Keras ({backend['versions']['backend']}) `on_train_batch_end`, {own['case']}: ours "
                        "lower than every peer that runs",
                        f"ours {num(own['end_median_us'], 3)} µs",
                        [f"{case} {num(us, 3)}" for case, us, _ in judged],
                        [case for case, _, v in judged if not v["pass"]],
                        bool(judged),
                    )
                )
    return lines, goals


def main() -> int:
    parser = harness.arg_parser(__doc__)
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="torch", help="Keras backend")
    parser.add_argument("--calls", type=int, default=2_000, help="on_train_batch_end calls per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per case")
    args = parser.parse_args()
    if args.backend == "all":
        results = run_all(args)
    else:
        results = [run_one(args, args.backend)]
        print_table(results[0])
    harness.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
