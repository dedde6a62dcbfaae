"""Every rule that can make an endpoint fail or silently misbehave, each with its own message and a suggested fix.

One module: the config's validator calls :func:`resolve_and_check`; ``scripts/validate.py`` also calls
:func:`lint_serving_properties`.
Auto values (``tensor_parallel_degree=auto``, ``dtype=auto``, ``*_timeout=auto``) are derived here too, each with
its reason, so that the derivation and the rules can never disagree.
"""

from __future__ import annotations

import difflib
import math
import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from lmi_deploy import containers, key_catalog, known_keys, warm_shapes
from lmi_deploy.containers import ENGINES, Engine, version_key
from lmi_deploy.instances import InstanceType
from lmi_deploy.model_facts import DTYPE_BYTES, ModelFacts
from lmi_deploy.request_limits import REALTIME_REQUEST_TIMEOUT_S
from lmi_deploy.runtime.versions import S3_WEIGHTS_DOWNLOAD, STREAM_CONTENT, Release

GIB = 1024**3
MIB = 1024**2
# Stated assumptions of the estimates (README "Validation"):
OVERHEAD_GIB = 1.5  # per accelerator: CUDA/Neuron runtime context, activations, allocator slack
ROLLING_BATCH_RESERVE = 0.10  # vLLM/lmi-dist/TRT-LLM leave 10% unallocated (gpu_memory_utilization=0.9)
DOWNLOAD_MIB_S = 100  # S3 to the instance, conservative for s5cmd inside the LMI container
LOAD_MIB_S = 200  # local disk to accelerator memory, conservative
COMPILE_S_PER_BILLION = {Engine.TENSORRT_LLM: 120, Engine.NEURONX: 180}  # engine build at startup
COMPILE_MIN_S = {Engine.TENSORRT_LLM: 600, Engine.NEURONX: 900}
TIMEOUT_FLOOR_S = 600  # the seed's timeouts and the LMI guidance's starting point
TIMEOUT_MARGIN = 1.25
SAGEMAKER_TIMEOUT_MAX_S = 3600
DEFAULT_SEQUENCE_LENGTH = 2048
MAX_DEFAULT_SEQUENCE_LENGTH = 4096
DEFAULT_BATCH = 8
_NO_BF16 = ("T4", "V100")  # pre-Ampere GPUs


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    rule: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gib: float  # per accelerator
    kv_cache_gib: float
    overhead_gib: float
    usable_gib: float
    sequences: int  # how many max-length sequences the KV term holds
    rolling: bool

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.kv_cache_gib + self.overhead_gib

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.usable_gib

    def describe(self, tp: int, noun: str) -> str:
        kv_what = (
            "one full-length sequence (rolling batch pages the rest)"
            if self.rolling
            else (f"{self.sequences} sequences")
        )
        return (
            f"memory per accelerator at TP{tp}: {self.weights_gib:.1f} GiB weights + {self.kv_cache_gib:.1f} GiB "
            f"KV cache ({kv_what}) + {self.overhead_gib:.1f} GiB overhead = {self.total_gib:.1f} GiB of "
            f"{self.usable_gib:.1f} GiB usable per {noun[:-1]} -> {'fits' if self.fits else 'DOES NOT FIT'}"
        )


@dataclass
class Resolved:
    """The values a deployment actually uses, after ``auto`` is derived."""

    tensor_parallel_degree: int
    tensor_parallel_property: str  # what serving.properties says: the degree, or "max"
    dtype: str
    max_sequence_length: int
    max_batch_size: int
    model_data_download_timeout: int
    container_startup_health_check_timeout: int
    model_loading_timeout: int
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    memory: MemoryEstimate | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def estimate_memory(
    facts: ModelFacts, dtype: str, tp: int, instance: InstanceType, engine: Engine, batch: int, sequence: int
) -> MemoryEstimate:
    spec = ENGINES[engine]
    rolling = spec.rolling_batch is not None
    sequences = 1 if rolling else batch
    weights = facts.weight_bytes(dtype) / tp / GIB
    kv = facts.kv_cache_bytes_per_token(dtype) * sequence * sequences / tp / GIB
    usable = instance.memory_per_accelerator_gib * ((1 - ROLLING_BATCH_RESERVE) if rolling else 1.0)
    return MemoryEstimate(weights, kv, OVERHEAD_GIB, usable, sequences, rolling)


def _round_up(seconds: float, step: int = 60) -> int:
    return int(math.ceil(seconds / step) * step)


def needed_timeouts(
    facts: ModelFacts, engine: Engine, compiled: bool = False, handler_warm_up_s: float = 0.0
) -> tuple[int, int, str, str]:
    """(download, startup) seconds a load of this size needs at the stated throughputs, and how each was derived.

    ``handler_warm_up_s``: what lmi-deploy's Accelerate handler spends at load compiling and capturing its decode
    step for the warm shapes (``lmi_deploy.warm_shapes``).
    """
    stored = facts.weight_bytes(facts.native_dtype or "fp32")
    download = stored / MIB / DOWNLOAD_MIB_S
    load = stored / MIB / LOAD_MIB_S
    compile_s = 0.0
    if engine in COMPILE_S_PER_BILLION and not compiled:
        compile_s = max(COMPILE_MIN_S[engine], COMPILE_S_PER_BILLION[engine] * facts.parameters / 1e9)
    size = f"{stored / GIB:.1f} GiB of weights"
    how_download = f"{size} at {DOWNLOAD_MIB_S} MiB/s, x{TIMEOUT_MARGIN} margin"
    how_startup = (
        f"{size} loaded at {LOAD_MIB_S} MiB/s"
        + (f" + {compile_s:.0f} s {engine.value} compile" if compile_s else "")
        + (f" + {handler_warm_up_s:.0f} s handler compile/capture of warm shapes" if handler_warm_up_s else "")
        + f", x{TIMEOUT_MARGIN} margin"
    )
    startup = (load + compile_s + handler_warm_up_s) * TIMEOUT_MARGIN
    download_s, startup_s = _round_up(download * TIMEOUT_MARGIN), _round_up(startup)
    return download_s, startup_s, how_download, how_startup


def handler_warm_up(config: Any, batch: int, sequence: int) -> float:
    """Seconds lmi-deploy's Accelerate handler compiles and captures at load (0 for every other handler)."""
    if config.engine is not Engine.ACCELERATE or config.handler != "custom" or config.kv_cache == "dynamic":
        return 0.0

    def on(name: str) -> bool:
        value = getattr(config, name, None)
        return bool(containers.HANDLER_OPTIONS[name] if value is None else value)

    return warm_shapes.startup_seconds(warm_shapes.warm_shapes(batch, sequence), on("compile"), on("cuda_graphs"))


def _divides_heads(facts: ModelFacts, tp: int, engine: Engine) -> str | None:
    if facts.attention_heads % tp:
        return f"its {facts.attention_heads} attention heads"
    if facts.kv_heads % tp and not (ENGINES[engine].rolling_batch and tp % facts.kv_heads == 0):
        return f"its {facts.kv_heads} key/value heads"
    return None


def resolve_and_check(config: Any, facts: ModelFacts | None, facts_note: str) -> Resolved:
    """Derive ``auto`` values and run every rule on a config whose single fields are already valid."""
    spec = ENGINES[config.engine]
    instance: InstanceType = config.instance
    version: str = config.lmi_version
    findings: list[Finding] = []
    notes: list[str] = []

    def error(rule: str, message: str) -> None:
        findings.append(Finding("error", rule, message))

    def warn(rule: str, message: str) -> None:
        findings.append(Finding("warning", rule, message))

    # --- model family, from the facts when known ---
    model_type = config.resolved_model_type
    if facts is None:
        warn("model-facts", f"{facts_note}; skipped: attention-head and memory checks, derived timeouts")
    if spec.model_types is not None and not model_type:
        error(
            "engine-model",
            f"cannot tell the architecture of model_id={config.model_id!r} from its name and found no config.json, "
            f"but {spec.engine.value} serves only {', '.join(spec.model_types)}: set model_config to its config.json, "
            "or model_type to its model_type",
        )
    elif spec.model_types is not None and model_type not in spec.model_types:
        error(
            "engine-model",
            f"model_type={model_type!r} is not supported by {spec.engine.value}; it serves "
            f"{', '.join(spec.model_types)}: pick another engine (Accelerate and vLLM serve most models)",
        )
    family_refused = any(f.rule == "engine-model" for f in findings)
    is_t5 = model_type in ("t5", "mt5", "umt5") or (facts is not None and facts.is_encoder_decoder)
    # (when the engine does not list the family at all, saying it is encoder-decoder adds nothing)
    if is_t5 and not spec.encoder_decoder and not family_refused:
        error(
            "engine-model",
            f"{config.model_id} is an encoder-decoder (T5) model, which {spec.engine.value} does not serve: use "
            "engine=FasterTransformer (LMI 0.21-0.24) or engine=Accelerate",
        )
    if (
        spec.engine is Engine.NEURONX
        and version_key(version) < (0, 24, 0)
        and model_type not in ("opt", "gpt2", "gptj")
    ):
        error(
            "engine-model",
            f"model_type={model_type!r} needs NeuronX from 0.24.0 (0.22.1-0.23.0 serve opt, gpt2, gptj): "
            "set lmi_version=0.24.0 or later",
        )

    # --- hardware ---
    if spec.neuron and not instance.is_neuron:
        error(
            "engine-hardware",
            f"engine NeuronX runs on AWS Inferentia2/Trainium, but {instance.name} has {instance.accelerator} GPUs: "
            "use an ml.inf2 or ml.trn1 instance",
        )
    if not spec.neuron and instance.is_neuron:
        error(
            "engine-hardware",
            f"engine {spec.engine.value} needs NVIDIA GPUs, but {instance.name} has {instance.accelerator} "
            "NeuronCores: use engine=NeuronX, or a GPU instance (ml.g5, ml.g6, ml.p4d, ...)",
        )
    if config.handler == "custom" and spec.custom_template is None:
        error(
            "handler",
            f"handler=custom is not offered for {spec.engine.value}: its container serves the model through the "
            "built-in rolling-batch/compiled handler; use handler=builtin",
        )
    handler_options = [name for name in containers.HANDLER_OPTIONS if getattr(config, name, None) is not None]
    if handler_options and (spec.engine is not Engine.ACCELERATE or config.handler != "custom"):
        error(
            "handler-options",
            f"{', '.join(handler_options)} tune lmi-deploy's own Accelerate model.py, which this deployment does "
            f"not use ({spec.engine.value}, handler={config.handler}): remove them, or use engine=Accelerate with "
            "handler=custom",
        )
    elif config.kv_cache == "dynamic" and (config.cuda_graphs or config.compile or config.fuse_projections):
        name = next(n for n in ("cuda_graphs", "compile", "fuse_projections") if getattr(config, n))
        error(
            "handler-options",
            f"{name}=true speeds up the static-cache decode step, so it needs kv_cache=static: set kv_cache=static "
            f"or {name}=false",
        )
    if config.partitioned and spec.engine not in containers.PARTITIONABLE:
        error(
            "partitioned",
            f"partitioned=true loads an ahead-of-time partitioned checkpoint, which lmi-deploy makes for "
            f"{', '.join(e.value for e in containers.PARTITIONABLE[:-1])} and {containers.PARTITIONABLE[-1].value} "
            f"only; {spec.engine.value} builds it at startup",
        )
    if config.weights_delivery == "sagemaker":
        if version_key(version) < (0, 27, 0):
            error(
                "delivery",
                f"weights_delivery=sagemaker configures the container through OPTION_* environment "
                f"variables, which set the engine only from LMI 0.27.0 (this is {version}): use "
                "weights_delivery=container, or lmi_version 0.27.0 or later",
            )
        if config.handler == "custom":
            error(
                "delivery",
                "weights_delivery=sagemaker places only the weights under /opt/ml/model, so a custom "
                "model.py cannot ship with them: use handler=builtin, or weights_delivery=container",
            )
    findings += release_limits(config)
    if any(f.level == "error" for f in findings):
        # Wrong engine for the model or the hardware: the rules below would only repeat it in other words.
        return _unresolved(config, findings, notes)

    # --- dtype ---
    dtype: str = config.dtype
    if dtype == "auto":
        bf16_ok = (
            "bf16" in spec.dtypes
            and instance.accelerator not in _NO_BF16
            and not (spec.neuron and version_key(version) < (0, 24, 0))
        )
        if bf16_ok:
            dtype, why = "bf16", f"{instance.accelerator} and {spec.engine.value} support bf16"
        elif is_t5:
            dtype, why = "fp32", "T5 overflows in fp16 and bf16 is unavailable here"
        else:
            dtype, why = "fp16", f"no bf16 on {instance.accelerator}" if instance.accelerator in _NO_BF16 else "no bf16"
        notes.append(f"dtype=auto -> {dtype} ({why})")
    if dtype not in spec.dtypes:
        error("dtype", f"dtype={dtype!r} is not supported by {spec.engine.value}: use one of {', '.join(spec.dtypes)}")
    if is_t5 and dtype == "fp16":
        error(
            "dtype",
            "dtype='fp16' with T5 models gives garbage output (fp16 activations overflow into NaN): use dtype=bf16 "
            "or dtype=fp32",
        )
    if is_t5 and dtype == "int8" and spec.engine is Engine.FASTER_TRANSFORMER:
        error("dtype", "dtype='int8' is refused by FasterTransformer for T5 models: use dtype=bf16 or dtype=fp32")
    if dtype == "bf16" and instance.accelerator in _NO_BF16:
        error(
            "dtype",
            f"dtype='bf16' needs an Ampere or newer GPU, but {instance.name} has {instance.accelerator}s: "
            "use fp16 (fp32 for T5) or an ml.g5/g6/p4d instance",
        )
    if dtype == "bf16" and spec.neuron and version_key(version) < (0, 24, 0):
        error("dtype", "dtype='bf16' on NeuronX needs lmi_version 0.24.0 or later (0.22.1-0.23.0: fp32, fp16)")

    # --- sequence length and batch ---
    if config.max_sequence_length:
        sequence = int(config.max_sequence_length)
        if facts and facts.max_positions and sequence > facts.max_positions:
            error(
                "sequence-length",
                f"max_sequence_length={sequence} exceeds the model's {facts.max_positions} positions: use at most "
                f"{facts.max_positions}",
            )
    else:
        known = facts.max_positions if facts and facts.max_positions else DEFAULT_SEQUENCE_LENGTH
        sequence = min(known, MAX_DEFAULT_SEQUENCE_LENGTH)
    batch = int(config.max_batch_size or DEFAULT_BATCH)

    # --- tensor parallel degree ---
    raw_tp = config.tensor_parallel_degree
    auto_failed = False
    valid_tps = instance.valid_tensor_parallel_degrees()
    noun = instance.accelerator_noun
    if raw_tp == "max":
        tp = instance.accelerator_count
        if not containers.accepts_tp_max(version):
            error(
                "tp-max",
                f"tensor_parallel_degree=max is read only from LMI 0.24.0 (earlier versions parse an "
                f"integer): use tensor_parallel_degree={tp} on {version}",
            )
    elif raw_tp == "auto":
        tp = 0
        reasons = []
        for candidate in valid_tps:
            heads = _divides_heads(facts, candidate, config.engine) if facts else None
            if heads:
                reasons.append(f"TP{candidate} does not divide {heads}")
                continue
            if facts and dtype in DTYPE_BYTES:
                estimate = estimate_memory(facts, dtype, candidate, instance, config.engine, batch, sequence)
                if not estimate.fits:
                    reasons.append(f"TP{candidate} needs {estimate.total_gib:.1f} GiB per {noun[:-1]}")
                    continue
            tp = candidate
            break
        if tp == 0:
            tp, auto_failed = valid_tps[-1], True
            error(
                "tp-auto",
                f"no tensor_parallel_degree on {instance.name} fits {config.model_id} in {dtype}: "
                f"{'; '.join(reasons)}; choose a larger instance or a smaller dtype/batch/sequence length",
            )
        else:
            why = "; ".join(reasons) if reasons else "the smallest that fits"
            notes.append(f"tensor_parallel_degree=auto -> {tp} ({why})")
    else:
        tp = int(raw_tp)
    tp_fits = not (tp > instance.accelerator_count or instance.accelerator_count % tp)
    if not tp_fits:
        error(
            "tp-accelerators",
            f"tensor_parallel_degree={tp} does not fit {instance.name}, which has {instance.accelerator_count} "
            f"{noun}; use one of {', '.join(str(d) for d in valid_tps)}, or a larger instance",
        )
    elif facts and (heads := _divides_heads(facts, tp, config.engine)):
        fitting = [str(d) for d in valid_tps if not _divides_heads(facts, d, config.engine)]
        error(
            "tp-heads",
            f"tensor_parallel_degree={tp} does not divide {heads} of {config.model_id}: each rank must hold whole "
            f"heads; use one of {', '.join(fitting) or 'none on this instance'}",
        )

    # --- memory fit ---
    memory = None
    if facts and dtype in DTYPE_BYTES and tp_fits and not (raw_tp == "auto" and auto_failed):
        memory = estimate_memory(facts, dtype, tp, instance, config.engine, batch, sequence)
        notes.append(
            f"{facts.parameters / 1e9:.2f}B parameters ({facts.parameters_from}); " + memory.describe(tp, noun)
        )
        if not memory.fits:
            larger = [str(d) for d in valid_tps if d > tp]
            hint = f"raise tensor_parallel_degree to {' or '.join(larger)}" if larger else "use a larger instance"
            error(
                "memory",
                f"{config.model_id} in {dtype} does not fit {instance.name} at TP{tp}: needs "
                f"{memory.total_gib:.1f} GiB per {noun[:-1]}, has {memory.usable_gib:.1f} GiB; {hint}, or lower "
                "max_batch_size/max_sequence_length or the dtype",
            )

    # --- timeouts ---
    def timeout(name: str, value: Any, needed: int | None, how: str) -> int:
        if value == "auto":
            derived = max(TIMEOUT_FLOOR_S, needed or 0)
            if derived > SAGEMAKER_TIMEOUT_MAX_S:
                error(
                    "timeout",
                    f"{name}=auto needs {derived} s ({how}), beyond SageMaker's {SAGEMAKER_TIMEOUT_MAX_S} s: "
                    "stage partitioned/compiled weights ahead of time or use a larger instance",
                )
                return SAGEMAKER_TIMEOUT_MAX_S
            notes.append(f"{name}=auto -> {derived} s" + (f" ({how})" if needed else " (floor)"))
            return derived
        seconds = int(value)
        if needed and seconds < needed:
            error(
                "timeout",
                f"{name}={seconds} is shorter than the {needed} s this load needs ({how}): raise it to at "
                f"least {min(needed, SAGEMAKER_TIMEOUT_MAX_S)}, or leave it as auto",
            )
        return seconds

    need_download, need_startup, how_download, how_startup = (
        needed_timeouts(facts, config.engine, config.partitioned, handler_warm_up(config, batch, sequence))
        if facts
        else (None, None, "", "")
    )
    download = timeout("model_data_download_timeout", config.model_data_download_timeout, need_download, how_download)
    startup = timeout(
        "container_startup_health_check_timeout",
        config.container_startup_health_check_timeout,
        need_startup,
        how_startup,
    )
    loading = int(config.model_loading_timeout) if config.model_loading_timeout else startup
    if loading > startup:
        error(
            "timeout",
            f"model_loading_timeout={loading} exceeds container_startup_health_check_timeout={startup}: SageMaker "
            "would fail the endpoint before the model loads; raise the startup timeout or lower the loading timeout",
        )

    # --- volume ---
    if config.volume_size_gb is not None:
        if not instance.supports_volume_size:
            error(
                "volume",
                f"volume_size_gb={config.volume_size_gb} is refused by SageMaker on {instance.name}: the "
                f"{instance.family} family uses instance storage; leave volume_size_gb unset",
            )
        elif facts:
            need_gb = math.ceil(facts.weight_bytes(facts.native_dtype or "fp32") * 1.1 / 1e9) + 10
            if config.volume_size_gb < need_gb:
                error(
                    "volume",
                    f"volume_size_gb={config.volume_size_gb} cannot hold the weights: needs at least "
                    f"{need_gb} GB (weights + 10% + 10 GB for the container); raise volume_size_gb",
                )
    elif instance.supports_volume_size and facts and facts.weight_bytes(facts.native_dtype or "fp32") > 30e9:
        warn(
            "volume",
            f"{facts.weight_bytes(facts.native_dtype or 'fp32') / 1e9:.0f} GB of weights on "
            f"{instance.name} without volume_size_gb: the LMI guidance is to raise the volume above the model size",
        )

    # --- operations ---
    findings += check_operations(config, notes)

    # --- version-specific behaviour worth knowing ---
    if (
        spec.engine is Engine.FASTER_TRANSFORMER
        and config.handler == "builtin"
        and is_t5
        and version in ("0.23.0", "0.24.0")
    ):
        warn(
            "known-bug",
            f"the built-in FasterTransformer handler of {version} ignores max_new_tokens for T5 "
            "(always 200): use handler=custom",
        )
    if spec.engine is Engine.FASTER_TRANSFORMER and version == "0.23.0":
        warn(
            "known-bug",
            "FasterTransformer 0.23.0's built-in handler answers every request of a dynamic batch "
            "with the first one's output: prefer 0.24.0",
        )

    tp_property = "max" if raw_tp == "max" else str(tp)
    return Resolved(tp, tp_property, dtype, sequence, batch, download, startup, loading, notes, findings, memory)


def release_limits(config: Any) -> list[Finding]:
    """What the release cannot do for this deployment (lmi_deploy.runtime.versions): deliver its weights (0.19.0),
    stream with lmi-deploy's Accelerate handler (before 0.22.1)."""
    release = Release(config.lmi_version)
    findings = []
    if not release.has(S3_WEIGHTS_DOWNLOAD):
        findings.append(
            Finding(
                "error",
                "weights-delivery",
                f"LMI {config.lmi_version} cannot load staged weights: its server downloads nothing from S3 (no "
                "option.s3url, no s3:// model_id) and reads no OPTION_* variables (weights_delivery=sagemaker); use "
                f"lmi_version {S3_WEIGHTS_DOWNLOAD.since} or later",
            )
        )
    if config.engine is Engine.ACCELERATE and config.handler == "custom" and not release.has(STREAM_CONTENT):
        findings.append(
            Finding(
                "warning",
                "streaming",
                f"LMI {config.lmi_version} has no Output.add_stream_content (from {STREAM_CONTENT.since}): the handler "
                'is rendered without streaming and answers "stream": true with a 400 that says so',
            )
        )
    return findings


def _unresolved(config: Any, findings: list[Finding], notes: list[str]) -> Resolved:
    """A Resolved that only carries the findings (the config is refused; nothing is deployed from it)."""
    tp = config.tensor_parallel_degree if isinstance(config.tensor_parallel_degree, int) else 1
    return Resolved(tp, str(tp), str(config.dtype), DEFAULT_SEQUENCE_LENGTH, DEFAULT_BATCH, 0, 0, 0, notes, findings)


# ---------------------------------------------------------------------------------------------------------------
# Linting an existing serving.properties


def parse_properties(text: str) -> list[tuple[int, str, str]]:
    """(line number, key, value) as java.util.Properties reads them: the value keeps trailing spaces and ``#``."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith(("#", "!")):
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut < 0:
            key, value = line.rstrip(), ""
        else:
            key, value = line[:cut].rstrip(), line[cut + 1 :].lstrip()
        entries.append((number, key, value))
    return entries


_BOOLEAN_KEYS = {
    "option.trust_remote_code",
    "option.enable_streaming",
    "option.parallel_loading",
    "option.mpi_mode",
    "option.enable_venv",
    "option.low_cpu_mem_usage",
    "option.load_in_8bit",
    "option.load_in_4bit",
    "option.enforce_eager",
    "option.enable_lora",
    "option.async_mode",
    "option.enable_cuda_graph",
}
_INT_KEYS = {
    "option.pipeline_parallel_degree",
    "option.model_loading_timeout",
    "option.predict_timeout",
    "option.request_timeout",
    "option.max_rolling_batch_size",
    "option.max_model_len",
    "option.max_tokens",
    "option.n_positions",
    "option.max_input_len",
    "option.max_output_len",
    "option.max_seq_len",
    "option.max_num_tokens",
    "batch_size",
    "max_batch_delay",
    "job_queue_size",
    "minWorkers",
    "maxWorkers",
    "max_idle_time",
    "option.max_rolling_batch_prefill_tokens",
}


def lint_serving_properties(
    text: str, version: str, instance: InstanceType | None, facts: ModelFacts | None, startup_timeout: int | None = None
) -> list[Finding]:
    """Problems in a serving.properties for an LMI version, checked exactly as DJL reads the values."""
    findings: list[Finding] = []
    entries = parse_properties(text)
    values = {key: value for _, key, value in entries}
    known_here = sorted(known_keys.keys_read(version))

    def error(number: int, rule: str, message: str) -> None:
        findings.append(Finding("error", rule, f"line {number}: {message}"))

    def warn(number: int, rule: str, message: str) -> None:
        findings.append(Finding("warning", rule, f"line {number}: {message}"))

    for number, key, value in entries:
        shown = f"{key}={value}"
        if value != value.rstrip() or " #" in value or value.startswith("#"):
            error(
                number,
                "value",
                f"{shown!r}: DJL reads the whole rest of the line, trailing spaces and inline "
                "'#' comments included, as the value; remove them",
            )
            continue
        if not known_keys.reads(key, version):
            if reading := known_keys.versions_reading(key):
                span = key_catalog.spans(reading)
                warn(number, "unknown-key", f"{key} is not read by LMI {version} (read in {span}): it has no effect")
                continue
            close = difflib.get_close_matches(key, known_here, n=1, cutoff=0.75)
            if close:
                error(
                    number,
                    "unknown-key",
                    f"{key} is not a key LMI {version} reads; did you mean {close[0]}? "
                    "(as written, the setting is silently ignored)",
                )
            else:
                warn(number, "unknown-key", f"{key} is not a key lmi-deploy knows for LMI {version}")
            continue
        if key in _BOOLEAN_KEYS and value.lower() not in ("true", "false"):
            error(number, "value", f"{shown}: expected true or false")
        elif key in _INT_KEYS and not value.isdigit():
            error(number, "value", f"{shown}: expected a whole number")
        elif key == "engine" and value not in containers.server_engines(version):
            error(
                number, "value", f"{shown}: LMI {version} knows engine {', '.join(containers.server_engines(version))}"
            )
        elif key == "option.tensor_parallel_degree":
            if value == "max":
                if not containers.accepts_tp_max(version):
                    error(number, "tp-max", f"{shown}: 'max' is read only from LMI 0.24.0; give the number of GPUs")
            elif not value.isdigit() or int(value) < 1:
                error(number, "value", f"{shown}: expected a positive whole number or max")
            elif instance is not None:
                tp = int(value)
                if tp > instance.accelerator_count or instance.accelerator_count % tp:
                    error(
                        number,
                        "tp-accelerators",
                        f"{shown} does not fit {instance.name}, which has "
                        f"{instance.accelerator_count} {instance.accelerator_noun}",
                    )
                elif facts and (heads := _divides_heads(facts, tp, Engine.VLLM)):
                    error(number, "tp-heads", f"{shown} does not divide {heads}")
        elif key == "option.rolling_batch":
            allowed = containers.rolling_batch_values(version)
            if value not in allowed:
                error(number, "value", f"{shown}: LMI {version} accepts {', '.join(allowed)}")
            elif value == "disable" and containers.rolling_batch_present_means_on(version):
                error(
                    number,
                    "rolling-batch",
                    f"{shown}: on LMI {version} the key's presence turns rolling batch "
                    "ON even as 'disable'; delete the line instead",
                )
        elif key == "option.dtype" and value not in ("fp32", "fp16", "bf16", "int8", "auto", "f16"):
            error(number, "value", f"{shown}: expected fp32, fp16, bf16 or int8")
        elif key == "option.entryPoint" and value.startswith("djl_python."):
            if value == "djl_python.transformers-neuronx" and version_key(version) >= (0, 24, 0):
                error(number, "entry-point", f"{shown}: renamed djl_python.transformers_neuronx in 0.24.0")
            if value == "djl_python.transformers_neuronx" and version_key(version) < (0, 24, 0):
                error(number, "entry-point", f"{shown}: before 0.24.0 it is djl_python.transformers-neuronx")
            if value == "djl_python.deepspeed" and version_key(version) >= (0, 28, 0):
                error(
                    number,
                    "entry-point",
                    f"{shown}: DeepSpeed left LMI with 0.28.0; use lmi_version<=0.27.0 or vLLM/lmi-dist",
                )
            if value == "djl_python.fastertransformer" and not (0, 21, 0) <= version_key(version) <= (0, 24, 0):
                error(number, "entry-point", f"{shown}: FasterTransformer ships only in 0.21.0-0.24.0")
    if "option.model_id" in values and "option.s3url" in values:
        findings.append(
            Finding(
                "error",
                "weights",
                "option.model_id and option.s3url are both set: DJL refuses "
                "('model_id and s3url could not both set!'); keep one",
            )
        )
    loading = values.get("option.model_loading_timeout", "")
    if not loading:
        findings.append(
            Finding(
                "warning",
                "timeout",
                "option.model_loading_timeout is not set: the default is "
                "240 s in code, 1200 s in the container, 1800 s in the docs; write it explicitly",
            )
        )
    elif loading.isdigit() and startup_timeout is not None and int(loading) > startup_timeout:
        findings.append(
            Finding(
                "error",
                "timeout",
                f"option.model_loading_timeout={loading} exceeds the startup "
                f"health-check timeout {startup_timeout}: the endpoint fails before the model loads",
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------------------------
# Production operations: scaling, isolation, images, inference mode


_CRON_FIELDS = (  # (name, allowed characters, numeric range) of Application Auto Scaling's six cron fields
    ("minutes", r"[0-9,*/-]+", (0, 59)),
    ("hours", r"[0-9,*/-]+", (0, 23)),
    ("day-of-month", r"[0-9,*/?LW-]+", (1, 31)),
    ("month", r"[0-9A-Za-z,*/-]+", (1, 12)),
    ("day-of-week", r"[0-9A-Za-z,*/?L#-]+", (1, 7)),
    ("year", r"[0-9,*/-]+", (1970, 2199)),
)
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")


def schedule_problem(expression: str) -> str | None:
    """What is wrong with an Application Auto Scaling schedule expression, or None when it is valid."""
    example = "cron(0 20 ? * MON-FRI *), rate(12 hours) or at(2030-01-31T08:00:00)"
    if expression.startswith("at(") and expression.endswith(")"):
        try:
            datetime.strptime(expression[3:-1], "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return "at(...) takes one time as yyyy-mm-ddThh:mm:ss"
        return None
    if expression.startswith("rate("):
        match = _RATE.match(expression)
        if not match or int(match.group(1)) < 1:
            return "rate(...) takes a positive whole number and minute(s), hour(s) or day(s), e.g. rate(12 hours)"
        if (int(match.group(1)) == 1) != (not match.group(2).endswith("s")):
            return "rate(...) takes the singular unit for 1 and the plural otherwise, e.g. rate(1 day), rate(2 days)"
        return None
    if not (expression.startswith("cron(") and expression.endswith(")")):
        return f"is not a schedule expression; use e.g. {example}"
    fields = expression[5:-1].split()
    if len(fields) != len(_CRON_FIELDS):
        return (
            f"cron(...) takes 6 fields (minutes hours day-of-month month day-of-week year), got {len(fields)}; "
            "e.g. cron(0 20 ? * MON-FRI *)"
        )
    for value, (name, allowed, (low, high)) in zip(fields, _CRON_FIELDS, strict=True):
        if not re.fullmatch(allowed, value):
            return f"cron field {name}={value!r} has characters that field does not take"
        numbers = [int(n) for n in re.findall(r"\d+", value.split("/")[0])]  # an increment may exceed the range
        if any(not low <= n <= high for n in numbers):
            return f"cron field {name}={value!r} is outside {low}-{high}"
    if (fields[2] == "?") == (fields[4] == "?"):
        return "cron(...) needs '?' in exactly one of day-of-month and day-of-week, e.g. cron(0 20 ? * MON-FRI *)"
    return None


_KMS_KEY_ARN = re.compile(
    r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/"
    r"(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)", re.IGNORECASE | re.MULTILINE)


def dockerfile_problem(folder: str | None) -> str | None:
    """What keeps ``folder`` from building a custom LMI image, or None: a Dockerfile whose first stage is the LMI
    image lmi-deploy passes as the BASE_IMAGE build argument (so the engine and version stay the validated ones)."""
    if not folder:
        return "set dockerfile_dir to a folder with a Dockerfile that starts FROM ${BASE_IMAGE}"
    dockerfile = Path(folder) / "Dockerfile"
    if not dockerfile.is_file():
        return f"{dockerfile} does not exist; dockerfile_dir must be a folder with a Dockerfile"
    text = dockerfile.read_text(errors="replace")
    first = _FROM.search(text)
    if first is None:
        return f"{dockerfile} has no FROM line; start it with ARG BASE_IMAGE and FROM ${{BASE_IMAGE}}"
    if first.group("image") not in ("${BASE_IMAGE}", "$BASE_IMAGE"):
        return (
            f"{dockerfile} starts FROM {first.group('image')}, not FROM ${{BASE_IMAGE}}: lmi-deploy passes the "
            "validated LMI image as the BASE_IMAGE build argument; use ARG BASE_IMAGE and FROM ${BASE_IMAGE}"
        )
    if not re.search(r"^\s*ARG\s+BASE_IMAGE\b", text, re.IGNORECASE | re.MULTILINE):
        return f"{dockerfile} uses ${{BASE_IMAGE}} without declaring it: add ARG BASE_IMAGE before the FROM"
    return None


_S3_PREFIX = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")
_HUB_TOKEN = re.compile(r"^(hf_|api_org_)[A-Za-z0-9]{20,}$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$"
)


def check_operations(config: Any, notes: list[str] | None = None) -> list[Finding]:
    """Rules of the production-operations settings, each with what to do; what they derive goes to ``notes``."""
    notes = notes if notes is not None else []
    findings: list[Finding] = []

    def error(rule: str, message: str) -> None:
        findings.append(Finding("error", rule, message))

    scaling = config.autoscaling_max_instances is not None
    if scaling and config.autoscaling_max_instances < config.instance_count:
        error(
            "autoscaling",
            f"autoscaling_max_instances={config.autoscaling_max_instances} is below instance_count="
            f"{config.instance_count} (the minimum): raise it, or lower instance_count",
        )
    if config.autoscaling_min_instances is not None:
        if not scaling:
            error(
                "autoscaling",
                f"autoscaling_min_instances={config.autoscaling_min_instances} needs autoscaling: set "
                "autoscaling_max_instances too, or leave autoscaling_min_instances unset",
            )
        elif config.autoscaling_min_instances > config.instance_count:
            error(
                "autoscaling",
                f"autoscaling_min_instances={config.autoscaling_min_instances} is above instance_count="
                f"{config.instance_count} (what the endpoint starts with): lower it, or raise instance_count",
            )
    if config.autoscaling_schedules and not scaling:
        error(
            "schedules",
            "autoscaling_schedules change the bounds of autoscaling, which is off: set autoscaling_max_instances "
            "(and autoscaling_min_instances), or remove the schedules",
        )
    names = [s.name for s in config.autoscaling_schedules]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        error("schedules", f"autoscaling_schedules has two schedules named {duplicate!r}: give each its own name")
    realtime = getattr(config, "inference_mode", "realtime") == "realtime"
    for schedule in config.autoscaling_schedules:
        where = f"autoscaling_schedules {schedule.name!r}"
        problem = schedule_problem(schedule.schedule)
        if problem:
            error("schedules", f"{where}: schedule={schedule.schedule!r} {problem}")
        if schedule.timezone not in _timezones():
            error(
                "schedules",
                f"{where}: timezone={schedule.timezone!r} is not an IANA time zone; use e.g. UTC, Europe/Berlin",
            )
        if schedule.min_instances > schedule.max_instances:
            error(
                "schedules",
                f"{where}: min_instances={schedule.min_instances} is above max_instances={schedule.max_instances}; "
                "swap or correct them",
            )
        if scaling and schedule.max_instances > config.autoscaling_max_instances:
            error(
                "schedules",
                f"{where}: max_instances={schedule.max_instances} is above autoscaling_max_instances="
                f"{config.autoscaling_max_instances}, the most this deployment may run (and cost); raise "
                "autoscaling_max_instances or lower the schedule's",
            )
        if schedule.min_instances == 0 and realtime:
            error(
                "schedules",
                f"{where}: min_instances=0 would leave a real-time endpoint without instances (only asynchronous "
                "endpoints scale to zero: inference_mode=async); use at least 1",
            )
    # --- image ---
    if config.image == "custom":
        problem = dockerfile_problem(config.dockerfile_dir)
        if problem:
            error("image", f"image=custom: {problem}")
    elif config.dockerfile_dir is not None:
        error(
            "image",
            f"dockerfile_dir={config.dockerfile_dir!r} is only built with image=custom (this is image={config.image}): "
            "set image=custom, or remove dockerfile_dir",
        )

    # --- isolation ---
    subnets, groups = config.vpc_subnet_ids, config.vpc_security_group_ids
    if groups and not subnets:
        error(
            "vpc",
            "vpc_security_group_ids are set but vpc_subnet_ids are not: the endpoint joins a VPC only through its "
            "subnets; add vpc_subnet_ids (private subnets, one per availability zone you want)",
        )
    if config.vpc_id and not subnets:
        error("vpc", f"vpc_id={config.vpc_id!r} without vpc_subnet_ids places nothing in the VPC: add vpc_subnet_ids")
    elif subnets and not groups and not config.vpc_id:
        error(
            "vpc",
            "vpc_subnet_ids without vpc_security_group_ids: lmi-deploy creates the security group and needs the "
            "subnets' vpc_id for it; set vpc_id, or give vpc_security_group_ids",
        )
    elif subnets and groups and config.vpc_id:
        error(
            "vpc",
            f"vpc_id={config.vpc_id!r} is only used to create a security group, but vpc_security_group_ids are "
            "given: remove vpc_id",
        )
    for kind, ids in (("vpc_subnet_ids", subnets), ("vpc_security_group_ids", groups)):
        for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
            error("vpc", f"{kind} lists {duplicate} twice: list each once")
    if config.network_isolation and config.weights_delivery == "container":
        error(
            "network-isolation",
            "network_isolation=true keeps the container off the network (no S3, no Hub, no credentials), but "
            "weights_delivery=container has the container download the weights itself: use "
            "weights_delivery=sagemaker (SageMaker copies them to /opt/ml/model before the container starts)",
        )

    if config.kms_key is not None and config.kms_key != "create":
        match = _KMS_KEY_ARN.match(config.kms_key)
        if ":alias/" in config.kms_key:
            error(
                "kms",
                f"kms_key={config.kms_key!r} is an alias: give the key's ARN "
                "(arn:aws:kms:<region>:<account>:key/<id>), which the role's permissions name, or kms_key=create",
            )
        elif not match:
            error(
                "kms",
                f"kms_key={config.kms_key!r} is neither 'create' nor a KMS key ARN "
                "(arn:aws:kms:<region>:<account>:key/<key id>)",
            )
        elif match.group("region") != config.region:
            error(
                "kms",
                f"kms_key is in {match.group('region')} but the deployment is in {config.region}: KMS keys are "
                "regional; use a key of that region, or kms_key=create",
            )
    if config.kms_key is not None and not config.instance.supports_volume_size:
        notes.append(
            f"kms_key: {config.instance_type} has NVMe instance storage only, which the instance encrypts in "
            "hardware; SageMaker refuses KmsKeyId there, so the endpoint config has none (bucket, logs, topics and "
            "outputs use the key)"
        )

    secret = config.hf_token_secret
    if secret is not None:
        if _HUB_TOKEN.match(secret.strip()):
            error(
                "hub-token",
                "hf_token_secret holds what looks like a Hub token itself (the value is not shown here): store the "
                "token in Secrets Manager and set hf_token_secret to the secret's name or ARN",
            )
        elif secret.startswith("arn:"):
            match = _SECRET_ARN.match(secret)
            if not match:
                error(
                    "hub-token",
                    f"hf_token_secret={secret!r} is not a Secrets Manager secret ARN "
                    "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)",
                )
            elif match.group("region") != config.region:
                error(
                    "hub-token",
                    f"hf_token_secret is in {match.group('region')} but the deployment is in {config.region}: the "
                    "container reads it in its own region; replicate the secret there",
                )
        elif not _SECRET_NAME.match(secret):
            error(
                "hub-token",
                f"hf_token_secret={secret!r} is not a Secrets Manager secret name (1-512 of A-Z a-z 0-9 / _ + = . @ -)",
            )
        if not config.endpoint_reads_hub_token:
            why = (
                "the isolated container cannot reach Secrets Manager"
                if config.network_isolation
                else "the built-in handler loads the staged weights and reads a token only from HF_TOKEN"
            )
            notes.append(f"hf_token_secret: used by scripts/stage_model.py; the endpoint gets no access to it ({why})")

    # --- inference mode ---
    if realtime:
        for key, value, default in (
            ("async_output_s3_path", config.async_output_s3_path, None),
            ("async_notifications", config.async_notifications, False),
            ("async_max_concurrent_invocations", config.async_max_concurrent_invocations, None),
        ):
            if value != default:
                error(
                    "async",
                    f"{key}={value!r} applies to asynchronous endpoints only: set inference_mode=async, or remove it",
                )
    if realtime and (config.request_timeout or 0) > REALTIME_REQUEST_TIMEOUT_S:
        error(
            "request-timeout",
            f"request_timeout={config.request_timeout} is past SageMaker's {REALTIME_REQUEST_TIMEOUT_S} s real-time "
            f"invocation timeout: the caller is answered with an error at {REALTIME_REQUEST_TIMEOUT_S} s while the "
            f"model keeps working; use at most {REALTIME_REQUEST_TIMEOUT_S}, or inference_mode=async",
        )
    if config.async_output_s3_path is not None and not _S3_PREFIX.match(config.async_output_s3_path):
        error(
            "async",
            f"async_output_s3_path={config.async_output_s3_path!r} is not an S3 location: use s3://<bucket>/<prefix>/",
        )
    minimum = config.minimum_instances
    if not realtime and minimum == 0 and config.update_strategy != "all-at-once":
        error(
            "async",
            f"update_strategy={config.update_strategy} shifts a share of the instances at a time, but this endpoint "
            "may have none when an update runs (it scales to zero): use update_strategy=all-at-once, or a minimum of 1",
        )
    if config.data_capture_sampling_percent is not None and not config.data_capture:
        error(
            "data-capture",
            f"data_capture_sampling_percent={config.data_capture_sampling_percent} without data_capture=true "
            "captures nothing: set data_capture=true, or remove it",
        )

    if config.autoscaling_min_instances == 0 and realtime:
        error(
            "autoscaling",
            "autoscaling_min_instances=0: only asynchronous endpoints can scale to zero (inference_mode=async); a "
            "real-time endpoint needs at least 1",
        )
    return findings


def _timezones() -> set[str]:
    return zoneinfo.available_timezones() | {"UTC"}
