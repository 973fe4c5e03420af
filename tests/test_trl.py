"""The HuggingFace adapter under TRL's ``SFTTrainer``: a tiny causal LM and tokenizer built in code."""

from __future__ import annotations

import string
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

import torch
from datasets import Dataset, disable_progress_bars
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

from craft_callbacks import LocalStore
from craft_callbacks.huggingface import CraftAiCallback
from test_huggingface import SUMMARY, expected_lists, lists_of, scalars_of

disable_progress_bars()

TEXTS = [
    "the quick brown fox jumps over the lazy dog.",
    "hello world, this is a tiny language model.",
    "metrics land in the local store, or on the platform.",
    "a list per metric, a scalar at the end.",
]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer built in code (nothing downloaded)."""
    vocabulary = ["<pad>", "<eos>", "<unk>", *string.ascii_lowercase, " ", ".", ","]
    tokenizer = Tokenizer(
        models.WordLevel({token: i for i, token in enumerate(vocabulary)}, unk_token="<unk>")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_causal_lm(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def sft_trainer(callback: CraftAiCallback, tmp_path: Path, **overrides: Any) -> SFTTrainer:
    tokenizer = tiny_tokenizer()
    options: dict[str, Any] = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 6,
        "logging_steps": 1,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 1e-3,
        "max_length": 64,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "seed": 0,
    }
    options.update(overrides)
    return SFTTrainer(
        model=tiny_causal_lm(len(tokenizer)),
        args=SFTConfig(**options),
        train_dataset=Dataset.from_dict({"text": TEXTS * 6}),
        eval_dataset=Dataset.from_dict({"text": TEXTS}),
        processing_class=tokenizer,
        callbacks=[callback],
    )


# SFTConfig's own default, deprecated by transformers: not ours
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_sft_trainer_lists_equal_its_log_history(store: LocalStore, tmp_path: Path) -> None:
    callback = CraftAiCallback(sink=store)
    trainer = sft_trainer(callback, tmp_path, eval_strategy="steps", eval_steps=3)
    trainer.train()
    assert callback.recorder is not None and callback.recorder.closed
    run = callback.recorder.execution_id
    history = trainer.state.log_history
    lists = lists_of(store, run)
    assert lists == expected_lists(history)
    # TRL's own per-step metrics are there, beside the Trainer's
    for name in (
        "loss",
        "mean_token_accuracy",
        "entropy",
        "num_tokens",
        "eval_loss",
        "eval_mean_token_accuracy",
    ):
        assert name in lists, name
    assert len(lists["loss"]) == 6 and len(lists["eval_loss"]) == 2
    assert [step for step, _ in store.list_series(run, "loss")] == [1, 2, 3, 4, 5, 6]
    assert [step for step, _ in store.list_series(run, "eval_loss")] == [3, 6]

    summary = history[-1]
    assert SUMMARY in summary
    scalars = scalars_of(store, run)
    for key in ("train_runtime", "train_loss", "train_samples_per_second", "total_flos"):
        assert scalars[key] == summary[key]
    assert scalars["mean_token_accuracy"] == lists["mean_token_accuracy"][-1]

    params = store.executions()[0]["hyperparameters"]
    assert params["args/max_length"] == 64  # an SFTConfig field
    assert params["args/learning_rate"] == 1e-3
    assert params["model/hidden_size"] == 16 and params["model/vocab_size"] == 32

    metrics = trainer.evaluate()  # after training: scalars of the same run
    assert scalars_of(store, run)["eval_loss"] == metrics["eval_loss"]
    assert scalars_of(store, run)["eval_mean_token_accuracy"] == metrics["eval_mean_token_accuracy"]
    assert len(lists_of(store, run)["eval_loss"]) == 2


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_the_example_records_its_sft_run() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import trl_sft
    finally:
        sys.path.pop(0)
    trainer = trl_sft.main(max_steps=10)  # into ./craft_metrics/metrics.db of the test's folder
    store = LocalStore("craft_metrics/metrics.db")
    try:
        (execution,) = store.executions()
        assert execution["status"] == "success" and execution["pipeline_name"] == "trl-sft-tiny-llama"
        run = execution["execution_id"]
        lists = lists_of(store, run)
        assert lists == expected_lists(trainer.state.log_history)
        assert len(lists["mean_token_accuracy"]) == 5 and len(lists["eval_loss"]) == 1
        assert scalars_of(store, run)["eval_loss"] == trainer.state.log_history[-1]["eval_loss"]
    finally:
        store.close()
