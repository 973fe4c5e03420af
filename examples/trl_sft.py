"""Fine-tune a tiny causal LM with TRL's SFTTrainer and record it with CraftAiCallback.

Runs offline on a CPU in seconds: the tokenizer (one token per character) and
the LLaMA-style model are built in code, nothing is downloaded. The callback is
the same one as for a plain ``transformers.Trainer``: TRL's own metrics
(``mean_token_accuracy``, ``entropy``, ``num_tokens``) become list metrics
beside the loss. Outside a Craft AI execution the metrics go to the local store
(./craft_metrics/metrics.db); inside one, to the platform. Then try:
``craft-callbacks show latest``.

Needs ``pip install -c constraints.txt -e '.[trl]'`` (transformers, accelerate, torch and trl).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import string

import torch
from datasets import Dataset, disable_progress_bars
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import SFTConfig, SFTTrainer

from craft_callbacks.huggingface import CraftAiCallback

TEXTS = [
    "the quick brown fox jumps over the lazy dog.",
    "a tiny model learns to spell, one character at a time.",
    "metrics land in the local store, or on the platform.",
    "each step appends to a list; the end of the run sets scalars.",
]


def character_tokenizer() -> PreTrainedTokenizerFast:
    """One token per lowercase letter, space and punctuation mark, plus pad/eos/unk."""
    vocabulary = ["<pad>", "<eos>", "<unk>", *string.ascii_lowercase, " ", ".", ",", ";"]
    model = models.WordLevel({token: i for i, token in enumerate(vocabulary)}, unk_token="<unk>")
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_llama(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=96,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def main(max_steps: int = 40, learning_rate: float = 3e-3) -> SFTTrainer:
    disable_progress_bars()
    tokenizer = character_tokenizer()
    args = SFTConfig(
        output_dir="trl_output",
        run_name="trl-sft-tiny-llama",  # the run's name in the local store
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=10,
        max_length=96,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = SFTTrainer(
        model=tiny_llama(len(tokenizer)),
        args=args,
        train_dataset=Dataset.from_dict({"text": TEXTS * 16}),
        eval_dataset=Dataset.from_dict({"text": TEXTS}),
        processing_class=tokenizer,
        callbacks=[CraftAiCallback()],
    )
    trainer.train()
    trainer.evaluate()  # after training: scalars of the same run
    return trainer


if __name__ == "__main__":
    main()
