"""The Lightning adapter with a real L.Trainer on CPU and a tiny LightningModule."""

from __future__ import annotations

import threading
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset

from craft_callbacks import LocalStore, NonNumericMetricWarning, safe_name
from craft_callbacks.lightning import CraftAiLogger


class Tiny(L.LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.05, fail_at: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.hparams["fail_at"] is not None and self.global_step == self.hparams["fail_at"]:
            raise RuntimeError("boom in training_step")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        self.log("acc", 1.0 / (1.0 + loss.item()), on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def loader(batches: int = 10, seed: int = 0) -> DataLoader[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batches * 4, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)


class Spy(Logger):
    """Another logger beside ours: keeps every call Lightning makes, as Lightning made it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "spy"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


def trainer(loggers: list[Logger], tmp_path: Path, **options: Any) -> L.Trainer:
    settings: dict[str, Any] = {
        "max_epochs": 2,
        "log_every_n_steps": 1,
        "accelerator": "cpu",
        "logger": loggers,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(tmp_path),
    }
    settings.update(options)
    return L.Trainer(**settings)


def lists_of(store: LocalStore, run: str) -> dict[str, list[float]]:
    return {row["name"]: row["values"] for row in store.get_list_metrics(execution_id=run)}


def scalars_of(store: LocalStore, run: str) -> dict[str, float]:
    return {row["name"]: row["value"] for row in store.get_metrics(execution_id=run)}


def test_every_value_lightning_passed_lands_in_order_with_its_step(store: LocalStore, tmp_path: Path) -> None:
    ours, spy = CraftAiLogger(sink=store, name="tiny"), Spy()
    trainer([ours, spy], tmp_path).fit(Tiny(), loader(), loader(3, seed=1))
    run = store.executions()[0]
    assert run["pipeline_name"] == "tiny" and run["status"] == "success"
    expected: dict[str, list[tuple[int | None, float]]] = {}
    for step, metrics in spy.calls:
        for key, value in metrics.items():
            expected.setdefault(safe_name(key), []).append((step, value))
    assert {"train_loss", "acc_step", "acc_epoch", "val_loss", "epoch"} <= set(expected)
    for name, pairs in expected.items():
        assert store.list_series(run["execution_id"], name) == pairs, name
    assert len(expected["train_loss"]) == 20
    scalars = scalars_of(store, run["execution_id"])
    assert scalars["train_loss"] == expected["train_loss"][-1][1]


def test_validate_and_test_outside_fit_are_scalars(store: LocalStore, tmp_path: Path) -> None:
    ours = CraftAiLogger(sink=store)
    fitter = trainer([ours], tmp_path)
    model = Tiny()
    fitter.fit(model, loader(), loader(3, seed=1))
    run = ours.version
    val_during_fit = lists_of(store, run)["val_loss"]
    assert len(val_during_fit) == 2
    [tested] = fitter.test(model, loader(3, seed=2))
    scalars = scalars_of(store, run)  # delivered before test() returned
    assert scalars["test_loss"] == pytest.approx(tested["test_loss"])
    [validated] = fitter.validate(model, loader(3, seed=3))
    assert scalars_of(store, run)["val_loss"] == pytest.approx(validated["val_loss"])
    assert lists_of(store, run)["val_loss"] == val_during_fit  # the list did not grow
    assert len(store.executions()) == 1


def test_a_second_fit_is_a_new_run(store: LocalStore, tmp_path: Path) -> None:
    ours = CraftAiLogger(sink=store)
    trainer([ours], tmp_path, max_epochs=1).fit(Tiny(), loader())
    first = ours.version
    trainer([ours], tmp_path, max_epochs=1).fit(Tiny(), loader())
    assert ours.version != first
    assert [len(lists_of(store, run["execution_id"])["train_loss"]) for run in store.executions()] == [10, 10]


def test_a_failing_run_ends_failed_with_its_metrics_delivered(store: LocalStore, tmp_path: Path) -> None:
    ours, spy = CraftAiLogger(sink=store), Spy()
    with pytest.raises(RuntimeError, match="boom"):
        trainer([ours, spy], tmp_path).fit(Tiny(fail_at=13), loader())
    run = store.executions()[0]
    assert run["status"] == "failed"
    logged = [metrics["train/loss"] for _, metrics in spy.calls if "train/loss" in metrics]
    assert len(logged) == 13
    assert lists_of(store, run["execution_id"])["train_loss"] == logged


def test_hyperparameters_from_save_hyperparameters_dicts_and_namespaces(
    store: LocalStore, tmp_path: Path
) -> None:
    class Described(Tiny):
        def on_train_start(self) -> None:
            assert self.logger is not None
            self.logger.log_hyperparams({"optimizer": {"name": "sgd", "momentum": 0.9}})
            self.logger.log_hyperparams(Namespace(batch_size=4, tags=["a", "b"]))

    ours = CraftAiLogger(sink=store)
    trainer([ours], tmp_path, max_epochs=1).fit(Described(hidden=6, lr=0.01), loader())
    params = store.executions()[0]["hyperparameters"]
    assert params["hidden"] == 6 and params["lr"] == 0.01
    assert params["optimizer/name"] == "sgd" and params["optimizer/momentum"] == 0.9
    assert params["batch_size"] == 4 and params["tags"] == ["a", "b"]


def test_non_numeric_values_are_dropped_and_training_goes_on(store: LocalStore, tmp_path: Path) -> None:
    class Chatty(Tiny):
        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            for logger in self.loggers:
                logger.log_metrics(
                    {"note": "a string", "nested": {"a": 1}, "fine": 1.0}, step=self.global_step
                )

    ours = CraftAiLogger(sink=store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer([ours], tmp_path, max_epochs=1).fit(Chatty(), loader())
    run = store.executions()[0]["execution_id"]
    lists = lists_of(store, run)
    assert len(lists["fine"]) == 10 and len(lists["train_loss"]) == 10
    assert "note" not in lists and "nested" not in lists
    dropped = [w for w in caught if issubclass(w.category, NonNumericMetricWarning)]
    assert sorted(str(w.message).split("'")[1] for w in dropped) == ["nested", "note"]


def test_save_costs_nothing_on_the_training_thread(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[int] = []
    original = LocalStore.write

    def spying_write(self: LocalStore, *args: Any, **kwargs: Any) -> None:
        writers.append(threading.get_ident())
        original(self, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "write", spying_write)
    ours = CraftAiLogger(sink=store, flush_interval=0.01)
    for step in range(200):
        ours.log_metrics({"loss": float(step)}, step)
        ours.save()
    assert threading.get_ident() not in writers
    ours.finalize("success")
    assert lists_of(store, ours.version)["loss"] == [float(step) for step in range(200)]


def test_with_model_checkpoint_and_other_loggers(store: LocalStore, tmp_path: Path) -> None:
    ours = CraftAiLogger(sink=store)
    checkpoint = ModelCheckpoint(monitor="val_loss", dirpath=tmp_path / "ckpt", save_top_k=1)
    csv = CSVLogger(tmp_path / "csv")
    trainer([ours, csv], tmp_path, enable_checkpointing=True, callbacks=[checkpoint]).fit(
        Tiny(), loader(), loader(3, seed=1)
    )
    assert checkpoint.best_model_path and Path(checkpoint.best_model_path).is_file()
    assert len(lists_of(store, ours.version)["val_loss"]) == 2
    assert (Path(csv.log_dir) / "metrics.csv").is_file()


def test_without_autolog_the_first_stage_is_taken_as_fit(store: LocalStore, tmp_path: Path) -> None:
    ours = CraftAiLogger(sink=store)
    fitter = trainer([ours], tmp_path, enable_autolog_hparams=False)
    model = Tiny()
    fitter.fit(model, loader(), loader(3, seed=1))
    [tested] = fitter.test(model, loader(3, seed=2))
    run = store.executions()[0]["execution_id"]
    assert len(lists_of(store, run)["train_loss"]) == 20
    assert scalars_of(store, run)["test_loss"] == pytest.approx(tested["test_loss"])


def test_the_logger_survives_pickling(store: LocalStore) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(CraftAiLogger(sink=store, name="x", prefix="p")))
    clone.log_metrics({"loss": 1.0}, 0)
    clone.finalize("success")
    assert lists_of(store, clone.version) == {"p-loss": [1.0]}


def test_lightning_writes_its_files_in_the_run_folder(store: LocalStore, tmp_path: Path) -> None:
    ours = CraftAiLogger(sink=store, name="tiny")
    fitter = trainer([ours], tmp_path, enable_checkpointing=True)
    fitter.fit(Tiny(), loader(), loader(3, seed=1))
    run = store.executions()[0]["execution_id"]
    run_folder = store.path.parent / run
    assert ours.version == run
    assert Path(ours.log_dir) == Path(ours.save_dir) == Path(fitter.log_dir or "") == run_folder
    assert Path(ours.root_dir) == store.path.parent
    best = Path(fitter.checkpoint_callback.best_model_path)  # type: ignore[union-attr]
    assert best.is_file() and best.parent == run_folder / "tiny" / run / "checkpoints"


def test_each_run_has_its_folder_even_when_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRAFT_CALLBACKS_DISABLED", "1")
    first, second = CraftAiLogger(), CraftAiLogger()
    assert first.save_dir != second.save_dir
    assert Path(first.save_dir).parent == Path(second.save_dir).parent == Path("craft_metrics")
    trainer([first], tmp_path, max_epochs=1).fit(Tiny(), loader())
    assert not Path("craft_metrics/metrics.db").exists()  # nothing recorded
