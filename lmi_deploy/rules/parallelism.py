"""Tensor parallelism: the degree vs the release, the instance's accelerators and the model's attention heads."""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy import containers, key_catalog, known_keys, mpi_mode
from lmi_deploy.containers import Engine
from lmi_deploy.model_facts import DTYPE_BYTES
from lmi_deploy.performance import STATED, decode_allreduces
from lmi_deploy.rules.derive import Derived, divides_heads, handler_latency, tensor_parallel_at, tp_fits_instance
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View


@rule(
    "LMI301",
    title="tensor_parallel_degree=max before 0.24.0",
    why="Releases before 0.24.0 parse the degree with Integer.parseInt; 'max' fails the model load.",
    fix="Give the number of GPUs.",
    example=Example(
        settings={
            "engine": "deepspeed",
            "lmi_version": "0.23.0",
            "model_id": "EleutherAI/gpt-j-6b",
            "tensor_parallel_degree": "max",
        }
    ),
)
def tp_max_supported(view: View, derived: Derived) -> Iterator[str]:
    if view.tensor_parallel == "max" and not containers.accepts_tp_max(view.version):
        count = f"={view.instance.accelerator_count}" if view.instance else " to the number of GPUs"
        yield (
            f"tensor_parallel_degree=max is read only from LMI 0.24.0 (earlier versions parse an integer): set "
            f"tensor_parallel_degree{count} on {view.version}"
        )


@rule(
    "LMI302",
    title="tensor_parallel_degree does not fit the instance's accelerators",
    why="Each model copy needs that many accelerators, and the instance must split evenly into copies.",
    fix="Use a degree that divides the instance's accelerator count, or a larger instance.",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "tensor_parallel_degree": "8"}),
    needs=("instance",),
)
def tp_fits_accelerators(view: View, derived: Derived) -> Iterator[str]:
    assert view.instance is not None
    tp = derived.tensor_parallel_degree
    if tp is not None and not derived.tp_auto_failed and not tp_fits_instance(view, tp):
        valid = ", ".join(str(d) for d in view.instance.valid_tensor_parallel_degrees())
        valid = (
            f"at most {view.instance.accelerator_count}"
            if view.spec and view.spec.splits_any_core_count
            else f"one of {valid}"
        )
        yield (
            f"tensor_parallel_degree={tp} does not fit {view.instance.name}, which has "
            f"{view.instance.accelerator_count} {view.instance.accelerator_noun}; use {valid}, or a larger "
            "instance"
        )


@rule(
    "LMI303",
    title="tensor_parallel_degree does not divide the attention heads",
    why="Each rank must hold whole heads (and whole key/value heads, which rolling-batch engines may replicate); "
    "otherwise the engine refuses the model at load. Transformers-NeuronX pads heads, so the rule skips it.",
    fix="Use a degree that divides the heads (the message lists those that fit the instance).",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/tiny/\noption.rolling_batch=vllm\n"
        "option.tensor_parallel_degree=8\noption.model_loading_timeout=1200\n",
        container="0.28.0",
        instance_type="ml.p4d.24xlarge",
        model_config={
            "model_type": "llama",
            "hidden_size": 768,
            "num_attention_heads": 12,
            "num_hidden_layers": 2,
            "intermediate_size": 2048,
            "vocab_size": 32000,
        },
    ),
    needs=("instance", "heads"),
)
def tp_divides_heads(view: View, derived: Derived) -> Iterator[str]:
    assert view.instance is not None
    tp = derived.tensor_parallel_degree
    if tp is None or derived.tp_auto_failed or not tp_fits_instance(view, tp):
        return
    heads = divides_heads(view, tp)
    if heads:
        fitting = [str(d) for d in view.instance.valid_tensor_parallel_degrees() if not divides_heads(view, d)]
        yield (
            f"tensor_parallel_degree={tp} does not divide {heads} of {view.model_id}: each rank must hold whole "
            f"heads; use one of {', '.join(fitting) or 'none on this instance'}"
        )


@rule(
    "LMI304",
    title="No tensor_parallel_degree on the instance fits the model",
    why="tensor_parallel_degree=auto tries every degree the instance offers; when none holds the weights and the KV "
    "cache the model cannot load there.",
    fix="Choose a larger instance, or a smaller dtype, batch or sequence length.",
    example=Example(
        settings={"engine": "vllm", "model_id": "meta-llama/Llama-3.1-70B-Instruct", "instance_type": "ml.g5.12xlarge"}
    ),
    needs=("instance", "parameters"),
)
def tp_auto_fits(view: View, derived: Derived) -> Iterator[str]:
    instance, facts, dtype = view.instance, view.facts, derived.dtype
    assert instance is not None and facts is not None
    if not derived.tp_auto_failed:
        return
    estimate = " (the size is an estimate from the model id)" if facts.estimated else ""
    total = instance.accelerator_count * instance.memory_per_accelerator_gib
    weights = f"{facts.weight_bytes(dtype) / 1e9:.0f} GB of weights" if dtype in DTYPE_BYTES and dtype else "weights"
    yield (
        f"no tensor_parallel_degree on {instance.name} fits {view.model_id} in {dtype}{estimate}: {weights} on "
        f"{total:.0f} GiB of {instance.accelerator_noun}; {'; '.join(derived.tp_search)}; choose a larger instance or "
        "a smaller dtype/batch/sequence length"
    )


def _accelerate_tp(view: View, derived: Derived) -> int | None:
    """The degree of lmi-deploy's Accelerate handler in a deployment, when it spans several GPUs."""
    tp = derived.tensor_parallel_degree
    custom = view.engine is Engine.ACCELERATE and view.handler == "custom" and view.source == "deployment"
    return tp if custom and tp is not None and tp > 1 else None


@rule(
    "LMI305",
    title="The Accelerate handler spreads whole layers with device_map instead of tensor parallelism",
    why="Tensor parallelism (engine=MPI) splits every layer across the GPUs, so each token reads 1/N of the weights "
    "on each GPU at once; device_map puts whole layers on each GPU, one busy at a time, so each token reads all the "
    "weights at one GPU's bandwidth (about N times slower). It applies to the architectures the handler has a "
    "plan for (T5, Llama, Mistral, Qwen2), degrees that divide their heads, and releases with the MPI engine (0.23+).",
    fix="Use a covered architecture and a degree that divides its heads on LMI 0.23.0 or later, or one GPU per copy "
    "if the model fits it.",
    example=Example(
        settings={
            "engine": "accelerate",
            "model_id": "EleutherAI/gpt-j-6b",
            "instance_type": "ml.g5.12xlarge",
            "tensor_parallel_degree": "4",
            "dtype": "fp16",
        }
    ),
    level="warning",
)
def accelerate_device_map_fallback(view: View, derived: Derived) -> Iterator[str]:
    tp = _accelerate_tp(view, derived)
    reason = None if tp is None else mpi_mode.fallback_reason(view.version, view.facts, tp)
    if tp is not None and reason is not None:
        yield (
            f"tensor_parallel_degree={tp} with the Accelerate handler: {reason}, so device_map spreads whole layers "
            f"over the {tp} GPUs (one busy at a time, about {tp}x slower per token than tensor parallelism)"
        )


@rule(
    "LMI306",
    title="Tensor parallelism over PCIe: every token pays its all-reduces",
    why="g4dn, g5, g6 and g6e GPUs have no NVLink: the 2-3 all-reduces per decoder layer go through the PCIe host "
    "bridge at tens of microseconds each, a share of each token's time that NVLink instances do not pay.",
    fix="Prefer the smallest degree that fits the model, or an NVLink instance (p4d, p5) for large degrees.",
    example=Example(
        settings={
            "engine": "accelerate",
            "model_id": "google/flan-t5-xxl",
            "instance_type": "ml.g5.12xlarge",
            "tensor_parallel_degree": "4",
            "dtype": "bf16",
        }
    ),
    level="warning",
    needs=("instance", "parameters"),
)
def pcie_all_reduce_cost(view: View, derived: Derived) -> Iterator[str]:
    found = handler_latency(view, derived) if tensor_parallel_at(view, derived) else None
    if found is None or not found[0].instance.interconnect.name.startswith("PCIe"):
        return
    setup, latency = found
    assert view.facts is not None
    count = decode_allreduces(view.facts)
    logits = " and one of the logits" if view.facts.vocab_size else ""
    yield (
        f"tensor_parallel_degree={setup.tensor_parallel} on {setup.instance.name} (no NVLink): {count} all-reduces "
        f"per token{logits} (~{latency.allreduce_ms / (count + bool(logits)) * 1e3:.0f} us each) add "
        f"{latency.allreduce_ms:.1f} ms to each token's {latency.step_ms - latency.allreduce_ms:.1f} ms "
        f"({STATED.describe()})"
    )


# djl-serving's VllmRbProperties.validate_pipeline_parallel, 0.30.0 on: any pipeline_parallel_degree but 1 raises.
# The class validates the vLLM rolling batch's properties (vllm_rolling_batch.py) and, from 0.33.0, the async
# service's (vllm_async_service.py) as well, so neither mode takes pipeline parallelism.
VLLM_REFUSES_PIPELINE = "0.30.0"
# LmiDistRbProperties declares pipeline_parallel_degree and hands it to lmi-dist's engine (0.29.0-0.32.0); from
# 0.33.0 the server rewrites rolling_batch=lmi-dist to vllm.
LMI_DIST_PIPELINE_UNTIL = "0.33.0"


def _tensor_parallel_instead(view: View, degree: int) -> str:
    """``=4 (2 x 2)``: the tensor_parallel_degree that spreads a copy over the GPUs the pipeline stages asked for."""
    tp = view.tensor_parallel
    return f"={tp * degree} ({tp} x {degree})" if isinstance(tp, int) else "=max" if tp == "max" else ""


def _runs_vllm(view: View) -> bool:
    """vLLM validates the file: the engine, or rolling_batch=lmi-dist that 0.33.0 on rewrites to vllm; not a model.py
    of the user's own."""
    rewritten = view.rolling_batch == "lmi-dist" and view.at_least("0.33.0")
    return (view.engine is Engine.VLLM or rewritten) and view.handler != "custom"


@rule(
    "LMI307",
    title="pipeline_parallel_degree with vLLM, which refuses pipeline parallelism",
    why="From 0.30.0 vLLM's properties class refuses any option.pipeline_parallel_degree but 1 ('Pipeline "
    "parallelism is not supported in vLLM's LLMEngine used in rolling_batch implementation'); the async mode "
    "(0.33.0 on) validates with the same class, so the model does not load in either mode.",
    fix="Remove option.pipeline_parallel_degree (or set it to 1) and give the GPUs to option.tensor_parallel_degree; "
    "on 0.30.0-0.32.0, lmi-dist (option.rolling_batch=lmi-dist, engine=MPI) takes pipeline parallelism.",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/llama-3-8b/\noption.rolling_batch=vllm\n"
        "option.tensor_parallel_degree=2\noption.pipeline_parallel_degree=2\noption.model_loading_timeout=1200\n",
        container="0.36.0",
    ),
    gate=True,
)
def vllm_refuses_pipeline_parallel(view: View, derived: Derived) -> Iterator[str]:
    degree = view.written("option.pipeline_parallel_degree")
    if degree is None or not degree.isdigit() or int(degree) == 1:
        return
    if not (_runs_vllm(view) and view.at_least(VLLM_REFUSES_PIPELINE)):
        return
    use = _tensor_parallel_instead(view, int(degree))
    lmi_dist = not view.at_least(LMI_DIST_PIPELINE_UNTIL)
    yield (
        f"option.pipeline_parallel_degree={degree} with vLLM on LMI {view.version}: VllmRbProperties refuses any "
        "degree but 1 ('Pipeline parallelism is not supported in vLLM's LLMEngine used in rolling_batch "
        "implementation'), in rolling batch and async mode alike; remove it and set "
        f"option.tensor_parallel_degree{use or ' to the GPUs it would have used'}"
        + (" (or use option.rolling_batch=lmi-dist with engine=MPI, which takes it)" if lmi_dist else "")
    )


PIPELINE_KEY = "option.pipeline_parallel_degree"
# Where a release's handler takes pipeline parallelism (djl-serving source): FasterTransformer's handler reads it
# 0.22.1-0.24.0 (fastertransformer.py, properties.get("pipeline_parallel_degree")); from 0.29.0 the server reads it
# (PyModel: MPI world size TP x PP; LmiUtils: TensorRT-LLM's build) and lmi-dist's engine takes it
# (lmi_dist_rolling_batch.py, pipeline_parallel_size), as does the Accelerate handler's device_map over TP x PP GPUs
# (hf_properties.py). vLLM before 0.30.0 and Transformers-NeuronX have no such field; vLLM from 0.30.0 refuses it
# (LMI307). 0.19.0-0.21.0 and 0.25.0-0.28.0 read the key nowhere.
PIPELINE_ENGINES: dict[Engine, tuple[str, str | None]] = {
    Engine.FASTER_TRANSFORMER: ("0.22.1", "0.25.0"),
    Engine.LMI_DIST: ("0.29.0", None),
    Engine.TENSORRT_LLM: ("0.29.0", None),
    Engine.ACCELERATE: ("0.29.0", None),
}


def _takes_pipeline(engine: Engine, view: View) -> bool:
    first, until = PIPELINE_ENGINES.get(engine, ("", ""))
    return bool(first) and view.at_least(first) and (until is None or not view.at_least(until))


def pipeline_ignored(view: View) -> str | None:
    """Why option.pipeline_parallel_degree (not 1) does nothing on this view's release and engine; None when it
    applies, is refused (LMI307), or the view cannot tell (a model.py of the user's own may read it)."""
    degree = view.written(PIPELINE_KEY)
    if degree is None or not degree.isdigit() or int(degree) == 1 or view.handler == "custom":
        return None
    if not known_keys.reads(PIPELINE_KEY, view.version):
        reading = key_catalog.spans(known_keys.versions_reading(PIPELINE_KEY))
        return f"LMI {view.version} reads it nowhere (read in {reading})"
    if (
        view.engine is None
        or _takes_pipeline(view.engine, view)
        or (_runs_vllm(view) and view.at_least(VLLM_REFUSES_PIPELINE))
    ):
        return None
    return f"{view.engine}'s handler on LMI {view.version} does not read it"


@rule(
    "LMI308",
    title="pipeline_parallel_degree that the release or engine ignores",
    why="Only some handlers take option.pipeline_parallel_degree: FasterTransformer's on 0.22.1-0.24.0, and from "
    "0.29.0 lmi-dist, TensorRT-LLM and the Accelerate handler. "
    "Elsewhere (0.19.0-0.21.0 and 0.25.0-0.28.0 read the key nowhere; DeepSpeed, vLLM before 0.30.0, "
    "Transformers-NeuronX never take it) the key is silently ignored: no pipeline stages are built and each copy "
    "of the model is split over tensor_parallel_degree devices alone, which must then hold all of it.",
    fix="Remove option.pipeline_parallel_degree and give its devices to option.tensor_parallel_degree (TP x PP), or "
    "use an engine of the release that takes it.",
    example=Example(
        properties="engine=DeepSpeed\noption.model_id=s3://bucket/gpt-j-6b/\noption.tensor_parallel_degree=2\n"
        "option.pipeline_parallel_degree=2\noption.model_loading_timeout=1200\n",
        container="0.26.0",
    ),
    level="warning",
)
def pipeline_parallel_ignored(view: View, derived: Derived) -> Iterator[str]:
    reason = pipeline_ignored(view)
    if reason is None:
        return
    degree = int(view.written(PIPELINE_KEY) or 1)
    tp = view.tensor_parallel
    over = f"={tp}" if isinstance(tp, int) or tp == "max" else " (unset: the release's default)"
    takers = [str(engine) for engine in PIPELINE_ENGINES if _takes_pipeline(engine, view)]
    use = _tensor_parallel_instead(view, degree)
    yield (
        f"option.pipeline_parallel_degree={degree} on LMI {view.version}{f' with {view.engine}' if view.engine else ''}"
        f": {reason}, so no pipeline parallelism happens: each copy of the model is split over "
        f"option.tensor_parallel_degree{over} devices alone, which must hold all of it; remove the key and set "
        f"option.tensor_parallel_degree{use or ' to the devices the stages would have used'}"
        + (f" (or use {', '.join(takers)}, which take{'s' * (len(takers) == 1)} it on this release)" if takers else "")
    )
