"""option.kv_cache=static, option.cuda_graphs and option.compile: the decode loop.

generate() re-plans every token in Python: its launch overhead, not the GPU, sets the pace of a large model at small
batch. This loop keeps one static KV cache per shape bucket (batch, prompt length and new tokens rounded up to
powers of two), replays one captured CUDA graph for the prompt (encoder and first step) and one per token, reading
the finished flags back only every few tokens. Greedy and sampled decoding with temperature/top-k/top-p; anything else
(beams, penalties, constraints) goes to generate(). At load it checks itself against generate() and is switched off
if the tokens differ.
option.compile compiles the decode step once, at load, with dynamic shapes, so one compilation serves every bucket;
the buckets of option.warm_shapes are captured at load too. After load nothing compiles (a new bucket would still
cost its kernels' specialisation and tuning, seconds): a request outside the warm buckets is served by a larger warm
bucket where one holds it with little padding, else by its own bucket with the step uncompiled (still a CUDA graph).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

# generation-config fields this loop implements, or that must be at their neutral value for it to apply
_NEUTRAL = {
    "num_beams": (None, 1),
    "num_beam_groups": (None, 1),
    "penalty_alpha": (None, 0, 0.0),
    "repetition_penalty": (None, 1, 1.0),
    "encoder_repetition_penalty": (None, 1, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "bad_words_ids": (None,),
    "force_words_ids": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "typical_p": (None, 1, 1.0),
    "epsilon_cutoff": (None, 0, 0.0),
    "eta_cutoff": (None, 0, 0.0),
    "min_p": (None, 0, 0.0),
    "guidance_scale": (None, 1, 1.0),
    "renormalize_logits": (None, False),
    "exponential_decay_length_penalty": (None,),
    "watermarking_config": (None,),
    "stop_strings": (None,),
    "assistant_model": (None,),
    "prompt_lookup_num_tokens": (None,),
    "num_return_sequences": (None, 1),
    "token_healing": (None, False),
    "dola_layers": (None,),
}
_CHECK_EVERY = 8  # tokens between reads of the finished flags (each read waits for the GPU)
_TRANSIENT_SHAPES = 8  # buckets kept beside the warm ones (each holds a KV cache and its graphs)
COMPILE_BACKEND = "inductor"
COMPILE_DEVICES = ("cuda",)  # where option.compile pays for its compilation at load


def _power_of_two(value: int, floor: int) -> int:
    size = floor
    while size < value:
        size *= 2
    return size


def _static_cache(config: Any, length: int, batch: int, device: Any, dtype: Any) -> Any:
    from transformers import StaticCache

    try:  # transformers 5: sized on the first update
        return StaticCache(config=config, max_cache_len=length)
    except TypeError:  # transformers 4
        return StaticCache(config=config, max_batch_size=batch, max_cache_len=length, device=device, dtype=dtype)


class _Shape:
    """Static buffers, cache and (on CUDA) the captured decode step for one (batch, prompt, cache) bucket."""

    def __init__(self, decoder: FastDecoder, batch: int, source: int, new: int) -> None:
        model, device = decoder.model, decoder.device
        self.decoder = decoder
        self.batch, self.source, self.new = batch, source, new
        self.tokens = torch.zeros((batch, 1), dtype=torch.long, device=device)
        self.logits = torch.zeros((batch, decoder.vocab), dtype=torch.float32, device=device)
        self.cache_position = torch.zeros((1,), dtype=torch.long, device=device)
        self.input_ids = torch.zeros((batch, source), dtype=torch.long, device=device)
        self.source_mask = torch.ones((batch, source), dtype=torch.long, device=device)
        config = decoder.decoder_config
        if decoder.seq2seq:
            from transformers import EncoderDecoderCache

            self.hidden = torch.zeros((batch, source, config.d_model), dtype=model.dtype, device=device)
            self.cache = EncoderDecoderCache(
                _static_cache(config, new, batch, device, model.dtype),
                _static_cache(config, source, batch, device, model.dtype),
            )
        else:
            self.mask = torch.ones((batch, source + new), dtype=torch.long, device=device)
            self.positions = torch.zeros((batch, 1), dtype=torch.long, device=device)
            self.cache = _static_cache(config, source + new, batch, device, model.dtype)
        self.graph: Any = None
        self.prefill_graph: Any = None
        self.compiled = decoder.compiled_forward is not None

    def _forward(self, cache_position: Any = None, decode: bool = False, **kwargs: Any) -> Any:
        if self.decoder.takes_cache_position:
            kwargs["cache_position"] = self.cache_position if cache_position is None else cache_position
        kwargs[self.decoder.cache_argument] = self.cache
        forward = self.decoder.compiled_forward if decode and self.compiled else self.decoder.model
        return forward(use_cache=True, return_dict=True, **kwargs)

    def step(self, decode: bool = True) -> None:
        """One token for every row: reads self.tokens, writes self.logits, advances the cache. Graph-capturable."""
        if self.decoder.seq2seq:
            from transformers.modeling_outputs import BaseModelOutput

            output = self._forward(
                decode=decode,
                encoder_outputs=BaseModelOutput(last_hidden_state=self.hidden),
                attention_mask=self.source_mask,
                decoder_input_ids=self.tokens,
            )
        else:
            output = self._forward(
                decode=decode, input_ids=self.tokens, attention_mask=self.mask, position_ids=self.positions
            )
            self.positions.add_(1)
        self.logits.copy_(output.logits[:, -1, :])
        self.cache_position.add_(1)

    def prefill(self, input_ids: Any, attention_mask: Any) -> None:
        """Start a request: reset the cache, run the prompt, leave the first token's logits (a graph on CUDA)."""
        self.input_ids.copy_(input_ids)
        self.source_mask.copy_(attention_mask)
        if self.prefill_graph is not None:
            self.prefill_graph.replay()
        else:
            self._prefill()

    def _prefill(self) -> None:
        """prefill() on the static buffers: graph-capturable (in-place resets, no host reads)."""
        self.cache.reset()
        self.cache_position.zero_()
        model = self.decoder.model
        if self.decoder.seq2seq:
            self.hidden.copy_(model.get_encoder()(input_ids=self.input_ids, attention_mask=self.source_mask)[0])
            self.tokens.fill_(self.decoder.start_token)
            self.step(decode=False)  # the decoder start token, uncompiled: it fills the cross-attention cache
            return
        self.mask[:, : self.source].copy_(self.source_mask)
        positions = self.source_mask.cumsum(-1) - 1
        positions.masked_fill_(self.source_mask == 0, 1)
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self.decoder.takes_logits_to_keep else {}
        output = self._forward(
            cache_position=torch.arange(self.source, device=self.input_ids.device),
            input_ids=self.input_ids,
            attention_mask=self.mask[:, : self.source],
            position_ids=positions,
            **kwargs,
        )
        self.logits.copy_(output.logits[:, -1, :])
        self.cache_position.fill_(self.source)
        self.positions.copy_(positions[:, -1:] + 1)

    def warm(self, input_ids: Any, attention_mask: Any) -> None:
        """The prompt pass and two steps, once: allocator, cuBLAS workspaces, lazy modules, compilation."""
        self.prefill(input_ids, attention_mask)
        for _ in range(2):
            self.step()

    def capture(self, input_ids: Any, attention_mask: Any) -> None:
        """Record the prompt pass and step() as CUDA graphs, in the order they replay; what fails runs eagerly."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.warm(input_ids, attention_mask)
        torch.cuda.current_stream().wait_stream(stream)
        for name in ("prefill_graph", "graph"):
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, pool=self.decoder.pool):
                    self._prefill() if name == "prefill_graph" else self.step()
                setattr(self, name, graph)
            except Exception as error:  # a data-dependent branch or a host sync inside the model
                torch.cuda.synchronize()
                what = "the prompt pass" if name == "prefill_graph" else "the decode step"
                logging.warning("cuda_graphs: %s of batch %d runs eagerly (%s)", what, self.batch, error)
                if name == "prefill_graph":
                    self._prefill()  # a consistent cache (cross-attention filled) before the step is captured
                    torch.cuda.synchronize()
        if self.graph is None:
            self.decoder.graphs = False

    def next_logits(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.step()


class FastDecoder:
    def __init__(self, model: Any, tokenizer: Any, seq2seq: bool, graphs: bool, compile: bool = False) -> None:
        import inspect

        self.model, self.tokenizer, self.seq2seq = model, tokenizer, seq2seq
        self.device = model.device
        self.graphs = graphs and self.device.type == "cuda"
        # torch.compile fuses the step's many small kernels (norms, GELU, softmax, masks). Dynamic shapes: the first
        # compilation serves the other buckets too, where a size of 1 would be specialised, hence batches of 2 or more.
        self.compiled_forward: Any = (
            torch.compile(model.forward, dynamic=True, backend=COMPILE_BACKEND) if compile else None
        )
        self.min_batch = 2 if compile else 1
        self.warm: set[tuple[int, int, int]] = set()  # buckets prepared at load: never evicted
        self.loaded = False  # once True, nothing compiles any more
        self.fused = False  # set by whoever fused the model's projections (fuse_projections)
        self.kernels = ""  # lmi-deploy's kernels that serve (gemv, decode attention), as logged: none by default
        self.pool = torch.cuda.graph_pool_handle() if self.graphs else None
        config = model.config
        self.decoder_config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        if seq2seq and getattr(config, "num_decoder_layers", None) not in (None, self.decoder_config.num_hidden_layers):
            import copy

            self.decoder_config = copy.copy(self.decoder_config)
            self.decoder_config.num_layers = config.num_decoder_layers  # the cache holds decoder layers
        head = model.get_output_embeddings()
        self.vocab = getattr(head, "vocab", head.weight.shape[0])  # a vocab-parallel head's whole width
        self.start_token = getattr(model.generation_config, "decoder_start_token_id", None)
        if self.start_token is None:
            self.start_token = getattr(config, "decoder_start_token_id", None)
        parameters = inspect.signature(model.forward).parameters
        self.takes_cache_position = "cache_position" in parameters
        self.takes_logits_to_keep = "logits_to_keep" in parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"  # renamed in transformers 5.2x
        self.shapes: dict[tuple[int, int, int], _Shape] = {}

    def settings(self, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The decoding settings of a request, or None when it needs something only generate() does."""
        import copy

        config = copy.deepcopy(self.model.generation_config)
        unused = config.update(**{k: v for k, v in kwargs.items() if k != "seed"})
        if unused or config.max_new_tokens is None:
            return None  # generate()'s default length differs between transformers versions: let it decide
        for name, neutral in _NEUTRAL.items():
            if getattr(config, name, None) not in neutral:
                return None
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        return {
            "max_new_tokens": config.max_new_tokens,
            "do_sample": bool(config.do_sample),
            "temperature": config.temperature,
            "top_k": config.top_k,
            "top_p": config.top_p,
            "eos": [eos] if isinstance(eos, int) else list(eos or []),
        }

    def bucket(self, rows: int, length: int, new: int) -> tuple[int, int, int]:
        """(batch, prompt, cache) of the static buffers that serve ``rows`` prompts of ``length`` tokens."""
        return _power_of_two(rows, self.min_batch), _power_of_two(length, 16), _power_of_two(new, 32)

    def _shape(self, key: tuple[int, int, int], input_ids: Any, attention_mask: Any) -> _Shape:
        shape = self.shapes.get(key)
        if shape is None:
            transient = [k for k in self.shapes if k not in self.warm]
            if len(transient) >= _TRANSIENT_SHAPES:  # bound the memory held by caches and graphs
                self.shapes.pop(transient[0])
            shape = self.shapes[key] = _Shape(self, *key)
            if self.loaded and shape.compiled:  # compiling now would stall this request for many seconds
                shape.compiled = False
                logging.info("compile: bucket %s is not among the warm shapes; its step runs uncompiled", key)
            if self.graphs:
                shape.capture(input_ids, attention_mask)
            elif shape.compiled:
                shape.warm(input_ids, attention_mask)
        return shape

    def _serving_bucket(self, key: tuple[int, int, int]) -> tuple[int, int, int]:
        """The bucket that serves ``key``: itself once prepared; after load with compile, else the smallest warm
        bucket that holds it with at most 4x its cells (compiled, padded), else itself (made uncompiled)."""
        if not self.loaded or self.compiled_forward is None or key in self.shapes:
            return key
        batch, source, new = key
        cells = batch * (source + new)
        larger = [k for k in self.warm if k[0] >= batch and k[1] >= source and k[2] >= new]
        larger = [k for k in larger if k[0] * (k[1] + k[2]) <= 4 * cells and self.shapes[k].compiled]
        return min(larger, key=lambda k: k[0] * (k[1] + k[2])) if larger else key

    def warm_up(self, shapes: list[tuple[int, int, int]]) -> None:
        """Prepare (compile, capture) the buckets of these (rows, prompt, new tokens) at load; then compile no more."""
        import time

        started = time.perf_counter()
        pad = self.tokenizer.pad_token_id or 0
        for rows, length, new in shapes if self.graphs or self.compiled_forward else ():
            key = self.bucket(rows, length, new)
            if key in self.warm:
                continue
            if self.device.type == "cuda":
                free, total = torch.cuda.mem_get_info(self.device)
                if free < 0.1 * total:
                    logging.warning("warm_shapes: %.1f GB free; %s and on are prepared on use", free / 1e9, key)
                    break
            input_ids = torch.full(key[:2], pad, dtype=torch.long, device=self.device)
            try:
                with torch.inference_mode():
                    self._shape(key, input_ids, torch.ones_like(input_ids))
            except torch.cuda.OutOfMemoryError:
                self.shapes.pop(key, None)
                torch.cuda.empty_cache()
                logging.warning("warm_shapes: %s does not fit; prepared on first use if memory allows", key)
                break
            self.warm.add(key)
        self.loaded = True
        if self.warm:
            logging.info(
                "warm_shapes: %d buckets (batch, prompt, cache) prepared in %.1f s: %s",
                len(self.warm),
                time.perf_counter() - started,
                sorted(self.warm),
            )

    def _choose(self, logits: Any, settings: dict[str, Any]) -> Any:
        if not settings["do_sample"]:
            return logits.argmax(-1)
        scores = logits
        temperature = settings["temperature"]
        if temperature is not None and temperature != 1.0:
            scores = scores / temperature
        top_k = settings["top_k"]
        if top_k:
            kth = torch.topk(scores, min(top_k, scores.shape[-1])).values[..., -1, None]
            scores = scores.masked_fill(scores < kth, -float("inf"))
        top_p = settings["top_p"]
        if top_p is not None and top_p < 1.0:
            ordered, order = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative <= 1 - top_p
            drop[..., -1:] = False
            scores = scores.masked_fill(drop.scatter(-1, order, drop), -float("inf"))
        return torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(1)

    def generate_ids(self, encoded: Any, settings: dict[str, Any], deadline: Any = None) -> Any:
        """New token ids (rows x steps, pad after each row's end), as generate() would produce them; fewer steps
        where ``deadline`` (a Deadline, asked on the host between steps) expires."""
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
        rows, length = input_ids.shape
        new = settings["max_new_tokens"]
        if new <= 0:
            return input_ids.new_zeros((rows, 0))
        key = batch, source, _ = self._serving_bucket(self.bucket(rows, length, new))
        pad = self.tokenizer.pad_token_id
        padded_ids = input_ids.new_full((batch, source), pad)
        padded_mask = attention_mask.new_zeros((batch, source))
        if self.seq2seq:  # right padding: the prompt starts every row
            padded_ids[:rows, :length], padded_mask[:rows, :length] = input_ids, attention_mask
        else:  # left padding: every prompt ends where generation starts
            padded_ids[:rows, source - length :] = input_ids
            padded_mask[:rows, source - length :] = attention_mask
        # spare rows repeat the first prompt, so they compute something harmless
        padded_ids[rows:], padded_mask[rows:] = padded_ids[:1], padded_mask[:1]
        shape = self._shape(key, padded_ids, padded_mask)
        shape.prefill(padded_ids, padded_mask)
        eos = torch.tensor(settings["eos"] or [-1], device=self.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        finished[rows:] = True
        tokens = torch.full((batch, new), pad, dtype=torch.long, device=self.device)
        steps = new
        for step in range(new):
            if step:
                shape.next_logits()
            chosen = torch.where(finished, pad, self._choose(shape.logits, settings))
            tokens[:, step] = chosen
            shape.tokens.copy_(chosen[:, None])
            finished |= torch.isin(chosen, eos)
            # the deadline is asked while this step runs on the GPU, before the flags' read waits for it: under
            # tensor parallelism the ranks agree on it every few steps, a host round trip (~1 ms on 2 x H200)
            if step + 1 < new and (
                (deadline is not None and deadline.expired())
                or ((step + 1) % _CHECK_EVERY == 0 and bool(finished.all()))
            ):
                steps = step + 1
                break
        return tokens[:rows, :steps]


def parse_warm_shapes(value: str) -> list[tuple[int, int, int]]:
    """option.warm_shapes (ROWSxPROMPTxNEW,...): the (rows, prompt tokens, new tokens) whose buckets are compiled and
    captured at load; a malformed item is logged and skipped."""
    shapes = []
    for item in value.split(","):
        try:
            rows, length, new = (int(part) for part in item.split("x"))
        except ValueError:
            if item.strip():
                logging.warning("option.warm_shapes: %r is not ROWSxPROMPTxNEW (e.g. 4x128x64); skipped", item)
            continue
        shapes.append((rows, length, new))
    return shapes
