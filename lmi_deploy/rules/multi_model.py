"""Several models behind one endpoint: what each needs of the shared endpoint, and whether they fit together.

These rules run on :class:`Together` (every model already validated as a single deployment). Problems of the
file's shape (where a setting belongs, model names) are found while it is parsed (``lmi_deploy.multi_model``) and
registered here for their ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lmi_deploy import instances
from lmi_deploy.containers import ENGINES, version_key
from lmi_deploy.instances import InstanceType
from lmi_deploy.rules.registry import RULES, Example, Finding, parse_rule, rule

MME_FIRST_VERSION = "0.21.0"  # DJL Serving answers SageMaker's MME load/invoke calls from 0.21.0
MME_ENGINES = tuple(engine for engine, spec in ENGINES.items() if spec.multi_model)
HOST_MEMORY_USABLE = 0.9  # of the instance's memory; the rest for the OS and SageMaker's agents (an assumption)
MIB_PER_GIB = 1024
_TWO = [
    {"name": "a", "model_id": "meta-llama/Llama-2-7b-hf"},
    {"name": "b", "model_id": "mistralai/Mistral-7B-Instruct-v0.2"},
]
_SMALL = [
    {"name": "a", "model_id": "TinyLlama/TinyLlama-1.1B-Chat-v1.0"},
    {"name": "b", "model_id": "google/flan-t5-large"},
]
_IC = {"deployment": "two", "multi_model": "inference_components", "engine": "vllm", "lmi_version": "0.33.0"}
# Families the transformers of 0.20.0 knows (its image pins 4.23.1: no llama or mistral yet, LMI106).
_TWO_OLD = [
    {"name": "a", "model_id": "EleutherAI/gpt-j-6b"},
    {"name": "b", "model_id": "facebook/opt-1.3b"},
]
_MME = {"deployment": "two", "multi_model": "mme", "engine": "accelerate", "lmi_version": "0.28.0"}

FILE_SHAPE = parse_rule(
    "LMI930",
    title="A multi-model deployment file of the wrong shape",
    why="A models: list needs multi_model: (inference_components or mme), a deployment name, and a mapping per model.",
    fix="Add what the message names.",
    example=Example(deployment_file={"deployment": "two", "models": _TWO}),
    concern="multi_model",
)
MODEL_NAME = parse_rule(
    "LMI931",
    title="A model name that is invalid or used twice",
    why="The name becomes part of the model's archive or inference component name.",
    fix="Give every model its own name of 1-30 characters of a-z, 0-9 and '-', starting with a letter.",
    example=Example(deployment_file={**_IC, "models": [_TWO[0], {**_TWO[1], "name": "a"}]}),
    concern="multi_model",
)
MISPLACED = parse_rule(
    "LMI932",
    title="A setting in the wrong place of a multi-model file",
    why="Endpoint settings are shared and set once at the top; component sizes belong to inference components only; "
    "some endpoint settings are built for single-model endpoints only.",
    fix="Move the setting where the message says, or remove it.",
    example=Example(deployment_file={**_MME, "models": [{**_TWO[0], "copies": 2}, _TWO[1]]}),
    concern="multi_model",
)


@dataclass(frozen=True)
class Together:
    """The models of one endpoint (``ModelSpec``s of ``lmi_deploy.multi_model``), its mode and instance."""

    mode: str
    models: Sequence[Any]
    instance: InstanceType
    endpoint: Any  # the first model's DeploymentConfig: the endpoint settings every model shares


def count_of(number: int, plural: str) -> str:
    """``1 GPU``, ``2 GPUs``."""
    return f"{number} {plural.removesuffix('s') if number == 1 else plural}"


def check_together(together: Together) -> tuple[list[Finding], list[str]]:
    """(findings, notes) of the models as one endpoint; gate errors skip the fit rules."""
    ordered = sorted((r for r in RULES.values() if r.subject == "multi-model"), key=lambda r: (not r.gate, r.id))
    findings: list[Finding] = []
    for current in ordered:
        if not current.gate and any(f.level == "error" for f in findings):
            break
        assert current.check is not None
        findings += [Finding(current.level, current.id, m) for m in current.check(together)]
    notes = [] if any(f.level == "error" for f in findings) else fit_notes(together)
    return findings, notes


def _ic(together: Together) -> bool:
    return together.mode == "inference_components"


@rule(
    "LMI911",
    title="An engine that cannot share a multi-model endpoint",
    why="lmi-deploy serves MME through the Python engine's Accelerate handler only; MPI and rolling-batch engines "
    "claim their GPUs whole.",
    fix="Use engine=Accelerate, or multi_model: inference_components.",
    example=Example(deployment_file={**_MME, "engine": "vllm", "models": _TWO}),
    subject="multi-model",
    gate=True,
)
def mme_engine(together: Together) -> Iterator[str]:
    for model in together.models if not _ic(together) else ():
        if model.config.engine not in MME_ENGINES:
            yield (
                f"{model.label}: engine={model.config.engine.value} cannot share a multi-model endpoint: lmi-deploy "
                "serves MME through the Python engine's Accelerate handler only (DJL Serving loads each model on "
                "demand into GPUs all models share; MPI engines and rolling-batch engines claim their GPUs whole); use "
                "engine=Accelerate, or multi_model: inference_components"
            )


@rule(
    "LMI912",
    title="A container older than DJL Serving's multi-model support",
    why="DJL Serving answers SageMaker's multi-model load and invoke calls from 0.21.0.",
    fix=f"Set lmi_version {MME_FIRST_VERSION} or later.",
    example=Example(deployment_file={**_MME, "lmi_version": "0.20.0", "models": _TWO_OLD}),
    subject="multi-model",
    gate=True,
)
def mme_version(together: Together) -> Iterator[str]:
    for model in together.models if not _ic(together) else ():
        if model.config.engine in MME_ENGINES and version_key(model.config.lmi_version) < version_key(
            MME_FIRST_VERSION
        ):
            yield (
                f"{model.label}: lmi_version={model.config.lmi_version} predates DJL Serving's support of SageMaker "
                f"multi-model endpoints ({MME_FIRST_VERSION}): set lmi_version {MME_FIRST_VERSION} or later"
            )


@rule(
    "LMI913",
    title="weights_delivery=sagemaker on a multi-model endpoint",
    why="SageMaker multi-model endpoints load model archives by TargetModel; they do not take ModelDataSource.",
    fix="Use weights_delivery=container.",
    example=Example(
        deployment_file={
            **_MME,
            "models": [{**_TWO[0], "weights_delivery": "sagemaker", "handler": "builtin"}, _TWO[1]],
        }
    ),
    subject="multi-model",
    gate=True,
)
def mme_delivery(together: Together) -> Iterator[str]:
    for model in together.models if not _ic(together) else ():
        if model.config.weights_delivery != "container":
            yield (
                f"{model.label}: weights_delivery=sagemaker (ModelDataSource) is not supported by SageMaker "
                "multi-model endpoints: use weights_delivery=container"
            )


@rule(
    "LMI914",
    title="Inference components on a Neuron instance",
    why="Inference components count Neuron devices, which lmi-deploy has not verified against NeuronCores.",
    fix="Use a GPU instance, or one endpoint per model.",
    example=Example(
        deployment_file={
            **_IC,
            "engine": "neuronx",
            "lmi_version": "0.29.0",
            "instance_type": "ml.inf2.24xlarge",
            "models": [_TWO[0], {**_TWO[0], "name": "b"}],
        }
    ),
    subject="multi-model",
    gate=True,
)
def components_on_neuron(together: Together) -> Iterator[str]:
    for model in together.models if _ic(together) else ():
        if ENGINES[model.config.engine].neuron or together.instance.is_neuron:
            yield (
                f"{model.label}: inference components on {together.instance.name} would count Neuron devices, which "
                "lmi-deploy has not verified against NeuronCores; use a GPU instance, or one endpoint per model"
            )


@rule(
    "LMI915",
    title="A copy's accelerators that do not hold whole model replicas, or more than the instance has",
    why="Each copy runs whole tensor-parallel replicas on one instance.",
    fix="Use a multiple of the model's tensor_parallel_degree, at most the instance's accelerators.",
    example=Example(
        deployment_file={**_IC, "models": [{**_TWO[0], "tensor_parallel_degree": 2, "accelerators": 3}, _TWO[1]]}
    ),
    subject="multi-model",
    gate=True,
)
def component_accelerators(together: Together) -> Iterator[str]:
    instance = together.instance
    for model in together.models if _ic(together) and not instance.is_neuron else ():
        tp = model.config.resolved.tensor_parallel_degree
        if model.accelerators % tp:
            yield (
                f"{model.label}: accelerators={model.accelerators} is not a multiple of its tensor_parallel_degree="
                f"{tp}: each copy runs whole model replicas; use accelerators {tp} or {2 * tp}"
            )
        elif model.accelerators > instance.accelerator_count:
            yield (
                f"{model.label}: accelerators={model.accelerators} is more than {instance.name}'s "
                f"{instance.accelerator_count} {instance.accelerator_noun}: a copy runs on one instance; use a larger "
                "instance type"
            )


@rule(
    "LMI916",
    title="copies outside min_copies..max_copies",
    why="The component's autoscaling would start outside its own bounds.",
    fix="Make min_copies <= copies <= max_copies.",
    example=Example(
        deployment_file={**_IC, "models": [{**_TWO[0], "copies": 1, "min_copies": 2, "max_copies": 3}, _TWO[1]]}
    ),
    subject="multi-model",
    gate=True,
)
def copies_within_bounds(together: Together) -> Iterator[str]:
    for model in together.models if _ic(together) and not together.instance.is_neuron else ():
        if not model.min_copies <= model.copies <= model.max_copies:
            yield (
                f"{model.label}: copies must lie within min_copies..max_copies, but min_copies={model.min_copies}, "
                f"copies={model.copies}, max_copies={model.max_copies}"
            )


@rule(
    "LMI917",
    title="Models of one multi-model endpoint ask for different containers",
    why="A multi-model endpoint runs one container for every model.",
    fix="Set lmi_version once, at the top level.",
    example=Example(deployment_file={**_MME, "models": [{**_TWO[0], "lmi_version": "0.27.0"}, _TWO[1]]}),
    subject="multi-model",
    gate=True,
)
def mme_one_version(together: Together) -> Iterator[str]:
    versions = sorted({m.config.lmi_version for m in together.models}, key=version_key)
    if not _ic(together) and len(versions) > 1:
        yield (
            f"the models of a multi-model endpoint share one container, but they ask for lmi_version "
            f"{' and '.join(versions)}: set lmi_version once, at the top level"
        )


@rule(
    "LMI918",
    title="The models of a multi-model endpoint do not fit its GPUs together",
    why="DJL Serving keeps loaded models in the GPUs they share, so their memory per GPU adds up.",
    fix="Use a larger instance, fewer or smaller models, or lower their max_batch_size/max_sequence_length.",
    example=Example(
        deployment_file={
            **_MME,
            "instance_type": "ml.g5.2xlarge",
            "dtype": "fp16",
            "models": [{**m, "max_batch_size": 1, "max_sequence_length": 512} for m in _TWO],
        }
    ),
    subject="multi-model",
)
def mme_fit(together: Together) -> Iterator[str]:
    if _ic(together):
        return
    usable, used = together.instance.memory_per_accelerator_gib, 0.0
    known = [m for m in together.models if m.config.resolved.memory is not None]
    for model in known:
        memory = model.config.resolved.memory
        if used + memory.total_gib > usable:
            loaded = ", ".join(m.name for m in known if m.index < model.index)
            yield (
                f"{model.label} does not fit {together.instance.name} beside {loaded or 'the others'}: a multi-model "
                f"endpoint keeps loaded models in the GPUs they share, and all {len(together.models)} need "
                f"{sum(m.config.resolved.memory.total_gib for m in known):.1f} GiB per GPU, {usable:.1f} GiB usable "
                f"({used:.1f} GiB taken before {model.name}); use a larger instance, fewer or smaller models, or "
                "lower their max_batch_size/max_sequence_length"
            )
            return
        used += memory.total_gib


def host_memory_mib(instance: InstanceType) -> int:
    return int((instances.host_memory_gib(instance.name) or 0) * MIB_PER_GIB * HOST_MEMORY_USABLE)


def _place(models: Sequence[Any], copies: Sequence[int], count: int, instance: InstanceType) -> tuple[Any, int] | None:
    """First-fit placement of every copy onto ``count`` instances; the first copy that fits nowhere."""
    free = [[instance.accelerator_count, host_memory_mib(instance)] for _ in range(count)]
    for model, wanted in zip(models, copies, strict=True):
        for copy in range(1, wanted + 1):
            slot = next((f for f in free if f[0] >= model.accelerators and f[1] >= model.memory_mib), None)
            if slot is None:
                return model, copy
            slot[0] -= model.accelerators
            slot[1] -= model.memory_mib
    return None


def _misfit(together: Together, copies: Sequence[int], count: int, when: str, fix: str) -> str | None:
    models, instance = together.models, together.instance
    failed = _place(models, copies, count, instance)
    # SageMaker may pack better than first fit in file order: biggest copies first before giving up.
    order = sorted(range(len(models)), key=lambda i: (models[i].accelerators, models[i].memory_mib), reverse=True)
    if failed is None or _place([models[i] for i in order], [copies[i] for i in order], count, instance) is None:
        return None
    model, copy = failed
    noun, memory = instance.accelerator_noun, host_memory_mib(instance)
    need_acc = sum(m.accelerators * c for m, c in zip(models, copies, strict=True))
    need_mem = sum(m.memory_mib * c for m, c in zip(models, copies, strict=True))
    return (
        f"{model.label} does not fit {when}: its copy {copy} of {copies[model.index]} needs "
        f"{count_of(model.accelerators, noun)} and {model.memory_mib / MIB_PER_GIB:.1f} GiB of host memory and no "
        f"instance has them left; the copies need {count_of(need_acc, noun)} and {need_mem / MIB_PER_GIB:.1f} GiB in "
        f"all, {count} x {instance.name} give {count_of(count * instance.accelerator_count, noun)} and "
        f"{count * memory / MIB_PER_GIB:.1f} GiB usable; {fix}"
    )


@rule(
    "LMI919",
    title="The inference components' copies do not fit the instances",
    why="Every copy needs its accelerators and host memory on one instance, at the start and at max_copies.",
    fix="Use a larger instance type, raise instance_count or autoscaling_max_instances, or lower copies.",
    example=Example(deployment_file={**_IC, "instance_type": "ml.g5.2xlarge", "dtype": "bf16", "models": _TWO}),
    subject="multi-model",
)
def components_fit(together: Together) -> Iterator[str]:
    if not _ic(together):
        return
    endpoint, instance, models = together.endpoint, together.instance, together.models
    count = endpoint.instance_count
    initial = _misfit(
        together,
        [m.copies for m in models],
        count,
        f"{instance.name} x{count}",
        "use a larger instance type, raise instance_count, or lower copies/accelerators/memory_mib",
    )
    if initial:
        yield initial
    elif any(m.max_copies > m.copies for m in models):
        most = endpoint.autoscaling_max_instances or count
        at_max = _misfit(
            together,
            [m.max_copies for m in models],
            most,
            f"{instance.name} x{most} at max_copies",
            "raise autoscaling_max_instances (the instances managed instance scaling may add) or lower max_copies",
        )
        if at_max:
            yield at_max


@rule(
    "LMI920",
    title="LMI on a GPU multi-model endpoint is not documented by AWS",
    why="SageMaker documents GPU multi-model endpoints for its Triton containers; DJL Serving implements the contract "
    "since 0.21.0, but AWS does not list LMI for GPU MME.",
    fix="Try the endpoint in a test account first, or use multi_model: inference_components.",
    example=Example(deployment_file={**_MME, "models": _SMALL}),
    level="warning",
    subject="multi-model",
)
def mme_undocumented(together: Together) -> Iterator[str]:
    if not _ic(together):
        yield (
            "SageMaker documents GPU multi-model endpoints for its Triton containers; DJL Serving implements the MME "
            "contract since 0.21.0 and LMI documents per-model serving.properties for it, but AWS does not list LMI "
            "for GPU MME: try the endpoint in a test account first, or use multi_model: inference_components"
        )


def fit_notes(together: Together) -> list[str]:
    """How much of the endpoint the models take (printed before deploying)."""
    instance, models = together.instance, together.models
    if not _ic(together):
        known = [m for m in models if m.config.resolved.memory is not None]
        unknown = [m.name for m in models if m.config.resolved.memory is None]
        used = sum(m.config.resolved.memory.total_gib for m in known)
        return [
            f"multi-model endpoint on {instance.name}: all {len(models)} models loaded take {used:.1f} of "
            f"{instance.memory_per_accelerator_gib:.1f} GiB per GPU"
            + (f" (not counted, no model facts: {', '.join(unknown)})" if unknown else "")
        ]
    count, memory = together.endpoint.instance_count, host_memory_mib(instance)
    used_acc = sum(m.accelerators * m.copies for m in models)
    used_mem = sum(m.memory_mib * m.copies for m in models)
    return [
        f"inference components on {instance.name} x{count}: {sum(m.copies for m in models)} copies use {used_acc} of "
        f"{instance.accelerator_count * count} {instance.accelerator_noun} and {used_mem / MIB_PER_GIB:.1f} of "
        f"{count * memory / MIB_PER_GIB:.1f} GiB usable host memory"
    ]
