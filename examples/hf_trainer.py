"""Train a tiny BERT classifier with the HuggingFace Trainer and record it with CraftAiCallback.

Runs offline on a CPU in seconds: the model is built from a config in code (no
download). Outside a Craft AI execution the metrics go to the local store
(./craft_metrics/metrics.db); inside one, to the platform. Then try:
``craft-callbacks runs``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from craft_callbacks.huggingface import CraftAiCallback


class Toy(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Sequences of token ids; the label says whether the first token is in the upper half."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 64, (size, 8), generator=generator)
        self.labels = (self.ids[:, 0] >= 32).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def main(learning_rate: float = 1e-3, max_steps: int = 60) -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=2,
    )
    args = TrainingArguments(
        output_dir="hf_output",
        run_name="hf-tiny-bert",
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=16,
        logging_steps=5,
        eval_strategy="steps",
        eval_steps=20,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=args,
        train_dataset=Toy(512, seed=0),
        eval_dataset=Toy(128, seed=1),
        callbacks=[CraftAiCallback()],
    )
    trainer.train()
    trainer.evaluate()  # after training: scalars of the same run


if __name__ == "__main__":
    main()
