"""How fast a model serves on an instance, from bytes and FLOPs: the arithmetic behind ``lmi-deploy recommend``.

A decode step is bound by memory: it reads every weight the decoder uses once, and each sequence's KV cache, at the
accelerators' bandwidth (the instance catalog's datasheet figures) times the engine's bandwidth efficiency. The
prompt pass is bound by compute: 2 FLOPs per parameter per prompt token (plus attention) at the dense 16-bit peak
times the engine's compute efficiency. Tensor parallelism without NVLink pays for its all-reduces: a stated latency
per all-reduce, two per decoder layer (three for an encoder-decoder's decoder, which also attends to the encoder).

Every efficiency below is a stated constant. Only the Accelerate handler's is measured: fitted to this project's
H200 benchmark (``docs/benchmarks.md``, ``docs/benchmarks/handler-h200.json``); the others are assumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache

from lmi_deploy import instances, model_facts, mpi_mode
from lmi_deploy.engines.base import Engine
from lmi_deploy.instances import InstanceType
from lmi_deploy.model_facts import DTYPE_BYTES, ModelFacts

# Seconds one all-reduce of a decode step's small message takes, by link kind (assumed: NCCL's small-message
# latency over PCIe is tens of microseconds, over NVLink a few).
ALLREDUCE_LATENCY_US = {"PCIe": 30.0, "NVLink": 18.0, "NeuronLink": 15.0}
# NVLink: measured, NCCL in a CUDA graph on 2 x H200, 17.4-18.7 us for [4, 4096] (docs/benchmarks/tp2-h200.json).
# lmi-deploy's own handler sums a decode step's partial products through symmetric memory there (its default on
# NVLink, option.tp_all_reduce=one_shot): 6.8-6.9 us each in its CUDA graphs with the copy inside the kernel
# (graph_us_each in docs/benchmarks/tp2-h200-split-attention.json and tp2-h200-ul2-split-attention.json). Where the
# product and the sum run in one kernel (gemv_all_reduce, chosen per shape at load) the sum adds 3-4 us instead;
# the estimate keeps the sum apart, the figure that holds whichever way the load chose.
ONE_SHOT_LATENCY_US = 6.9
ASSUMED = "assumed"


@dataclass(frozen=True)
class EngineSpeed:
    """How close an engine gets to the hardware's bounds."""

    bandwidth_efficiency: float  # share of the datasheet memory bandwidth a decode step achieves
    compute_efficiency: float  # share of the dense 16-bit peak the prompt pass achieves
    sequence_layer_us: float  # what each sequence adds to a step per decoder layer beyond its bytes (attention, ...)
    source: str  # ASSUMED, or how it was measured
    split_layers: bool = True  # False: Accelerate's device_map=auto puts whole layers on each GPU, run in turn
    rolling: bool = False  # continuous batching with a paged KV cache (reserves 10% of memory)
    serial: bool = False  # one request at a time per copy: DJL's batch_size is 1 where lmi-deploy renders none


_ASSUMED_SPEEDS: dict[Engine, EngineSpeed] = {
    Engine.VLLM: EngineSpeed(0.70, 0.50, 2.0, ASSUMED, rolling=True),
    Engine.LMI_DIST: EngineSpeed(0.70, 0.50, 2.0, ASSUMED, rolling=True),
    Engine.TENSORRT_LLM: EngineSpeed(0.80, 0.60, 1.5, ASSUMED, rolling=True),
    Engine.DEEPSPEED: EngineSpeed(0.60, 0.40, 3.0, ASSUMED, serial=True),
    Engine.DEEPSPEED_ROLLING: EngineSpeed(0.60, 0.40, 3.0, ASSUMED, rolling=True),  # DeepSpeed's kernels, batched
    Engine.FASTER_TRANSFORMER: EngineSpeed(0.70, 0.50, 2.0, ASSUMED, serial=True),
    Engine.NEURONX: EngineSpeed(0.50, 0.40, 3.0, ASSUMED),  # DJL batches up to batch_size (max_batch_size)
}
ACCELERATE_COMPUTE_EFFICIENCY = 0.50  # assumed: the benchmark measures decode, not the prompt pass alone


@dataclass(frozen=True)
class Workload:
    input_tokens: int
    output_tokens: int
    concurrency: int  # requests in flight on the whole instance
    prompts_per_request: int = 1  # a list of prompts in one request is one batch on every engine


@dataclass(frozen=True)
class StatedWorkload:
    """The workload of the latency estimate printed before deploying: the seed's benchmark shape."""

    input_tokens: int = 128
    output_tokens: int = 64
    batch: int = 4  # sequences per model copy

    def workload(self, copies: int) -> Workload:
        return Workload(self.input_tokens, self.output_tokens, self.batch * copies)

    def describe(self) -> str:
        return f"{self.input_tokens} in / {self.output_tokens} out, batch {self.batch}"


STATED = StatedWorkload()


@dataclass(frozen=True)
class Setup:
    """One way to serve: the instance, the engine, TP degree and dtype."""

    instance: InstanceType
    engine: Engine
    tensor_parallel: int
    dtype: str

    @property
    def copies(self) -> int:
        """Model copies on the instance: DJL starts one worker per group of ``tensor_parallel`` accelerators."""
        return max(1, self.instance.accelerator_count // self.tensor_parallel)


@dataclass(frozen=True)
class Estimate:
    """One setup's numbers, with what went into each."""

    batch: int  # sequences one copy decodes at once
    turns: int  # requests one copy serves one after another (serial engines), each waiting for those before it
    step_ms: float  # one decode step: the latency of each generated token after the first
    prefill_ms: float  # the prompt pass of ``batch`` prompts
    request_ms: float  # one request: prompt pass plus decode steps, times its turn (the p50 at this concurrency)
    tokens_per_s: float  # generated tokens per second, whole instance
    step_gb: float  # bytes one step reads: weights + KV cache
    kv_gb: float  # of which KV cache
    bandwidth_gb_s: float  # effective: datasheet x accelerators used at once x efficiency
    allreduce_ms: float  # per step
    prefill_tflop: float
    achievable_tflops: float
    speed: EngineSpeed

    def reasons(self) -> list[str]:
        weights = self.step_gb - self.kv_gb
        lines = [
            f"step {self.step_ms:.2f} ms: ({weights:.2f} GB weights + {self.kv_gb:.3f} GB KV) / "
            f"{self.bandwidth_gb_s:.0f} GB/s effective (bandwidth efficiency "
            f"{self.speed.bandwidth_efficiency:.2f}, {self.speed.source})"
            + (f" + {self.allreduce_ms:.2f} ms all-reduce" if self.allreduce_ms else "")
            + f" + {self.speed.sequence_layer_us:.1f} us per sequence and layer",
            f"prompt pass {self.prefill_ms:.1f} ms: {self.prefill_tflop:.2f} TFLOP at {self.achievable_tflops:.0f} "
            f"TFLOP/s achievable (compute efficiency {self.speed.compute_efficiency:.2f})",
        ]
        return lines


def engine_speed(engine: Engine, facts: ModelFacts | None = None, tensor_parallel: int = 1) -> EngineSpeed:
    """The engine's speed; the Accelerate handler splits layers where it runs tensor-parallel (``mpi_mode``: its
    plans cover the model and the degree divides the heads), else device_map runs whole layers in turn."""
    if engine is not Engine.ACCELERATE:
        return _ASSUMED_SPEEDS[engine]
    split = tensor_parallel > 1 and mpi_mode.fallback_reason(None, facts, tensor_parallel)
    return replace(accelerate_speed(), split_layers=split is None)


def _bucket(engine: Engine, batch: int) -> int:
    """The batch a copy really runs: the Accelerate handler's static cache rounds up to powers of two, from 2."""
    return max(2, 1 << (batch - 1).bit_length()) if engine is Engine.ACCELERATE else batch


def _link_latency_us(setup: Setup, prompt: bool) -> float:
    """One all-reduce's latency: the Accelerate handler's one-shot sum for a decode step over NVLink, else the link's
    (NCCL's, or the engine's own library's)."""
    name = setup.instance.interconnect.name
    if not prompt and setup.engine is Engine.ACCELERATE and name.startswith("NVLink"):
        return ONE_SHOT_LATENCY_US
    return next(us for kind, us in ALLREDUCE_LATENCY_US.items() if name.startswith(kind))


def decode_allreduces(facts: ModelFacts) -> int:
    """All-reduces of one decode step: two per layer, three per decoder layer of an encoder-decoder."""
    return (3 if facts.is_encoder_decoder else 2) * (facts.layers or 0)


def _allreduce_ms(facts: ModelFacts, setup: Setup, tokens: int, prompt: bool) -> float:
    """All-reduces of one pass over ``tokens`` token positions, a latency plus the ring's traffic each: two per layer
    (attention and MLP outputs), three per decoder layer of an encoder-decoder (cross-attention too). The prompt pass
    of an encoder-decoder runs the encoder's layers. A decode step also brings together the logits of the LM head,
    which tensor-parallel engines split by vocabulary (lmi-deploy's handler too, a tied head as well):
    one more, of ``tokens`` x the vocabulary."""
    tp = setup.tensor_parallel
    if tp == 1 or facts.layers is None or facts.hidden_size is None:
        return 0.0
    count = 2 * facts.encoder_layers if prompt and facts.is_encoder_decoder else decode_allreduces(facts)
    latency_s = _link_latency_us(setup, prompt) * 1e-6
    width = DTYPE_BYTES[setup.dtype] * tokens

    def ring_s(message: float) -> float:
        return 2 * (tp - 1) / tp * message / (setup.instance.interconnect.gb_s * 1e9)

    seconds = count * (latency_s + ring_s(width * facts.hidden_size))
    if not prompt and facts.vocab_size:
        seconds += latency_s + ring_s(width * facts.vocab_size)
    return seconds * 1e3


def _peak_tflops(setup: Setup, used: int) -> float:
    speed = setup.instance.speed
    return (speed.tflops_fp32 if setup.dtype == "fp32" else speed.tflops_16bit) * used


def decode_parameters(facts: ModelFacts) -> int:
    """Parameters every generated token reads: all but an encoder's."""
    return (facts.parameters or 0) - facts.encoder_parameters


def _batch_and_turns(setup: Setup, work: Workload, speed: EngineSpeed) -> tuple[int, int]:
    """Sequences a copy decodes at once, and how many requests it serves in turn."""
    per_copy = math.ceil(work.concurrency / setup.copies)
    batch, turns = (work.prompts_per_request, per_copy) if speed.serial else (per_copy * work.prompts_per_request, 1)
    return _bucket(setup.engine, batch), turns


def _kv_bytes(facts: ModelFacts, setup: Setup, work: Workload, batch: int) -> float:
    """The KV cache one step reads: each sequence's at its mean context (prompt + half the output; self + cross)."""
    per_token = (facts.kv_cache_bytes_per_token(setup.dtype) or 0) // (2 if facts.is_encoder_decoder else 1)
    return per_token * (work.input_tokens + work.output_tokens / 2) * batch


def prompt_flop(facts: ModelFacts, work: Workload, batch: int) -> float:
    """2 FLOPs per parameter the prompt runs through (the encoder's, for an encoder-decoder) per prompt token, plus
    attention (QK^T and AV: 4 x layers x tokens^2 x hidden), for ``batch`` prompts."""
    layers = facts.encoder_layers or (facts.layers or 0)
    attention = 4 * layers * work.input_tokens**2 * (facts.hidden_size or 0)
    return (2 * prompt_parameters(facts) * work.input_tokens + attention) * batch


def prompt_parameters(facts: ModelFacts) -> int:
    return facts.encoder_parameters or (facts.parameters or 0)


def _prefill_ms(facts: ModelFacts, setup: Setup, work: Workload, batch: int, at: tuple[float, float, bool]) -> float:
    """The prompt pass of ``batch`` prompts, never faster than reading its weights once; ``at``: effective GB/s and
    TFLOP/s, and whether layers are split (all-reduces)."""
    bandwidth, achievable, split = at
    weights = prompt_parameters(facts) * DTYPE_BYTES[setup.dtype]
    seconds = max(prompt_flop(facts, work, batch) / (achievable * 1e12), weights / (bandwidth * 1e9))
    allreduce = _allreduce_ms(facts, setup, batch * work.input_tokens, prompt=True) if split else 0.0
    return seconds * 1e3 + allreduce


def estimate(facts: ModelFacts, setup: Setup, work: Workload, speed: EngineSpeed | None = None) -> Estimate:
    """The numbers of one setup at this workload; ``speed`` overrides the engine's (for calibration)."""
    speed = speed or engine_speed(setup.engine, facts, setup.tensor_parallel)
    used = setup.tensor_parallel if speed.split_layers else 1  # accelerators working at the same moment
    batch, turns = _batch_and_turns(setup, work, speed)
    kv_bytes = _kv_bytes(facts, setup, work, batch)
    step_bytes = decode_parameters(facts) * DTYPE_BYTES[setup.dtype] + kv_bytes
    bandwidth = setup.instance.speed.memory_bandwidth_gb_s * used * speed.bandwidth_efficiency
    achievable = _peak_tflops(setup, used) * speed.compute_efficiency
    step_s = max(step_bytes / (bandwidth * 1e9), 2 * decode_parameters(facts) * batch / (achievable * 1e12))
    allreduce = _allreduce_ms(facts, setup, batch, prompt=False) if speed.split_layers else 0.0
    step_ms = step_s * 1e3 + allreduce + batch * (facts.layers or 0) * speed.sequence_layer_us / used / 1e3
    prefill_ms = _prefill_ms(facts, setup, work, batch, (bandwidth, achievable, speed.split_layers))
    steps = work.output_tokens if facts.is_encoder_decoder else work.output_tokens - 1  # a decoder-only prompt
    request_ms = (prefill_ms + steps * step_ms) * turns  # pass yields the first token; a T5 decoder steps for each
    return Estimate(
        batch=batch,
        turns=turns,
        step_ms=step_ms,
        prefill_ms=prefill_ms,
        request_ms=request_ms,
        tokens_per_s=work.concurrency * work.prompts_per_request * work.output_tokens / (request_ms / 1e3),
        step_gb=step_bytes / 1e9,
        kv_gb=kv_bytes / 1e9,
        bandwidth_gb_s=bandwidth,
        allreduce_ms=allreduce,
        prefill_tflop=prompt_flop(facts, work, batch) / 1e12,
        achievable_tflops=achievable,
        speed=speed,
    )


# ---- the Accelerate handler, calibrated on this project's H200 benchmark ----


@dataclass(frozen=True)
class Benchmark:
    """A measured run: p50 request latency (ms) by batch. From docs/benchmarks/handler-h200.json."""

    model_id: str
    instance_type: str  # one of its accelerators was used, TP1
    dtype: str
    input_tokens: int
    output_tokens: int
    p50_ms: dict[int, float]


H200_HANDLER = Benchmark("google/flan-t5-xxl", "ml.p5e.48xlarge", "bf16", 128, 64, {1: 270.6, 4: 281.2, 16: 345.7})
FITTED_BATCHES = (1, 16)  # the efficiency and per-sequence cost are fitted on these; batch 4 checks the fit


@cache
def _benchmark_facts() -> ModelFacts:
    facts, _ = model_facts.find(H200_HANDLER.model_id, "main", None)
    assert facts is not None  # a bundled config
    return facts


def benchmark_estimate(batch: int, speed: EngineSpeed | None = None) -> float:
    """The estimate of the H200 benchmark's p50 at ``batch`` (ms): one H200 of the instance, TP1, one request of
    ``batch`` prompts on that copy (as on each of the instance's 8 copies)."""
    instance = instances.get(H200_HANDLER.instance_type)
    assert instance is not None
    setup = Setup(instance, Engine.ACCELERATE, 1, H200_HANDLER.dtype)
    work = Workload(H200_HANDLER.input_tokens, H200_HANDLER.output_tokens, setup.copies, prompts_per_request=batch)
    return estimate(_benchmark_facts(), setup, work, speed).request_ms


@cache
def accelerate_speed() -> EngineSpeed:
    """Bandwidth efficiency and per-sequence cost that reproduce the benchmark's batch 1 and 16 (bisection)."""
    small, large = FITTED_BATCHES
    source = f"measured: fitted to the H200 handler benchmark, batch {small} and {large} (docs/benchmarks.md)"

    def speed(efficiency: float, per_sequence_us: float) -> EngineSpeed:
        return EngineSpeed(
            efficiency, ACCELERATE_COMPUTE_EFFICIENCY, per_sequence_us, source, split_layers=False, serial=True
        )

    def per_sequence(efficiency: float) -> float:
        """The per-sequence cost that makes the small batch exact at this efficiency."""
        without = benchmark_estimate(small, speed(efficiency, 0.0))
        one = benchmark_estimate(small, speed(efficiency, 1.0)) - without
        return (H200_HANDLER.p50_ms[small] - without) / one

    low, high = 0.05, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        guess = benchmark_estimate(large, speed(middle, per_sequence(middle)))
        low, high = (low, middle) if guess > H200_HANDLER.p50_ms[large] else (middle, high)
    efficiency = (low + high) / 2
    return speed(efficiency, per_sequence(efficiency))
