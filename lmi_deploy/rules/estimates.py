"""The arithmetic behind the memory and timeout rules, with its stated assumptions (README "Validation")."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmi_deploy.engines.base import EngineSpec
from lmi_deploy.instances import InstanceType
from lmi_deploy.model_facts import DTYPE_BYTES, ModelFacts

GIB = 1024**3
MIB = 1024**2
OVERHEAD_GIB = 1.5  # per accelerator: CUDA/Neuron runtime context, activations, allocator slack
ROLLING_BATCH_RESERVE = 0.10  # vLLM/lmi-dist/TRT-LLM leave 10% unallocated (gpu_memory_utilization=0.9)
DOWNLOAD_MIB_S = 100  # S3 to the instance, conservative for s5cmd inside the LMI container
LOAD_MIB_S = 200  # local disk to accelerator memory, conservative
TIMEOUT_FLOOR_S = 600  # the seed's timeouts and the LMI guidance's starting point
TIMEOUT_MARGIN = 1.25
SAGEMAKER_TIMEOUT_MAX_S = 3600
DEFAULT_SEQUENCE_LENGTH = 2048
MAX_DEFAULT_SEQUENCE_LENGTH = 4096
DEFAULT_BATCH = 8
NO_BF16 = ("T4", "V100")  # pre-Ampere GPUs


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gib: float  # per accelerator
    kv_cache_gib: float | None  # None: the model's KV-cache numbers are unknown (not counted)
    overhead_gib: float
    usable_gib: float
    sequences: int  # how many max-length sequences the KV term holds
    rolling: bool
    lora_gib: float = 0.0  # per accelerator: the LoRA slots (max_loras adapters at max_lora_rank)
    batch_counted_as_one: int = 1  # the dynamic batch a lower bound counts as one sequence (an existing file's)

    @property
    def total_gib(self) -> float:
        return self.weights_gib + (self.kv_cache_gib or 0.0) + self.overhead_gib + self.lora_gib

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.usable_gib

    def describe(self, tp: int, noun: str) -> str:
        kv_what = f"{self.sequences} sequences" if self.sequences > 1 else "one full-length sequence"
        if self.rolling:
            kv_what = "one full-length sequence (rolling batch pages the rest)"
        elif self.batch_counted_as_one > 1:
            kv_what = (
                f"one full-length sequence, a lower bound: no rolling batch, so a dynamic batch of up to "
                f"{self.batch_counted_as_one} holds the KV cache of all its requests at once"
            )
        kv = "KV cache not counted (unknown)" if self.kv_cache_gib is None else f"{self.kv_cache_gib:.1f} GiB KV cache"
        lora = f" + {self.lora_gib:.2f} GiB LoRA slots" if self.lora_gib else ""
        return (
            f"memory per accelerator at TP{tp}: {self.weights_gib:.1f} GiB weights{lora} + {kv} ({kv_what}) + "
            f"{self.overhead_gib:.1f} GiB overhead = {self.total_gib:.1f} GiB of {self.usable_gib:.1f} GiB usable per "
            f"{noun[:-1]} -> {'fits' if self.fits else 'DOES NOT FIT'}"
        )


@dataclass(frozen=True)
class Load:
    """What the accelerators hold: the dtype, how many sequences of KV cache, and quantized weights if any."""

    dtype: str
    tp: int
    batch: int
    sequence: int
    rolling: bool
    bytes_per_parameter: float | None = None  # quantized weights; None: the dtype's size
    reserved_gib: float = 0.0
    lora_bytes: int = 0  # the LoRA slots of one model copy (split over TP like the weights)
    # an existing file's dynamic batch size: its batch is what requests bring, no promise, so one sequence is counted
    # (a lower bound); None: a deployment's batch, counted in full
    lower_bound_of: int | None = None


def estimate_memory(facts: ModelFacts, instance: InstanceType, load: Load) -> MemoryEstimate:
    sequences = 1 if load.rolling or load.lower_bound_of is not None else load.batch
    per_parameter = load.bytes_per_parameter or DTYPE_BYTES[load.dtype]
    weights = (facts.parameters or 0) * per_parameter / load.tp / GIB
    per_token = facts.kv_cache_bytes_per_token(load.dtype)
    kv = None if per_token is None else per_token * load.sequence * sequences / load.tp / GIB
    usable = (instance.memory_per_accelerator_gib - load.reserved_gib) * (
        (1 - ROLLING_BATCH_RESERVE) if load.rolling else 1.0
    )
    lora = load.lora_bytes / load.tp / GIB
    counted_as_one = 1 if load.rolling else load.lower_bound_of or 1
    return MemoryEstimate(weights, kv, OVERHEAD_GIB, usable, sequences, load.rolling, lora, counted_as_one)


def _round_up(seconds: float, step: int = 60) -> int:
    return int(math.ceil(seconds / step) * step)


@dataclass(frozen=True)
class LoadTimes:
    """Seconds a load of this size needs at the stated throughputs, and how each was derived."""

    download_s: int
    startup_s: int
    how_download: str
    how_startup: str


def load_times(facts: ModelFacts, spec: EngineSpec | None, compiled: bool = False, warm_up_s: float = 0.0) -> LoadTimes:
    """``warm_up_s``: what lmi-deploy's Accelerate handler spends at load compiling and capturing its decode step
    for the warm shapes (``lmi_deploy.warm_shapes``)."""
    stored = facts.weight_bytes(facts.native_dtype or "fp32")
    download = stored / MIB / DOWNLOAD_MIB_S
    load = stored / MIB / LOAD_MIB_S
    compile_s = 0.0
    if spec is not None and spec.compile_seconds is not None and not compiled:
        assert facts.parameters is not None
        per_billion, at_least = spec.compile_seconds  # the engine build at startup
        compile_s = max(at_least, per_billion * facts.parameters / 1e9)
    size = f"{stored / GIB:.1f} GiB of weights"
    how_download = f"{size} at {DOWNLOAD_MIB_S} MiB/s, x{TIMEOUT_MARGIN} margin"
    compiling = f" + {compile_s:.0f} s {spec.engine.value} compile" if compile_s and spec else ""
    compiling += f" + {warm_up_s:.0f} s handler compile/capture of warm shapes" if warm_up_s else ""
    how_startup = f"{size} loaded at {LOAD_MIB_S} MiB/s{compiling}, x{TIMEOUT_MARGIN} margin"
    startup = (load + compile_s + warm_up_s) * TIMEOUT_MARGIN
    return LoadTimes(_round_up(download * TIMEOUT_MARGIN), _round_up(startup), how_download, how_startup)


def weights_gb(facts: ModelFacts) -> float:
    """The stored checkpoint's size in GB (its native dtype, fp32 when unknown)."""
    return facts.weight_bytes(facts.native_dtype or "fp32") / 1e9


__all__ = ["DTYPE_BYTES", "GIB", "LoadTimes", "MemoryEstimate", "estimate_memory", "load_times", "weights_gb"]
