"""Train a tiny regression model with Lightning and record it with CraftAiLogger.

Runs offline on a CPU in seconds. Outside a Craft AI execution the metrics go
to the local store (./craft_metrics/metrics.db); inside one, to the platform.
Then try: ``craft-callbacks runs``.

Each epoch's checkpoint lands in the run's folder; after a crash, resume the
same run from its last one (each step is kept once)::

    python examples/lightning_module.py --run-id <run id> \
        --ckpt-path craft_metrics/<run id>/lightning-regressor/<run id>/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from craft_callbacks.lightning import CraftAiLogger


class Regressor(L.LightningModule):
    def __init__(self, hidden: int = 16, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("test/loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def loader(samples: int, seed: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=generator)
    y = (x * torch.tensor([1.0, -2.0, 0.5, 3.0])).sum(dim=1, keepdim=True)
    return DataLoader(TensorDataset(x, y), batch_size=16)


def main(
    hidden: int = 16,
    lr: float = 0.05,
    epochs: int = 5,
    run_id: str | None = None,
    ckpt_path: str | None = None,
) -> None:
    """Train and test; ``run_id`` and ``ckpt_path`` resume a run from its checkpoint."""
    torch.manual_seed(0)
    model = Regressor(hidden=hidden, lr=lr)
    trainer = L.Trainer(
        max_epochs=epochs,
        log_every_n_steps=2,
        accelerator="cpu",
        logger=CraftAiLogger(name="lightning-regressor", run_id=run_id),
        callbacks=[ModelCheckpoint(save_last=True)],  # in the run's folder
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader(320, seed=0), loader(64, seed=1), ckpt_path=ckpt_path)
    trainer.test(model, loader(64, seed=2))  # after fit: scalars of the same run


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--run-id", help="continue this run (with --ckpt-path)")
    parser.add_argument("--ckpt-path", help="resume from this checkpoint of the run")
    arguments = parser.parse_args()
    main(epochs=arguments.epochs, run_id=arguments.run_id, ckpt_path=arguments.ckpt_path)
