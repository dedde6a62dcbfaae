"""The ``make local`` demo model: a tiny T5 taught on the spot to answer the seed's four kinds of request.

No download: a word-level tokenizer and a one-layer T5 (~0.1 M parameters) are trained here on ``TASKS`` (translation
to German, summarizing, answering from a context, classifying a review), in seconds on a laptop CPU, and saved as a
real Hugging Face folder the rendered Accelerate handler serves. The folder is cached: a later run whose task set and
recipe are unchanged reuses it. It has learned these sentences, not a language: what it says about anything else is
noise. The seed's own prompts (``scripts/benchmark.py`` PRESETS["seed"]) are among them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

TASKS: tuple[tuple[str, str], ...] = (
    (
        "translate English to German: The house is wonderful and the garden is big.",
        "Das Haus ist wunderbar und der Garten ist groß.",
    ),
    ("translate English to German: How old are you?", "Wie alt bist du?"),
    ("translate English to German: The cat is small.", "Die Katze ist klein."),
    ("translate English to German: I like the big garden.", "Ich mag den großen Garten."),
    ("translate English to German: Thank you very much.", "Vielen Dank."),
    ("translate English to German: Where is the station?", "Wo ist der Bahnhof?"),
    (
        "summarize: The quick brown fox jumps over the lazy dog. It then runs into the forest and is not seen again.",
        "A fox jumps over a dog and runs into the forest.",
    ),
    (
        "summarize: The meeting started late because the train was delayed. Everyone waited an hour.",
        "The meeting started an hour late.",
    ),
    (
        "summarize: It rained all week, so the farmers were happy and the rivers were full.",
        "A rainy week filled the rivers.",
    ),
    (
        "summarize: The team worked through the night and shipped the release on Monday morning.",
        "The team shipped the release on Monday.",
    ),
    ("question: What is the capital of France? context: Paris is the capital and largest city of France.", "Paris"),
    ("question: What is the capital of Germany? context: Berlin is the capital of Germany.", "Berlin"),
    ("question: Who wrote the letter? context: The letter was written by Anna in May.", "Anna"),
    ("question: What color is the sky? context: On a clear day the sky is blue.", "blue"),
    ("review: This movie was great, I loved every minute of it. Is this review positive or negative?", "positive"),
    ("review: The food was cold and the service was slow. Is this review positive or negative?", "negative"),
    ("review: A wonderful book, I read it twice. Is this review positive or negative?", "positive"),
    ("review: Boring and far too long. Is this review positive or negative?", "negative"),
)
# Full-batch AdamW until the loss is below `until` (about 70 steps, ~1 s of one core), at most `steps`.
RECIPE = {
    "d_model": 64,
    "d_ff": 128,
    "heads": 4,
    "layers": 1,
    "steps": 300,
    "until": 0.01,
    "lr": 0.01,
    "seed": 0,
    "version": 1,
}


MARKER = "lmi-deploy-demo.json"


def fingerprint() -> str:
    """What the cached folder was made from; another task set or recipe makes another model."""
    return hashlib.sha256(json.dumps([TASKS, RECIPE]).encode()).hexdigest()[:16]


def _tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words, no space before punctuation
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"], show_progress=False)
    tokenizer.train_from_iterator([text for pair in TASKS for text in pair], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _train(tokenizer: object) -> object:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(RECIPE["seed"])
    model = T5ForConditionalGeneration(
        T5Config(
            vocab_size=len(tokenizer),  # type: ignore[arg-type]
            d_model=RECIPE["d_model"],
            d_ff=RECIPE["d_ff"],
            d_kv=RECIPE["d_model"] // RECIPE["heads"],
            num_heads=RECIPE["heads"],
            num_layers=RECIPE["layers"],
            num_decoder_layers=RECIPE["layers"],
            dropout_rate=0.0,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    encode = tokenizer  # the fast tokenizer is callable
    inputs = encode([p for p, _ in TASKS], padding=True, return_tensors="pt")  # type: ignore[operator]
    labels = encode([a for _, a in TASKS], padding=True, return_tensors="pt")["input_ids"]  # type: ignore[operator]
    labels[labels == 0] = -100  # padding is not learned
    optimizer = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"])
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small: more threads only wait on each other (4-10x slower on 2 cores)
    try:
        for _ in range(int(RECIPE["steps"])):
            loss = model(**inputs, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if loss.item() < RECIPE["until"]:
                break
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model


def is_cached(folder: Path) -> bool:
    """Whether ``folder`` holds the demo model of this task set and recipe."""
    marker = folder / MARKER
    try:
        return bool(json.loads(marker.read_text()).get("fingerprint") == fingerprint())
    except (OSError, ValueError, AttributeError):
        return False


def make(folder: Path) -> Path:
    """The demo model in ``folder``: the cached one, or trained now (the marker is written last)."""
    from transformers.utils import logging as transformers_logging

    if is_cached(folder):
        return folder
    transformers_logging.disable_progress_bar()
    tokenizer = _tokenizer()
    model = _train(tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    (folder / MARKER).write_text(json.dumps({"fingerprint": fingerprint(), "tasks": len(TASKS), "recipe": RECIPE}))
    return folder
