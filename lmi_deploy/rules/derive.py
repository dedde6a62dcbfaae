"""The values a deployment actually uses, derived in one explicit, ordered pipeline of small steps.

``auto`` (and, for an existing serving.properties, an unset key) becomes a value with its reason as a note. The steps
decide nothing about right and wrong: they record what they found (e.g. that no tensor-parallel degree fits) and the
rules in the registry turn that into findings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from lmi_deploy import adapters, mpi_mode, warm_shapes
from lmi_deploy.engines.base import ENGINES, Engine, EngineSpec, model_dtype, version_key
from lmi_deploy.instances import InstanceType
from lmi_deploy.model_facts import DTYPE_BYTES, ModelFacts
from lmi_deploy.performance import STATED, Estimate, Setup, engine_speed
from lmi_deploy.performance import estimate as performance_estimate
from lmi_deploy.rules import estimates
from lmi_deploy.rules.estimates import LoadTimes, MemoryEstimate
from lmi_deploy.rules.registry import Finding
from lmi_deploy.rules.view import View

DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "f16": "fp16", "bfloat16": "bf16", "f32": "fp32"}


@dataclass
class Derived:
    """What the pipeline derived; None where the view lacks what it takes."""

    dtype: str | None = None
    tensor_parallel_degree: int | None = None
    tp_search: list[str] = field(default_factory=list)  # why each smaller degree was passed over
    tp_auto_failed: bool = False  # tensor_parallel_degree=auto found no degree that fits
    max_sequence_length: int = estimates.DEFAULT_SEQUENCE_LENGTH
    max_batch_size: int = estimates.DEFAULT_BATCH
    memory: MemoryEstimate | None = None
    load: LoadTimes | None = None
    download_timeout: int | None = None
    startup_timeout: int | None = None
    model_loading_timeout: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Resolved:
    """The values a deployment actually uses, after ``auto`` is derived, with its notes and findings."""

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


def bf16_supported(view: View) -> bool:
    spec, instance = view.spec, view.instance
    return spec is not None and instance is not None and supports_bf16(spec, instance, view.version)


def supports_bf16(spec: EngineSpec, instance: InstanceType, version: str) -> bool:
    """Whether this engine at this version computes in bf16 on this instance's accelerators."""
    if "bf16" not in spec.dtypes or instance.accelerator in estimates.NO_BF16:
        return False
    return not (spec.neuron and version_key(version) < (0, 24, 0))


def _engine_default_dtype(view: View) -> tuple[str, str]:
    """What an unset (or ``auto``) option.dtype means to the engine that reads it."""
    spec = view.spec
    if view.dtype == "auto" or (spec is not None and spec.dtype_from_model):
        return model_dtype(view.facts.native_dtype if view.facts else None)
    if spec is not None:
        return spec.unset_dtype(bf16_supported(view), view.version)
    return "fp32", "the handler's default"


def derive_dtype(view: View, derived: Derived) -> None:
    spec = view.spec
    if view.source == "deployment" and view.dtype == "auto" and spec is not None and view.instance is not None:
        if bf16_supported(view):
            dtype, why = "bf16", f"{view.instance.accelerator} and {spec.engine.value} support bf16"
        elif view.is_t5:
            dtype, why = "fp32", "T5 overflows in fp16 and bf16 is unavailable here"
        else:
            no_bf16 = view.instance.accelerator in estimates.NO_BF16
            dtype, why = "fp16", f"no bf16 on {view.instance.accelerator}" if no_bf16 else "no bf16"
        derived.notes.append(f"dtype=auto -> {dtype} ({why})")
    elif view.dtype is None or view.dtype == "auto":
        dtype, why = _engine_default_dtype(view)
        derived.notes.append(f"option.dtype={view.dtype or 'unset'} -> {dtype} ({why})")
    else:
        dtype = DTYPE_ALIASES.get(view.dtype, view.dtype)
    if (
        dtype == "bf16"
        and view.dtype in (None, "auto")
        and view.instance
        and view.instance.accelerator in estimates.NO_BF16
    ):
        dtype = "fp16"  # engines fall back to fp16 where the GPU has no bf16 (an explicit bf16 is refused: LMI404)
    derived.dtype = dtype


def derive_sequence_and_batch(view: View, derived: Derived) -> None:
    if view.max_sequence_length:
        derived.max_sequence_length = view.max_sequence_length
    else:
        known = view.facts.max_positions if view.facts and view.facts.max_positions else None
        derived.max_sequence_length = min(
            known or estimates.DEFAULT_SEQUENCE_LENGTH, estimates.MAX_DEFAULT_SEQUENCE_LENGTH
        )
    derived.max_batch_size = int(view.max_batch_size or estimates.DEFAULT_BATCH)


def divides_heads(view: View, tp: int) -> str | None:
    """Which heads TP ``tp`` fails to split evenly, or None. Transformers-NeuronX pads heads to the degree."""
    return heads_not_split(view.facts, tp, view.engine, view.rolling)


def heads_not_split(facts: ModelFacts | None, tp: int, engine: Engine | None, rolling: bool) -> str | None:
    """:func:`divides_heads` for a model, engine and batching known apart from a view."""
    pads_heads = engine is not None and ENGINES[engine].splits_any_core_count
    if pads_heads or facts is None or facts.attention_heads is None or facts.kv_heads is None:
        return None
    if facts.attention_heads % tp:
        return f"its {facts.attention_heads} attention heads"
    if facts.kv_heads % tp and not (rolling and tp % facts.kv_heads == 0):
        return f"its {facts.kv_heads} key/value heads"
    return None


def memory_at(view: View, derived: Derived, tp: int) -> MemoryEstimate | None:
    facts, instance, dtype = view.facts, view.instance, derived.dtype
    if facts is None or facts.parameters is None or instance is None or dtype not in DTYPE_BYTES:
        return None
    assert dtype is not None
    reserved = (view.reserved_memory_mb or 0) / 1024
    reserved = reserved if reserved < instance.memory_per_accelerator_gib else 0.0  # LMI203 refuses the rest
    # An existing file's batch is what requests bring, not a promise: count one full sequence (a lower bound).
    load = estimates.Load(
        dtype,
        tp,
        derived.max_batch_size,
        derived.max_sequence_length,
        view.rolling,
        view.bytes_per_parameter,
        reserved,
        lora_bytes(view, dtype),
        lower_bound_of=view.dynamic_batch() if view.source == "serving.properties" else None,
    )
    return estimates.estimate_memory(facts, instance, load)


def lora_bytes(view: View, dtype: str) -> int:
    """The LoRA slots the engine sets aside (``max_loras`` adapters at ``max_lora_rank``); 0 without LoRA or when
    the architecture's sizes are unknown."""
    config = view.config
    if config is None or view.facts is None or not config.lora_enabled:
        return 0
    plan = config.lora_plan
    per_slot = adapters.lora_bytes_per_slot(view.facts, plan.max_lora_rank, DTYPE_BYTES[dtype])
    return int(per_slot or 0) * int(plan.max_loras)


def _search_tensor_parallel(view: View, derived: Derived) -> None:
    """tensor_parallel_degree=auto: the smallest degree that divides the heads and fits in memory."""
    assert view.instance is not None
    noun = view.instance.accelerator_noun
    for candidate in view.instance.valid_tensor_parallel_degrees():
        heads = divides_heads(view, candidate)
        if heads:
            derived.tp_search.append(f"TP{candidate} does not divide {heads}")
            continue
        estimate = memory_at(view, derived, candidate)
        if estimate is not None and not estimate.fits:
            derived.tp_search.append(f"TP{candidate} needs {estimate.total_gib:.1f} GiB per {noun[:-1]}")
            continue
        derived.tensor_parallel_degree = candidate
        if view.facts is None or view.facts.parameters is None:
            derived.notes.append(f"tensor_parallel_degree=auto -> {candidate} (the model's size is unknown)")
        else:
            why = "; ".join(derived.tp_search) or "the smallest that fits"
            derived.notes.append(f"tensor_parallel_degree=auto -> {candidate} ({why})")
        return
    derived.tp_auto_failed = True
    derived.tensor_parallel_degree = view.instance.valid_tensor_parallel_degrees()[-1]


def derive_tensor_parallel(view: View, derived: Derived) -> None:
    raw, instance = view.tensor_parallel, view.instance
    if isinstance(raw, int):
        derived.tensor_parallel_degree = raw
    elif instance is None:
        return
    elif raw == "auto":
        _search_tensor_parallel(view, derived)
    elif raw == "max":
        derived.tensor_parallel_degree = instance.accelerator_count
    else:  # unset in a serving.properties: the LMI containers use every accelerator
        derived.tensor_parallel_degree = instance.accelerator_count
        derived.notes.append(
            f"option.tensor_parallel_degree unset -> {instance.accelerator_count} "
            f"(every {instance.accelerator_noun[:-1]})"
        )


def tp_fits_instance(view: View, tp: int | None) -> bool:
    """Whether the instance has ``tp`` accelerators per copy. GPUs split into whole copies; Transformers-NeuronX
    takes any number of NeuronCores up to the instance's (TP 8 of 12 runs in DJL's own tests)."""
    if tp is None or view.instance is None:
        return False
    count = view.instance.accelerator_count
    return tp <= count and (count % tp == 0 or (view.spec is not None and view.spec.splits_any_core_count))


def derive_memory(view: View, derived: Derived) -> None:
    tp = derived.tensor_parallel_degree
    if derived.tp_auto_failed or tp is None or not tp_fits_instance(view, tp):
        return
    derived.memory = memory_at(view, derived, tp)
    facts, instance = view.facts, view.instance
    if derived.memory is not None and facts is not None and facts.parameters and instance is not None:
        derived.notes.append(
            f"{facts.parameters / 1e9:.2f}B parameters ({facts.parameters_from}); "
            + derived.memory.describe(tp, instance.accelerator_noun)
        )


def _timeout(name: str, value: int | str | None, needed: int | None, how: str, derived: Derived) -> int | None:
    if value != "auto":
        return value if isinstance(value, int) else None
    seconds = max(estimates.TIMEOUT_FLOOR_S, needed or 0)
    if seconds <= estimates.SAGEMAKER_TIMEOUT_MAX_S:
        derived.notes.append(f"{name}=auto -> {seconds} s" + (f" ({how})" if needed else " (floor)"))
    return seconds


def handler_warm_up(view: View, derived: Derived) -> float:
    """Seconds lmi-deploy's Accelerate handler compiles and captures at load (0 for every other handler)."""
    config = view.config
    options = view.spec.handler_options if view.spec is not None else {}
    if config is None or not options or config.handler != "custom":
        return 0.0
    if config.kv_cache == "dynamic":
        return 0.0

    def on(name: str) -> bool:
        value = getattr(config, name, None)
        return bool(options[name] if value is None else value)

    shapes = warm_shapes.warm_shapes(derived.max_batch_size, derived.max_sequence_length)
    return float(warm_shapes.startup_seconds(shapes, on("compile"), on("cuda_graphs")))


def derive_timeouts(view: View, derived: Derived) -> None:
    facts = view.facts
    if facts is not None and facts.parameters is not None:
        warm_up = handler_warm_up(view, derived)
        derived.load = estimates.load_times(facts, view.spec, view.partitioned, warm_up)
    load = derived.load
    derived.download_timeout = _timeout(
        "model_data_download_timeout",
        view.download_timeout,
        load.download_s if load else None,
        load.how_download if load else "",
        derived,
    )
    derived.startup_timeout = _timeout(
        "container_startup_health_check_timeout",
        view.startup_timeout,
        load.startup_s if load else None,
        load.how_startup if load else "",
        derived,
    )
    if view.source == "deployment":
        startup = derived.startup_timeout
        derived.model_loading_timeout = view.model_loading_timeout or (
            min(startup, estimates.SAGEMAKER_TIMEOUT_MAX_S) if startup else None
        )
    else:
        derived.model_loading_timeout = view.model_loading_timeout


def note_operations(view: View, derived: Derived) -> None:
    """What the endpoint does with the KMS key and the Hub token's secret, where that is not the obvious."""
    config = view.config
    if config is None:
        return
    if config.kms_key is not None and view.instance is not None and not view.instance.supports_volume_size:
        derived.notes.append(
            f"kms_key: {config.instance_type} has NVMe instance storage only, which the instance encrypts in "
            "hardware; SageMaker refuses KmsKeyId there, so the endpoint config has none (bucket, logs, topics and "
            "outputs use the key)"
        )
    if config.hf_token_secret is not None and not config.endpoint_reads_hub_token:
        why = (
            "the isolated container cannot reach Secrets Manager"
            if config.network_isolation
            else "the built-in handler loads the staged weights and reads a token only from HF_TOKEN"
        )
        derived.notes.append(
            f"hf_token_secret: used by scripts/stage_model.py; the endpoint gets no access to it ({why})"
        )


def note_adapters(view: View, derived: Derived) -> None:
    """The LoRA limits derived for the adapters (rendered as option.max_loras & co.)."""
    config = view.config
    if config is not None and config.lora_enabled:
        plan = config.lora_plan
        derived.notes.append(
            f"LoRA: {plan.adapters} adapter{'s' if plan.adapters != 1 else ''}, max_loras={plan.max_loras} per "
            f"batch, max_lora_rank={plan.max_lora_rank}, max_cpu_loras={plan.cached}"
        )
        derived.notes += plan.notes


def handler_latency(view: View, derived: Derived) -> tuple[Setup, Estimate] | None:
    """The Accelerate handler's latency at the stated workload (``performance.STATED``), or None where unknown."""
    tp, facts, instance, dtype = derived.tensor_parallel_degree, view.facts, view.instance, derived.dtype
    if view.source != "deployment" or view.engine is not Engine.ACCELERATE or view.handler != "custom":
        return None
    if facts is None or facts.parameters is None or instance is None or dtype not in DTYPE_BYTES or tp is None:
        return None
    if instance.is_neuron:
        return None
    assert dtype is not None
    setup = Setup(instance, Engine.ACCELERATE, tp, dtype)
    speed = replace(engine_speed(Engine.ACCELERATE), split_layers=tensor_parallel_at(view, derived))
    return setup, performance_estimate(facts, setup, STATED.workload(setup.copies), speed)


def tensor_parallel_at(view: View, derived: Derived) -> bool:
    """Whether lmi-deploy's Accelerate handler runs this deployment tensor-parallel (``lmi_deploy.mpi_mode``)."""
    tp = derived.tensor_parallel_degree
    return mpi_mode.tensor_parallel_at(view.engine, view.handler, tp, view.version, view.facts)


def note_latency(view: View, derived: Derived) -> None:
    """The Accelerate handler's printed latency estimate, with its all-reduces where it runs tensor-parallel."""
    found = handler_latency(view, derived)
    if found is None:
        return
    setup, latency = found
    how = "tensor parallel" if tensor_parallel_at(view, derived) else "device_map: one GPU busy at a time"
    how = how if setup.tensor_parallel > 1 else "one GPU"
    reduce = f", of which {latency.allreduce_ms:.2f} ms all-reduce over {setup.instance.interconnect.name}"
    derived.notes.append(
        f"latency estimate at TP{setup.tensor_parallel} ({how}), {STATED.describe()}: {latency.step_ms:.1f} ms per "
        f"token{reduce if latency.allreduce_ms else ''}, p50 ~{latency.request_ms:.0f} ms per request "
        "(lmi_deploy/performance.py)"
    )


Step = Callable[[View, Derived], None]
PIPELINE: tuple[Step, ...] = (
    derive_dtype,
    derive_sequence_and_batch,
    derive_tensor_parallel,
    derive_memory,
    note_latency,
    derive_timeouts,
    note_operations,
    note_adapters,
)


def derive(view: View) -> Derived:
    derived = Derived()
    for step in PIPELINE:
        step(view, derived)
    return derived
