"""Tiny random models with a tokenizer trained on the spot: real Hugging Face folders, made offline in seconds.

For the tests and the ``make local`` demo: a T5 (encoder-decoder) and a Llama (decoder-only), both loadable by
``from_pretrained`` and servable by the rendered Accelerate handler. Their output is random text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = [
    "translate English to German: the house is wonderful",
    "summarize: the quick brown fox jumps over the lazy dog and runs into the forest",
    "question: what is the capital of France? answer: Paris",
    "review: this movie was great, I loved every minute. sentiment: positive",
]


def _tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "</s>", "<unk>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its progress lines go to stdout, into the output of scripts that make models
    )
    tokenizer.train_from_iterator(CORPUS * 10, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", bos_token="<s>"
    )


def make(folder: Path, kind: str = "t5", seed: int = 0) -> Path:
    """Write a tiny random ``t5``, ``flan-t5`` (gated-GELU FFN, varied greedy output) or ``llama`` model with its
    tokenizer to ``folder``; returns ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    tokenizer = _tokenizer()
    vocab = len(tokenizer)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    if kind in ("t5", "flan-t5"):
        flan = {"feed_forward_proj": "gated-gelu"} if kind == "flan-t5" else {}
        model = T5ForConditionalGeneration(
            T5Config(
                vocab_size=vocab,
                d_model=32,
                d_ff=64,
                d_kv=8,
                num_heads=4,
                num_layers=2,
                num_decoder_layers=2,
                pad_token_id=0,
                eos_token_id=1,
                decoder_start_token_id=0,
                **flan,
            )
        )
        if flan:  # a smaller embedding: attention and the FFN decide the tokens, not one repeated token
            with torch.no_grad():
                model.shared.weight.mul_(1 / 16)
    elif kind == "llama":
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab,
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=4,
                num_key_value_heads=2,
                num_hidden_layers=2,
                max_position_embeddings=256,
                pad_token_id=0,
                eos_token_id=1,
                bos_token_id=3,
            )
        )
    else:
        raise ValueError(f"kind must be t5, flan-t5 or llama, not {kind!r}")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    if kind == "flan-t5":
        own_lm_head(folder, model.config.d_model, vocab)
    return folder


def own_lm_head(
    folder: Path, width: int, vocab: int, device: str = "cpu", dtype: Any = None, live: range | None = None
) -> None:
    """Give a saved checkpoint an LM head of its own where it has none, as published flan-t5 / flan-ul2 (T5 v1.1)
    checkpoints have: ``lm_head.weight`` beside ``shared.weight`` and ``tie_word_embeddings: false``. transformers 5
    saves every T5 tied (its T5Config forces ``tie_word_embeddings=True``), so the head is added here: into
    ``model.safetensors``, or as one more shard named in the index of a sharded checkpoint. ``live``: the only rows
    that are not zero (see ``text_only_head``)."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    def made() -> Any:
        head = torch.randn(vocab, width, device=device, dtype=dtype or torch.float32) * 0.05
        if live is not None:
            text_only_head(head, live)
        return head.cpu()

    index_path = folder / "model.safetensors.index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
        if "lm_head.weight" in index["weight_map"]:
            return
        head = made()
        save_file({"lm_head.weight": head}, folder / "lm_head.safetensors", metadata={"format": "pt"})
        index["weight_map"]["lm_head.weight"] = "lm_head.safetensors"
        metadata = index.setdefault("metadata", {})
        metadata["total_size"] = metadata.get("total_size", 0) + head.nbytes
        index_path.write_text(json.dumps(index, indent=2) + "\n")
    else:
        tensors = load_file(folder / "model.safetensors")
        if "lm_head.weight" in tensors:
            return
        save_file({**tensors, "lm_head.weight": made()}, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config.pop("scale_decoder_outputs", None)  # transformers 5's record of a tied T5: derived from the line below
    (folder / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}, indent=2) + "\n")


def text_only_head(head: Any, live: range) -> None:
    """Zero the rows of a random LM head outside ``live`` (the ids a small tokenizer spells, past its special
    tokens), in place. A model of a published architecture keeps its vocabulary (flan-t5's 32128) while the tokenizer
    made here has a few hundred ids: its random head would answer ids that decode to nothing, so a benchmark could not
    tell two setups' tokens apart, and an end-of-sequence id could end a row early. A zero row's logit is 0, below the
    largest of the live rows' random logits."""
    import torch

    with torch.no_grad():
        head[: live.start] = 0
        head[live.stop :] = 0
