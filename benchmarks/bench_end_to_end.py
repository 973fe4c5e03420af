"""End-to-end benchmark: the wall time of a tiny real training, with no logger, with ours and with each peer.

For each framework, a tiny model built in code trains for ``--steps`` (2,000)
optimizer steps on the CPU (one torch thread, ``HF_HUB_OFFLINE=1``, nothing
downloaded), logging every step:

* HuggingFace: ``Trainer.train()`` of a 1-layer BERT (hidden 16) with
  ``logging_steps=1``; variants: no logger (``report_to="none"``, no
  callbacks), ours (``CraftAiCallback``), ``MLflowCallback`` (local ``file:``
  store), ``TensorBoardCallback``, ``DVCLiveCallback`` (transformers'). The
  Trainer's ``PrinterCallback`` (it prints every log to stdout) is removed
  from every variant alike.
* Lightning: ``Trainer.fit()`` of an MLP 4->16->1 with ``self.log("train_loss")``
  every step and ``log_every_n_steps=1``; variants: ``logger=False``, ours
  (``CraftAiLogger``), ``CSVLogger``, ``TensorBoardLogger``, ``MLFlowLogger``
  (``file:`` store, synchronous, its default).
* Keras (torch backend): ``model.fit()`` of an MLP 8->16->1, one epoch of
  2,000 batches; variants: no callbacks, ours (``CraftAiKerasCallback(
  log_every_n_steps=1)``: every batch logged), ``keras.callbacks.CSVLogger``,
  ``keras.callbacks.TensorBoard(update_freq=1)`` and
  ``dvclive.keras.DVCLiveCallback`` when they run on the backend. Keras's
  CSVLogger and DVCLive log once per epoch only: they do less than ours.

The figure is the wall time of the training call alone (``train()`` /
``fit()``), which includes what the framework runs inside it: setting up the
logger's run at the start, and closing or finalizing it at the end (our
recorder's ``close()``, MLflow's ``end_run()``...). Building the model and the
trainer is not timed. Every variant runs once, untimed, as a warm-up
(``--warmup-steps``), then ``--repeats`` times, interleaved: each repeat runs
every variant once, in an order rotated by one each repeat, so that noise and
drift hit all alike. Reported: the median wall time, the overhead of each
variant against the no-logger median (``median / median(none) - 1``), the
median of the per-repeat overheads (each variant against the no-logger run of
the same repeat), the process CPU time (all threads: a logger's background
threads included), and the ratio of our overhead to each peer's. After each
run the values each variant recorded are read back and the loss list counted:
ours must hold exactly one value per step, or the script fails.

Goals: our overhead at most 1% of the no-logger wall time, and
lower than every peer's, on every framework.

Run: ``.venv/bin/python benchmarks/bench_end_to_end.py [--framework hf|lightning|keras|all]
[--steps N] [--repeats R] [--warmup-steps N] [--json PATH]`` (``all``, the default: each framework
in its own process)
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import Goal, not_installed, num, pct, ratio, table

FRAMEWORKS = ("hf", "lightning", "keras")
OVERHEAD_GOAL = 0.01
NONE = "none"
OURS = "ours"

# Offline, quiet, one backend, before any framework is imported.
CHILD_ENV = {
    "CRAFT_CALLBACKS_VERBOSITY": "warning",
    "HF_HUB_OFFLINE": "1",
    "KERAS_BACKEND": "torch",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "CUDA_VISIBLE_DEVICES": "",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "MLFLOW_ALLOW_FILE_STORE": "true",  # mlflow 3.x refuses the file store without it
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",
    "DVC_STUDIO_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
}
CLEARED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_RUN_ID",
    "TENSORBOARD_LOGGING_DIR",
    "CRAFT_CALLBACKS_STORE",
    "CRAFT_AI_EXECUTION_ID",
    "CRAFT_AI_SDK_TOKEN",
    "CRAFT_AI_ENVIRONMENT_URL",
    "CRAFT_AI_CONTROL_URL",
)


@dataclass
class Prepared:
    """One variant, ready to train: ``train()`` is the timed call; ``recorded()`` counts the loss list."""

    train: Callable[[], Any]
    recorded: Callable[[], int | None] = lambda: None


@dataclass
class Variant:
    name: str
    role: str  # none, ours or peer
    prepare: Callable[[Path, int], Prepared]
    loss_name: str = ""
    note: str = ""
    error: str | None = None
    repeat_of: list[int] = field(default_factory=list)  # the repeat of each run below
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    recorded: list[int | None] = field(default_factory=list)


def quiet_loggers() -> None:
    """The frameworks' and peers' info logs ("GPU available", tips, "Creating experiment") off the table."""
    harness.quiet_logging(
        (
            "mlflow",
            "alembic",
            "lightning",
            "lightning.pytorch",
            "lightning.fabric",
            "lightning.pytorch.utilities.rank_zero",
            "tensorboard",
            "transformers",
            "dvclive",
        )
    )


def count_tensorboard(folder: Path, tag: str) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(folder.rglob("events.out.tfevents.*"))
    total = 0
    for directory in {file.parent for file in files}:
        events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        tags = events.Tags()
        if tag in tags.get("scalars", []):
            total += len(events.Scalars(tag))
        elif tag in tags.get("tensors", []):  # TF2 summaries (Keras's TensorBoard) are tensors
            total += len(events.Tensors(tag))
    return total


def count_mlflow(uri: str, name: str) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    return len(client.get_metric_history(runs[0].info.run_id, name)) if runs else 0


def count_tsv(path: Path) -> int:
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0  # a header, then one per value


def count_csv(path: Path, column: str) -> int:
    with open(path, newline="") as file:
        return sum(1 for row in csv.DictReader(file) if row.get(column))


# -- HuggingFace ---------------------------------------------------------------------


def hf_variants() -> list[Variant]:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class Toy(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __init__(self, size: int) -> None:
            generator = torch.Generator().manual_seed(0)
            self.ids = torch.randint(1, 64, (size, 8), generator=generator)
            self.labels = (self.ids[:, 0] >= 32).long()

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.ids[index], "labels": self.labels[index]}

    dataset = Toy(256)

    def trainer(folder: Path, steps: int, callbacks: list[Any]) -> Any:
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=64,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
            num_labels=2,
        )
        args = TrainingArguments(
            output_dir=str(folder / "out"),
            report_to="none",
            max_steps=steps,
            logging_steps=1,
            per_device_train_batch_size=8,
            learning_rate=1e-3,
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        )
        built = Trainer(
            model=BertForSequenceClassification(config),
            args=args,
            train_dataset=dataset,
            callbacks=callbacks,
        )
        built.remove_callback(PrinterCallback)  # prints every log: the same cost for all, taken out
        built.remove_callback(ProgressCallback)
        return built

    def none(folder: Path, steps: int) -> Prepared:
        return Prepared(trainer(folder, steps, []).train)

    def ours(folder: Path, steps: int) -> Prepared:
        from craft_callbacks.huggingface import CraftAiCallback

        path = folder / "metrics.db"
        return Prepared(
            trainer(folder, steps, [CraftAiCallback(store_path=path)]).train,
            lambda: harness.count_local(path, "loss"),
        )

    def mlflow(folder: Path, steps: int) -> Prepared:
        import mlflow as mlflow_module
        from transformers.integrations import MLflowCallback

        uri = (folder / "mlruns").resolve().as_uri()
        os.environ["MLFLOW_TRACKING_URI"] = uri  # what the callback's setup() reads
        mlflow_module.set_tracking_uri(uri)
        return Prepared(trainer(folder, steps, [MLflowCallback()]).train, lambda: count_mlflow(uri, "loss"))

    def tensorboard(folder: Path, steps: int) -> Prepared:
        from transformers.integrations import TensorBoardCallback

        return Prepared(  # it writes under output_dir/runs/, in the run's folder
            trainer(folder, steps, [TensorBoardCallback()]).train,
            lambda: count_tensorboard(folder, "train/loss"),
        )

    def dvclive(folder: Path, steps: int) -> Prepared:
        from dvclive import Live
        from transformers.integrations import DVCLiveCallback

        live = Live(dir=str(folder / "dvclive"), save_dvc_exp=False)
        tsv = folder / "dvclive" / "plots" / "metrics" / "loss.tsv"  # train/loss.tsv: the summary's
        return Prepared(trainer(folder, steps, [DVCLiveCallback(live=live)]).train, lambda: count_tsv(tsv))

    return [
        Variant("no logger (report_to='none')", NONE, none),
        Variant("ours: CraftAiCallback", OURS, ours, "loss"),
        Variant("MLflowCallback (file store)", "peer", mlflow, "loss", not_installed("mlflow") or ""),
        Variant(
            "TensorBoardCallback",
            "peer",
            tensorboard,
            "train/loss",
            not_installed("tensorboard") or "",
        ),
        Variant("DVCLiveCallback (transformers)", "peer", dvclive, "loss", not_installed("dvclive") or ""),
    ]


# -- Lightning -----------------------------------------------------------------------


def lightning_variants() -> list[Variant]:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Regressor(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"hidden": 16, "lr": 0.05})
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3200, 4, generator=generator)
    y = (x * torch.tensor([1.0, -2.0, 0.5, 3.0])).sum(dim=1, keepdim=True)
    dataset = TensorDataset(x, y)  # 200 batches of 16 per epoch
    quiet_loggers()  # after the import: Lightning sets its own levels then

    def fit(folder: Path, steps: int, logger: Any) -> Callable[[], Any]:
        torch.manual_seed(0)
        model = Regressor()
        trainer = L.Trainer(
            max_steps=steps,
            logger=logger,
            log_every_n_steps=1,
            accelerator="cpu",
            devices=1,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(folder),
        )
        loader = DataLoader(dataset, batch_size=16, shuffle=False)
        return lambda: trainer.fit(model, loader)

    def none(folder: Path, steps: int) -> Prepared:
        return Prepared(fit(folder, steps, False))

    def ours(folder: Path, steps: int) -> Prepared:
        from craft_callbacks.lightning import CraftAiLogger

        path = folder / "metrics.db"
        logger = CraftAiLogger(store_path=str(path), name="bench")
        return Prepared(fit(folder, steps, logger), lambda: harness.count_local(path, "train_loss"))

    def csv_logger(folder: Path, steps: int) -> Prepared:
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(save_dir=str(folder), name="csv")
        return Prepared(
            fit(folder, steps, logger), lambda: count_csv(Path(logger.log_dir) / "metrics.csv", "train_loss")
        )

    def tensorboard(folder: Path, steps: int) -> Prepared:
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = TensorBoardLogger(save_dir=str(folder), name="tb")
        return Prepared(fit(folder, steps, logger), lambda: count_tensorboard(folder / "tb", "train_loss"))

    def mlflow(folder: Path, steps: int) -> Prepared:
        from lightning.pytorch.loggers import MLFlowLogger

        uri = (folder / "mlruns").resolve().as_uri()
        logger = MLFlowLogger(experiment_name="bench", tracking_uri=uri)
        return Prepared(fit(folder, steps, logger), lambda: count_mlflow(uri, "train_loss"))

    tensorboard_missing = not_installed("tensorboard") and not_installed("tensorboardX")
    return [
        Variant("no logger (logger=False)", NONE, none),
        Variant("ours: CraftAiLogger", OURS, ours, "train_loss"),
        Variant("CSVLogger", "peer", csv_logger, "train_loss"),
        Variant("TensorBoardLogger", "peer", tensorboard, "train_loss", tensorboard_missing or ""),
        Variant("MLFlowLogger (file store)", "peer", mlflow, "train_loss", not_installed("mlflow") or ""),
    ]


# -- Keras ---------------------------------------------------------------------------


def keras_variants() -> list[Variant]:
    import keras
    import numpy as np

    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    rng = np.random.default_rng(0)
    batch = 16

    def fit(steps: int, callbacks: list[Any]) -> Callable[[], Any]:
        keras.utils.set_random_seed(0)
        x = rng.normal(size=(steps * batch, 8)).astype("float32")
        y = (x[:, :4].sum(axis=1) > x[:, 4:].sum(axis=1)).astype("float32")
        model = keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.05),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=["binary_accuracy"],
        )
        return lambda: model.fit(
            x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=callbacks
        )

    def none(folder: Path, steps: int) -> Prepared:
        return Prepared(fit(steps, []))

    def ours(folder: Path, steps: int) -> Prepared:
        from craft_callbacks.keras import CraftAiKerasCallback

        path = folder / "metrics.db"
        callback = CraftAiKerasCallback(store_path=path, log_every_n_steps=1)
        return Prepared(fit(steps, [callback]), lambda: harness.count_local(path, "batch_loss"))

    def csv_logger(folder: Path, steps: int) -> Prepared:
        path = folder / "log.csv"
        return Prepared(fit(steps, [keras.callbacks.CSVLogger(str(path))]), lambda: count_csv(path, "loss"))

    def tensorboard(folder: Path, steps: int) -> Prepared:
        logs = folder / "tb"
        callback = keras.callbacks.TensorBoard(log_dir=str(logs), update_freq=1)
        return Prepared(fit(steps, [callback]), lambda: count_tensorboard(logs, "batch_loss"))

    def dvclive(folder: Path, steps: int) -> Prepared:
        from dvclive.keras import DVCLiveCallback

        callback = DVCLiveCallback(dir=str(folder / "dvclive"), save_dvc_exp=False, dvcyaml=False)
        tsv = folder / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
        return Prepared(
            fit(steps, [callback]), lambda: count_tsv(tsv) or count_tsv(tsv.parent.parent / "loss.tsv")
        )

    return [
        Variant("no callbacks", NONE, none),
        Variant("ours: CraftAiKerasCallback(log_every_n_steps=1)", OURS, ours, "batch_loss"),
        Variant("keras CSVLogger (per epoch only)", "peer", csv_logger, "loss"),
        Variant(
            "keras TensorBoard(update_freq=1)",
            "peer",
            tensorboard,
            "batch_loss",
            not_installed("tensorboard") or "",
        ),
        Variant(
            "dvclive.keras DVCLiveCallback (per epoch only)",
            "peer",
            dvclive,
            "loss",
            not_installed("dvclive") or "",
        ),
    ]


VARIANTS: dict[str, Callable[[], list[Variant]]] = {
    "hf": hf_variants,
    "lightning": lightning_variants,
    "keras": keras_variants,
}


# -- timing --------------------------------------------------------------------------


def run_once(variant: Variant, folder: Path, steps: int) -> tuple[float, float, int | None]:
    """(wall s, process CPU s, loss values recorded) of one training call of ``variant``, in ``folder``."""
    folder.mkdir(parents=True)
    harness.clear_environ(("MLFLOW_TRACKING_URI", "TENSORBOARD_LOGGING_DIR"))
    with harness.working_directory(folder), harness.quiet():
        prepared = variant.prepare(folder, steps)
        cpu = time.process_time()
        start = time.perf_counter()
        prepared.train()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        recorded = prepared.recorded()
    return wall, cpu, recorded


def bench(framework: str, steps: int, repeats: int, warmup_steps: int, folder: Path) -> list[Variant]:
    variants = VARIANTS[framework]()
    for variant in variants:
        if variant.note:
            variant.error = f"skipped ({variant.note})"
    runnable = [v for v in variants if v.error is None]
    for index, variant in enumerate(runnable):  # warm-up, not counted: first imports, first kernels
        if warmup_steps <= 0:
            break
        try:
            run_once(variant, folder / "warmup" / str(index), warmup_steps)
        except Exception as error:
            variant.error = f"fails: {harness.error_text(error, 160)}"
            print(f"  {variant.name}: {variant.error}", file=sys.stderr, flush=True)
            traceback.print_exc(limit=3)
    for repeat in range(repeats):
        runnable = [v for v in variants if v.error is None]
        shift = repeat % len(runnable)
        for variant in runnable[shift:] + runnable[:shift]:  # rotated: no variant always first
            try:
                wall, cpu, recorded = run_once(
                    variant, folder / f"r{repeat}" / variant.role / variant.name[:12], steps
                )
            except Exception as error:
                variant.error = f"fails: {harness.error_text(error, 160)}"
                print(f"  {variant.name}: {variant.error}", file=sys.stderr, flush=True)
                continue
            variant.repeat_of.append(repeat)
            variant.wall_s.append(wall)
            variant.cpu_s.append(cpu)
            variant.recorded.append(recorded)
            print(
                f"  {framework} repeat {repeat} {variant.name:<48} {wall:8.3f} s wall, {cpu:8.3f} s cpu, "
                f"recorded {recorded}",
                file=sys.stderr,
                flush=True,
            )
    return variants


# -- report --------------------------------------------------------------------------


def summarise(framework: str, variants: list[Variant], steps: int, repeats: int) -> dict[str, Any]:
    none = next(v for v in variants if v.role == NONE)
    if not none.wall_s:
        raise SystemExit(f"FAIL {framework}: the no-logger training did not run ({none.error})")
    none_median, none_min = statistics.median(none.wall_s), min(none.wall_s)
    none_of_repeat = dict(zip(none.repeat_of, none.wall_s, strict=True))
    noise = max(none.wall_s) / none_min - 1
    rows: list[dict[str, Any]] = []
    for variant in variants:
        row: dict[str, Any] = {"name": variant.name, "role": variant.role, "loss_list": variant.loss_name}
        rows.append(row)
        if not variant.wall_s:
            row["error"] = variant.error or "did not run"
            continue
        median = statistics.median(variant.wall_s)
        paired = [
            wall / none_of_repeat[repeat] - 1
            for repeat, wall in zip(variant.repeat_of, variant.wall_s, strict=True)
            if repeat in none_of_repeat
        ]
        row.update(
            wall_s=median,
            min_wall_s=min(variant.wall_s),
            all_wall_s=variant.wall_s,
            cpu_s=statistics.median(variant.cpu_s),
            all_cpu_s=variant.cpu_s,
            overhead=median / none_median - 1,
            min_overhead=min(variant.wall_s) / none_min - 1,
            paired_overheads=paired,
            paired_overhead=statistics.median(paired),
            recorded=variant.recorded,
        )
        if variant.error:
            row["error"] = variant.error
    ours = next(row for row in rows if row["role"] == OURS)
    if "wall_s" not in ours:
        raise SystemExit(f"FAIL {framework}: ours did not run ({ours.get('error')})")
    if any(count != steps for count in ours["recorded"]):
        raise SystemExit(
            f"FAIL {framework}: ours recorded {ours['recorded']} {ours['loss_list']} values, not {steps}"
        )
    goals = [
        {
            "goal": f"ours overhead <= {OVERHEAD_GOAL:.0%} of no-logger wall",
            "pass": ours["overhead"] <= OVERHEAD_GOAL,
            "detail": f"{ours['overhead']:+.2%} (paired per repeat, median: {ours['paired_overhead']:+.2%}; "
            f"min against min: {ours['min_overhead']:+.2%}; no-logger runs spread {noise:.1%})",
        }
    ]
    for row in rows:
        if row["role"] != "peer":
            continue
        if "wall_s" not in row:
            goals.append({"goal": f"ours < {row['name']}", "pass": None, "detail": row["error"]})
            continue
        both_positive = ours["overhead"] > 0 and row["overhead"] > 0
        row["ours_over_peer_overhead"] = ours["overhead"] / row["overhead"] if both_positive else None
        goals.append(
            {
                "goal": f"ours < {row['name']}",
                "pass": ours["overhead"] < row["overhead"],
                "detail": f"overhead {ours['overhead']:+.2%} vs {row['overhead']:+.2%}",
            }
        )
    return {
        "framework": framework,
        "steps": steps,
        "repeats": repeats,
        "none_wall_s": none_median,
        "noise": noise,
        "rows": rows,
        "goals": goals,
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{result['framework']}: {result['steps']:,} steps logging every step, wall of the training call, "
        f"median of {result['repeats']} interleaved repeats; the no-logger runs spread "
        f"{result['noise']:.1%} (max/min - 1): differences below that are noise"
    )
    print("  " + harness.versions_line(result["versions"]))
    rows = result["rows"]
    width = max(len(row["name"]) for row in rows)
    header = (
        f"{'variant':<{width}} {'wall s':>8} {'overhead':>9} {'paired':>8} {'min s':>8} {'min ovh':>8} "
        f"{'cpu s':>8} {'ours/peer':>9}  recorded (loss list)"
    )
    harness.print_header(header)
    for row in rows:
        if "wall_s" not in row:
            print(f"{row['name']:<{width}} {row['error']}")
            continue
        ratio = row.get("ours_over_peer_overhead")
        ratio_text = (
            f"{ratio:>8.2f}x" if ratio is not None else f"{'n/a' if row['role'] == 'peer' else '':>9}"
        )
        overhead = "" if row["role"] == NONE else f"{row['overhead']:+.2%}"
        paired = "" if row["role"] == NONE else f"{row['paired_overhead']:+.2%}"
        min_overhead = "" if row["role"] == NONE else f"{row['min_overhead']:+.2%}"
        counts = sorted({count for count in row["recorded"] if count is not None})
        recorded = "/".join(map(str, counts)) + f" {row['loss_list']}" if counts else ""
        print(
            f"{row['name']:<{width}} {row['wall_s']:>8.3f} {overhead:>9} {paired:>8} "
            f"{row['min_wall_s']:>8.3f} {min_overhead:>8} {row['cpu_s']:>8.3f} {ratio_text}  {recorded}"
        )
    print("goals")
    harness.print_goals(result["goals"])


def versions(framework: str) -> dict[str, str]:
    packages = {
        "hf": ("transformers", "torch", "mlflow-skinny", "tensorboard", "dvclive"),
        "lightning": ("lightning", "torch", "mlflow-skinny", "tensorboard"),
        "keras": ("keras", "torch", "tensorboard", "tensorflow-cpu", "dvclive"),
    }[framework]
    found = {"python": harness.python_version(), **harness.package_versions(packages)}
    if framework == "keras":
        found["backend"] = os.environ["KERAS_BACKEND"]
    return found


def run_one(framework: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.update(CHILD_ENV)
    harness.clear_environ(CLEARED_ENV)
    quiet_loggers()
    import torch

    torch.set_num_threads(1)
    harness.import_quietly("craft_ai_sdk")
    with tempfile.TemporaryDirectory(prefix=f"bench-e2e-{framework}-") as tmp:
        variants = bench(framework, args.steps, args.repeats, args.warmup_steps, Path(tmp))
    result = summarise(framework, variants, args.steps, args.repeats)
    result["versions"] = versions(framework)
    result["machine"] = platform.platform()
    return result


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each framework in its own process: no framework's imports or threads weigh on another's timing."""
    results: list[dict[str, Any]] = []
    for framework in FRAMEWORKS:
        arguments = ["--framework", framework, "--steps", str(args.steps), "--repeats", str(args.repeats)]
        arguments += ["--warmup-steps", str(args.warmup_steps)]
        child = harness.run_child(__file__, arguments, env={**os.environ, **CHILD_ENV})
        if child.result is None:
            print(f"{framework}: the benchmark exited {child.returncode}\n", flush=True)
            results.append({"framework": framework, "error": f"exit {child.returncode}"})
            continue
        print(flush=True)
        results.extend(child.result)
    return results


# -- BENCHMARKS.md: this benchmark's section -----------------------------------------


def render(result: list[dict[str, Any]]) -> tuple[list[str], list[Goal]]:
    """This benchmark's section of BENCHMARKS.md, from its JSON result: the markdown lines, and its rows
    of the report's goals table."""
    names = {"hf": "HuggingFace", "lightning": "Lightning", "keras": "Keras"}
    lines: list[str] = []
    goals: list[Goal] = []
    for framework in result:
        title = names.get(framework.get("framework", ""), framework.get("framework", "?"))
        if "rows" not in framework:
            lines += [f"### {title}", "", f"Did not run: {framework.get('error')}", ""]
            goals.append(Goal("(b) end-to-end", f"{title}: ours overhead <= 1%", "did not run", None))
            continue
        rows = []
        for row in framework["rows"]:
            if "wall_s" not in row:
                rows.append([row["name"], row.get("error", ""), "", "", "", "", "", ""])
                continue
            counts = "/".join(str(c) for c in sorted({c for c in row["recorded"] if c is not None}))
            is_none = row["role"] == "none"
            rows.append(
                [
                    row["name"],
                    num(row["wall_s"], 3),
                    "" if is_none else pct(row["overhead"]),
                    "" if is_none else pct(row["paired_overhead"]),
                    "" if is_none else pct(row["min_overhead"]),
                    num(row["cpu_s"], 3),
                    ratio(row.get("ours_over_peer_overhead")) if row["role"] == "peer" else "",
                    f"{counts} {row['loss_list']}" if counts else "",
                ]
            )
        versions_text = ", ".join(f"{key} {value}" for key, value in framework["versions"].items())
        lines += [
            f"### {title}",
            "",
            f"{framework['steps']:,} optimizer steps, logging every step; median of {framework['repeats']} "
            f"interleaved repeats; the no-logger runs spread **{framework['noise']:.1%}** (max/min - 1) in "
            f"this run. {versions_text}.",
            "",
            *table(
                [
                    "variant",
                    "wall s",
                    "overhead",
                    "paired",
                    "min/min",
                    "cpu s",
                    "ours/peer overhead",
                    "recorded",
                ],
                rows,
            ),
            "",
        ]
        ours = next(row for row in framework["rows"] if row["role"] == "ours")
        goals.append(
            Goal(
                "(b) end-to-end",
                f"{title}: ours overhead <= 1% of the no-logger wall time",
                f"{pct(ours['overhead'])} (paired {pct(ours['paired_overhead'])}, min/min "
                f"{pct(ours['min_overhead'])}; no-logger spread {framework['noise']:.1%})",
                framework["goals"][0]["pass"],
            )
        )
        peers = [goal for goal in framework["goals"][1:] if goal["pass"] is not None]
        lost = [goal["goal"].removeprefix("ours < ") for goal in peers if not goal["pass"]]
        skipped = [
            goal["goal"].removeprefix("ours < ") for goal in framework["goals"][1:] if goal["pass"] is None
        ]
        measured = f"ours {pct(ours['overhead'])}; " + ", ".join(
            f"{row['name']} {pct(row['overhead'])}"
            for row in framework["rows"]
            if row["role"] == "peer" and "overhead" in row
        )
        if lost:
            measured += f"; not lower than: {', '.join(lost)}"
        if skipped:
            measured += f"; did not run: {', '.join(skipped)}"
        goals.append(
            Goal(
                "(b) end-to-end",
                f"{title}: ours overhead lower than every peer's",
                measured,
                (not lost) if peers else None,
            )
        )
    return lines, goals


def main() -> int:
    parser = harness.arg_parser(__doc__)
    parser.add_argument("--framework", choices=(*FRAMEWORKS, "all"), default="all")
    parser.add_argument("--steps", type=int, default=2_000, help="optimizer steps per training")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per variant")
    parser.add_argument("--warmup-steps", type=int, default=50, help="steps of the untimed warm-up run")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")
    json_path = args.json.resolve() if args.json else None
    if args.framework == "all":
        results = run_all(args)
    else:
        results = [run_one(args.framework, args)]
        print_table(results[0])
        sys.stdout.flush()
    harness.write_json(json_path, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
