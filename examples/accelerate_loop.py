"""A plain PyTorch loop with Hugging Face Accelerate, recorded by CraftAiTracker.

    python examples/accelerate_loop.py
    accelerate launch --num_processes 2 examples/accelerate_loop.py   # 2 GPUs: each value recorded once

Runs offline in seconds (a small regression model on made-up data). The tracker
is one more entry of ``log_with``: ``init_trackers`` starts the run and keeps its
config as hyperparameters, every ``accelerator.log`` appends to list metrics,
``end_training`` closes the run. Outside a Craft AI execution the metrics go to
the local store (./craft_metrics/metrics.db); inside one, to the platform.
Then try: ``craft-callbacks show latest``.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator

from craft_callbacks.accelerate import CraftAiTracker


def main(learning_rate: float = 0.02, epochs: int = 5) -> str | None:
    """Train, recording the run; returns its id (on the main process)."""
    config = {"learning_rate": learning_rate, "epochs": epochs, "batch_size": 16, "model": {"hidden": 32}}
    accelerator = Accelerator(log_with=[CraftAiTracker(pipeline_name="accelerate-loop")])
    accelerator.init_trackers("accelerate-loop", config=config)

    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = (x[:, :4].sum(dim=1, keepdim=True) - x[:, 4:].sum(dim=1, keepdim=True)).tanh()
    train = torch.utils.data.TensorDataset(x[:448], y[:448])
    loader = torch.utils.data.DataLoader(train, batch_size=config["batch_size"], shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    step = 0
    for epoch in range(epochs):
        model.train()
        for inputs, targets in loader:
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % 5 == 0:
                accelerator.log({"train_loss": loss.item(), "lr": scheduler.get_last_lr()[0]}, step=step)
        model.eval()
        with torch.no_grad():
            held_out = x[448:].to(accelerator.device), y[448:].to(accelerator.device)
            val_loss = torch.nn.functional.mse_loss(model(held_out[0]), held_out[1]).item()
        accelerator.log({"val_loss": val_loss, "epoch": epoch}, step=step)

    recorder = accelerator.get_tracker("craft_ai", unwrap=True) if accelerator.is_main_process else None
    accelerator.end_training()  # the run closes: the last value of every list becomes a scalar
    return recorder.execution_id if recorder is not None else None


if __name__ == "__main__":
    main()
