"""lmi-deploy's handler on Hugging Face Accelerate (the Python engine): load, the fast decoder, generate, stream.

Loads the model once, on the container's empty warm-up call: encoder-decoder (T5) or decoder-only, from the weights
the server downloaded. ``option.fast_load`` reads safetensors shards straight into the GPU when the model fits one
(else ``from_pretrained`` with ``device_map=auto``); ``option.kv_cache=static`` decodes with a static KV cache and,
with ``option.cuda_graphs``, one captured CUDA graph per token; ``option.compile`` compiles that step and
``option.fuse_projections`` fuses q|k|v and the gated-FFN inputs, both at load, where the buckets of
``option.warm_shapes`` are prepared too (checked against ``generate`` at load, switched off if they differ).
Serves ``{"inputs": str | [str], "parameters": {...}}`` in one batch and answers
``{"outputs": [str, ...], "generated_tokens": [int, ...]}``; with ``"stream": true`` (one input) it streams
``{"outputs": "<text>"}`` lines as they are generated. Past ``option.request_timeout`` a request gets a 504.
Under ``engine=MPI`` (``tensor_parallel_degree`` > 1) each rank loads its shard and runs the same steps
(``tensor_parallel``, ``tp_shards``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

from . import compile_cache, decode_attention, gemv, gemv_all_reduce, hf_generate, prompt_sums
from .fast_decode import COMPILE_DEVICES, FastDecoder, parse_warm_shapes
from .fast_load import CheckpointError, fast_load_device, load_direct, stale_single_file
from .fused_projections import fuse_projections
from .fused_projections import matrices as fused_projections_matrices
from .handler import Handler, weights_location
from .hf_generate import DTYPE_ARGUMENT, chars_per_token, load_tokenizer, torch_dtype
from .request import Answers, BadRequest, Deadline, DeadlineExceeded, RequestRules, read_body, request_timeout
from .tensor_parallel import Ranks, SharedDeadline, all_reduce_mode, init_ranks, world_size
from .tp_shards import IDLE, load_tensor_parallel, row_wise_matrices

SELF_CHECK_PROMPTS = [
    "translate English to German: How old are you?",
    "summarize: studies have shown that owning a dog is good for you",
]


class AccelerateHandler(Handler):
    """One deployment's handler: its rendered defaults, overridden by the serving.properties the server hands over."""

    def __init__(
        self,
        rules: RequestRules,
        answers: Answers,
        *,
        dtype: str,
        options: dict[str, str],
        warm_shapes: list[str],
        request_timeout_s: float,
        stream_refusal: str | None = None,
        hub_token_secret: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(rules, answers, hub_token_secret)
        self.dtype = dtype  # option.dtype as rendered
        self.options = options  # lmi-deploy's handler options (option.<name>) as rendered
        self.warm_shapes = warm_shapes  # option.warm_shapes as rendered: ROWSxPROMPTxNEW
        self.request_timeout_s = request_timeout_s
        self.stream_refusal = stream_refusal  # why this release cannot stream, where it cannot
        self.timeout = 0.0  # option.request_timeout as loaded
        self.chars_per_token = 0  # of the loaded tokenizer
        self.compile_cache_loaded = False  # whether a staged compile cache was loaded at startup
        self.kernel_timings: dict[str, Any] = {}  # gemv.choose's measurements on this GPU, where it ran
        self.prompt_sums: dict[str, Any] | None = None  # prompt_sums.choose's, under tensor parallelism
        self.attention_restore: Any = None  # undoes decode_attention.install where the kernel serves
        self.ranks: Ranks | None = None  # this rank's process group under engine=MPI (None: one process)

    def option(self, properties: dict[str, str], name: str) -> str:
        return str(properties.get(name, self.options[name])).strip().lower()

    def _warm_shapes(self, properties: dict[str, str]) -> list[tuple[int, int, int]]:
        """option.warm_shapes as served: the properties' value, else the rendered one."""
        return parse_warm_shapes(properties.get("warm_shapes", ",".join(self.warm_shapes)))

    def generate(self, *args: Any) -> dict[str, Any]:
        """hf_generate.generate within this deployment's max_sequence_length."""
        return hf_generate.generate(*args, max_sequence_length=self.rules.max_sequence_length)

    def load(self, properties: dict[str, str]) -> Any:
        """(model, tokenizer, seq2seq, fast decoder); IDLE on a rank with nothing to do (see tp_shards)."""
        degree = int(properties.get("tensor_parallel_degree") or world_size())
        self.ranks = init_ranks(degree, properties)
        model, tokenizer, seq2seq = self.load_model(properties)
        if model is IDLE:
            return IDLE
        if self.ranks is not None:  # before any prompt pass is captured in a CUDA graph: how its sums run
            shapes = self._warm_shapes(properties)
            width = model.get_input_embeddings().weight.shape[1]
            self.prompt_sums = prompt_sums.choose(self.ranks, prompt_sums.largest_values(shapes, width))
        fast = self.fast_decoder(model, tokenizer, seq2seq, properties)
        self.timeout = request_timeout(properties, self.request_timeout_s)
        self.chars_per_token = chars_per_token(tokenizer)
        return model, tokenizer, seq2seq, fast

    def load_model(self, properties: dict[str, str]) -> tuple[Any, Any, bool]:
        """Model, tokenizer and whether it is encoder-decoder, from the serving.properties values."""
        started = time.perf_counter()
        location = weights_location(properties)
        trust_remote_code = properties.get("trust_remote_code", "false").lower() == "true"
        revision = properties.get("revision")
        config = AutoConfig.from_pretrained(location, revision=revision, trust_remote_code=trust_remote_code)
        seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        model_class = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        dtype = torch_dtype(properties, self.dtype)
        model = None
        if self.ranks is not None:  # engine=MPI: this rank's shard, or the device_map fallback
            one_shot = all_reduce_mode(properties) == "one_shot"
            model = load_tensor_parallel(location, model_class, config, dtype, self.ranks, one_shot)
            if model is IDLE:
                return IDLE, None, seq2seq
        elif self.option(properties, "fast_load") == "true" and not trust_remote_code:
            device = fast_load_device(location)
            if device is not None:
                try:
                    model = load_direct(location, model_class, config, dtype, device)
                except Exception as error:  # an unusual checkpoint: from_pretrained knows more layouts
                    logging.warning("fast_load failed (%s); using from_pretrained", error)
                    model = None
        if model is None:
            model = _from_pretrained(location, model_class, dtype, properties)
        took = time.perf_counter() - started
        logging.info("loaded %s from %s (%s) in %.1f s", model_class.__name__, location, dtype, took)
        return model, load_tokenizer(location, properties, seq2seq), seq2seq

    def fast_decoder(self, model: Any, tokenizer: Any, seq2seq: bool, properties: dict[str, str]) -> FastDecoder | None:
        """The static-cache decoder, if option.kv_cache=static and it matches generate() token for token here.

        Tries the configured variant first (with the streaming kernel where it won its timing), then drops the kernel,
        the fused projections, compile, graphs: the fastest one that agrees is served, with option.warm_shapes
        prepared (compiled from the staged compile cache where there is one, captured) before the first request.
        """
        if self.option(properties, "kv_cache") != "static":
            return None
        graphs, compiled = self._graphs_and_compile(model, properties)
        if compiled:
            self.compile_cache_loaded = compile_cache.load(weights_location(properties))
        check = {"max_new_tokens": 8}
        plain = self.generate(model, tokenizer, seq2seq, SELF_CHECK_PROMPTS, check)
        fuse = self.option(properties, "fuse_projections") == "true"
        restore = fuse_projections(model, seq2seq) if fuse else None
        if not self._agreed(restore is not None) and restore is not None:
            restore()  # another rank could not fuse (memory)
            restore = None
        streamed = self._agreed(restore is not None and self._choose_kernels(model, seq2seq, properties))
        variants = [
            (graphs, compiled, True, streamed),
            (graphs, compiled, True, False),
            (graphs, compiled, False, False),
        ]
        variants += [(graphs, False, False, False), (False, False, False, False)]
        for graphs, compiled, fused, stream in [v for i, v in enumerate(variants) if v not in variants[:i]]:
            if not stream:
                self._drop_kernels()
            if fused and restore is None:
                continue
            if not fused and restore is not None:
                restore()
                restore = None
            name = (
                f"kv_cache=static (cuda_graphs {'on' if graphs else 'off'}, compile {'on' if compiled else 'off'}, "
                f"fused projections {'on' if fused else 'off'}{self._kernels_named()})"
            )
            agrees = False
            try:
                decoder = FastDecoder(model, tokenizer, seq2seq, graphs, compiled)
                decoder.fused, decoder.kernels = fused, self._kernels_named()
                fast = self.generate(model, tokenizer, seq2seq, SELF_CHECK_PROMPTS, check, decoder)
                agrees = fast == plain
                if not agrees:
                    logging.warning("%s disagrees with generate() (%s vs %s)", name, fast, plain)
            except Exception as error:  # an architecture or transformers version this loop does not know
                logging.warning("%s failed its self-check (%s)", name, error)
            if not self._agreed(agrees):
                continue
            logging.info("%s: agrees with generate(); serving with it", name)
            self._warm_up(decoder, properties)
            return decoder
        if restore is not None:
            restore()
        logging.warning("kv_cache=static is off: decoding with generate()")
        return None

    def _graphs_and_compile(self, model: Any, properties: dict[str, str]) -> tuple[bool, bool]:
        """option.cuda_graphs and option.compile where they can serve this model."""
        graphs = self.option(properties, "cuda_graphs") == "true" and torch.cuda.is_available()
        compiled = self.option(properties, "compile") == "true" and model.device.type in COMPILE_DEVICES
        split = _devices_spanned(model)
        if split > 1:  # device_map: one graph cannot span the devices; compiled, accelerate's per-layer device hooks
            # recompile past dynamo's limit (8) and decode slower than eagerly (flan-t5-xxl over 2 x H200, batch 4:
            # 4694 ms a request compiled, 2698 eager in an earlier run)
            if graphs or compiled:
                logging.info("cuda_graphs and compile: off for a model split over %d devices (device_map)", split)
            graphs = compiled = False
        return graphs, compiled

    def _agreed(self, flag: bool) -> bool:
        """``flag`` where every rank says so (tensor parallel: the ranks take each decision together, since they
        take part in each other's collectives and must try the same decode variants in turn); else ``flag``."""
        return flag if self.ranks is None else self.ranks.agree(flag)

    def _choose_kernels(self, model: Any, seq2seq: bool, properties: dict[str, str]) -> bool:
        """The streaming GEMV where it beat cuBLAS, the decode-attention kernel where it passed its check: any?"""
        streamed = self._choose_gemv(model, seq2seq, properties)
        return self._choose_attention(model) or streamed

    def _choose_attention(self, model: Any) -> bool:
        """Route decode-step attention through decode_attention's kernel where it computes what the model does."""
        why = decode_attention.unavailable(model.device)
        if why is None:
            config = model.config.get_text_config(decoder=True)
            heads = getattr(config, "num_attention_heads", None) or config.num_heads
            dim = getattr(config, "head_dim", None) or getattr(config, "d_kv", None) or config.hidden_size // heads
            kv_heads = getattr(config, "num_key_value_heads", None) or heads
            try:
                why = decode_attention.check(model.device, model.dtype, heads, kv_heads, dim)
            except Exception as error:  # a Triton or driver problem: the model's own attention is always there
                why = f"it failed ({error})"
        installed = decode_attention.install(model) if why is None else why
        if isinstance(installed, str):
            logging.info("decode attention kernel: not used (%s)", installed)
            return False
        self.attention_restore = installed
        return True

    def _drop_kernels(self) -> None:
        gemv.CHOICES.clear()
        gemv_all_reduce.CHOICES.clear()
        if self.attention_restore is not None:
            self.attention_restore()
            self.attention_restore = None

    def _kernels_named(self) -> str:
        named = ["gemv kernel"] if gemv.CHOICES else []
        named += ["gemv all-reduce kernel"] if gemv_all_reduce.CHOICES else []
        named += ["decode attention kernel"] if self.attention_restore is not None else []
        return "".join(f", {name} on" for name in named)

    def _choose_gemv(self, model: Any, seq2seq: bool, properties: dict[str, str]) -> bool:
        """Time the streaming kernel against cuBLAS on this GPU (gemv.choose), and under tensor parallelism the
        row-wise products summed in the same kernel against apart (gemv_all_reduce.choose); whether either won."""
        why = gemv.unavailable(model.device)
        if why is None and _devices_spanned(model) > 1:  # its timing runs one device's product over every layer's
            why = "the model is split over several devices (device_map)"
        if why is not None:
            logging.info("gemv: not tried (%s); cuBLAS serves every projection", why)
            return False
        shapes = self._warm_shapes(properties)
        largest = max([rows for rows, _, _ in shapes] or [1])
        rows = [r for r in (1, 2, 4, 8, 16) if r < 2 * largest]
        row_wise = row_wise_matrices(model, seq2seq)  # tensor parallel: the partial products
        try:
            with torch.inference_mode():
                matrices = fused_projections_matrices(model, seq2seq)
                for shape, weights in row_wise.items():
                    matrices.setdefault(shape, []).extend(weights)
                self.kernel_timings = gemv.choose(matrices, rows)
        except Exception as error:  # a Triton or driver problem: cuBLAS is always there
            gemv.CHOICES.clear()
            logging.warning("gemv: timing failed (%s); cuBLAS serves every projection", error)
        if self.ranks is not None and row_wise:  # a collective: every rank times the same shapes
            with torch.inference_mode():
                self.kernel_timings["gemv_all_reduce"] = gemv_all_reduce.choose(self.ranks, row_wise, rows)
        return bool(gemv.CHOICES or gemv_all_reduce.CHOICES)

    def _warm_up(self, decoder: FastDecoder, properties: dict[str, str]) -> None:
        try:
            decoder.warm_up(self._warm_shapes(properties))
        except Exception as error:  # memory, or a shape the compiler refuses: those buckets are prepared on use
            decoder.loaded = True
            logging.warning("warm_shapes: stopped (%s); the rest are prepared on first use", error)

    def answer(self, loaded: Any, inputs: Any) -> Any:
        """One request: batched JSON, or a stream of JSON lines; 504 past the request's deadline."""
        if loaded is IDLE:
            return None  # the server answers with the answering rank's output
        model, tokenizer, seq2seq, fast = loaded
        deadline: Any = Deadline(inputs, self.timeout or self.request_timeout_s)
        if self.ranks is not None:  # every rank stops at the same token
            deadline = SharedDeadline(deadline, self.ranks)
        body = read_body(inputs)
        prompts, kwargs = self.rules.parse(body, self.chars_per_token)
        stream = body.get("stream") is True
        if stream and self.stream_refusal:
            raise BadRequest(f'"stream": true is refused: {self.stream_refusal}')
        if stream and len(prompts) != 1:
            raise BadRequest('"stream": true takes exactly one input')
        try:
            if stream:
                output = self.answers.output_class()
                output.add_property("content-type", "application/jsonlines")
                chunks = hf_generate.stream_generate(
                    model, tokenizer, prompts[0], kwargs, deadline, max_sequence_length=self.rules.max_sequence_length
                )
                output.add_stream_content(chunks)
                return output
            return self.answers.json(self.generate(model, tokenizer, seq2seq, prompts, kwargs, fast, deadline))
        except DeadlineExceeded as error:
            return self.answers.error(504, "Gateway Timeout", str(error))


def _from_pretrained(location: str, model_class: Any, dtype: Any, properties: dict[str, str]) -> Any:
    """transformers' own load: over every GPU this worker was given, or on the CPU."""
    if stale_single_file(location):
        raise CheckpointError(
            f"{location} holds model.safetensors beside model.safetensors.index.json, which does not name it: "
            "from_pretrained would load that file instead of the shards; stage the model again "
            "(scripts/stage_model.py removes files of an earlier staging), then restart"
        )
    trust_remote_code = properties.get("trust_remote_code", "false").lower() == "true"
    kwargs: dict[str, Any] = {DTYPE_ARGUMENT: dtype, "revision": properties.get("revision")}
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    if torch.cuda.is_available():
        # the server gives each worker its slice of GPUs (CUDA_VISIBLE_DEVICES); spread the layers over them
        kwargs.update(device_map=properties.get("device_map", "auto"), low_cpu_mem_usage=True)
    return model_class.from_pretrained(location, **kwargs).eval()


def _devices_spanned(model: Any) -> int:
    """How many devices ``device_map`` spread the model over (1 where it is on one)."""
    return max(1, len(set(getattr(model, "hf_device_map", {}).values())))
