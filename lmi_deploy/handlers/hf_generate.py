"""Loading with transformers' own calls, tokenizing within the deployment's limits, and generate()."""

from __future__ import annotations

import logging
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer

from .request import BadRequest

# transformers 5 renamed from_pretrained's torch_dtype to dtype; the LMI containers ship 4.x and 5.x
DTYPE_ARGUMENT = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(properties: dict[str, str], default: str) -> Any:
    """option.dtype (else ``default``, the rendered one) as a torch dtype; fp16 without a GPU loads in fp32."""
    dtype = properties.get("dtype", default)
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"option.dtype={dtype} is not one of {sorted(_TORCH_DTYPES)}")
    if dtype == "fp16" and not torch.cuda.is_available():
        logging.warning("fp16 needs a GPU; loading in fp32 on the CPU")
        return torch.float32
    return _TORCH_DTYPES[dtype]


def load_tokenizer(location: str, properties: dict[str, str], seq2seq: bool) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(
        location,
        revision=properties.get("revision"),
        trust_remote_code=properties.get("trust_remote_code", "false").lower() == "true",
        # decoder-only models continue the prompt: pad on the left so every prompt ends where generation starts
        padding_side="right" if seq2seq else "left",
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def chars_per_token(tokenizer: Any) -> int:
    """The most characters one token of this vocabulary stands for: a prompt longer than max_sequence_length times
    this cannot fit (whatever the tokenizer does, short of collapsing whitespace), so it is refused untokenized."""
    return max([len(token) for token in tokenizer.get_vocab()] or [1])


def encode(tokenizer: Any, prompts: list[str], kwargs: dict[str, Any], max_sequence_length: int) -> Any:
    """The prompts tokenized (one padded batch), or BadRequest when one of them and the new tokens asked for would
    exceed max_sequence_length."""
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    new = int(kwargs.get("max_new_tokens") or 0)
    for index, length in enumerate(encoded["attention_mask"].sum(-1).tolist()):
        if length + new > max_sequence_length:
            raise BadRequest(
                f"input {index} is {length} tokens; with max_new_tokens={new} that makes {length + new}, more "
                f"than this deployment's max_sequence_length={max_sequence_length}: shorten the input or ask for "
                "fewer tokens"
            )
    return encoded


class StopAt(transformers.StoppingCriteria):  # type: ignore[misc]
    """Ends generate() at the request's deadline or when its client has gone; counts the steps taken."""

    def __init__(self, deadline: Any) -> None:
        self.deadline = deadline
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        self.steps += 1
        return bool(self.deadline.expired())


def generate(
    model: Any,
    tokenizer: Any,
    seq2seq: bool,
    prompts: list[str],
    kwargs: dict[str, Any],
    fast: Any = None,
    deadline: Any = None,
    *,
    max_sequence_length: int,
) -> dict[str, Any]:
    """One batched generation for all prompts: the new text of each, and how many tokens each generated.

    ``fast`` (a FastDecoder, where the handler has one) decodes the requests it supports; generate() does the rest.
    ``deadline`` (a Deadline) stops either at the request's deadline (DeadlineExceeded) or when its client has gone.
    """
    kwargs = dict(kwargs)
    seed = kwargs.pop("seed", None)
    if seed is not None:
        torch.manual_seed(seed)
    encoded = encode(tokenizer, prompts, kwargs, max_sequence_length).to(model.device)
    settings = fast.settings(kwargs) if fast is not None else None
    with torch.inference_mode():
        if settings is not None:
            output_ids = fast.generate_ids(encoded, settings, deadline)
        else:
            if deadline is not None:
                kwargs["stopping_criteria"] = transformers.StoppingCriteriaList([StopAt(deadline)])
            output_ids = model.generate(**encoded, pad_token_id=tokenizer.pad_token_id, **kwargs)
            # a decoder-only model repeats the prompt; an encoder-decoder starts with its (not generated) start token
            output_ids = output_ids[:, 1 if seq2seq else encoded["input_ids"].shape[1] :]
    if deadline is not None:
        deadline.check(output_ids.shape[1])
    texts = [str(text) for text in tokenizer.batch_decode(output_ids, skip_special_tokens=True)]
    # tokens up to and including the first end-of-sequence (what the model generated, not batch padding)
    counts = []
    for row in output_ids.tolist():
        end = row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
        counts.append(end)
    return {"outputs": texts, "generated_tokens": counts}


def stream_generate(
    model: Any, tokenizer: Any, prompt: str, kwargs: dict[str, Any], deadline: Any, *, max_sequence_length: int
) -> Any:
    """Text chunks of one prompt's generation, yielded as they are decoded (generate runs in a thread).

    The prompt is checked before the first chunk (BadRequest). Generation stops at the deadline (the stream then ends
    with DeadlineExceeded, which the server sends as an error line), when the client goes away, or when the consumer
    closes the stream; a failure of generate() ends the stream with that error.
    """
    from threading import Thread

    from transformers import TextIteratorStreamer

    kwargs = dict(kwargs)
    seed = kwargs.pop("seed", None)
    if seed is not None:
        torch.manual_seed(seed)
    encoded = encode(tokenizer, [prompt], kwargs, max_sequence_length).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    stop = StopAt(deadline)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode():
                model.generate(
                    **encoded,
                    streamer=streamer,
                    pad_token_id=tokenizer.pad_token_id,
                    stopping_criteria=transformers.StoppingCriteriaList([stop]),
                    **kwargs,
                )
        except BaseException as error:  # reported at the end of the stream, not lost in this thread
            failures.append(error)
            streamer.end()

    def chunks() -> Any:
        finished = False
        try:
            yield from streamer
            finished = True
        finally:
            if not finished:  # the consumer closed the stream: nobody reads the rest
                deadline.reason = deadline.reason or "cancelled"
        if failures:
            raise failures[0]
        deadline.check(stop.steps)

    Thread(target=run, daemon=True).start()
    return chunks()
