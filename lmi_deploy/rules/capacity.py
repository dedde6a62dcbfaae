"""Capacity: sequence length vs the model, weights + KV cache vs accelerator memory, and the instance's volume."""

from __future__ import annotations

import math
from collections.abc import Iterator

from lmi_deploy import instances
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.estimates import weights_gb
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View

LARGE_WEIGHTS_GB = 30e9


@rule(
    "LMI501",
    title="max_sequence_length beyond the model's positions",
    why="A model cannot attend past its position embeddings; the engine refuses or the output degrades.",
    fix="Use at most the model's max_position_embeddings.",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "max_sequence_length": "8192"}),
    needs=("positions",),
)
def sequence_within_positions(view: View, derived: Derived) -> Iterator[str]:
    assert view.facts is not None and view.facts.max_positions is not None
    limit = view.facts.max_positions
    if view.max_sequence_length and view.max_sequence_length > limit:
        yield (
            f"max_sequence_length={view.max_sequence_length} exceeds the model's {limit} positions: use at most {limit}"
        )


@rule(
    "LMI502",
    title="The model does not fit the accelerators' memory",
    why="Weights, KV cache and runtime overhead per accelerator must fit its memory, or the load fails with out of "
    "memory after the instance is paid for.",
    fix="Raise tensor_parallel_degree, use a larger instance, or lower the batch, sequence length or dtype.",
    example=Example(
        settings={
            "engine": "accelerate",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "tensor_parallel_degree": "1",
            "dtype": "fp16",
            "max_sequence_length": "4096",
        }
    ),
    needs=("instance", "parameters"),
)
def memory_fits(view: View, derived: Derived) -> Iterator[str]:
    memory, instance, tp = derived.memory, view.instance, derived.tensor_parallel_degree
    if memory is None or memory.fits or instance is None or tp is None:
        return
    offloads = (
        view.source == "serving.properties"
        and view.spec is not None
        and view.spec.offloads_to_host
        and not view.rolling
    )
    host = instances.host_memory_gib(instance.name) or 0
    if offloads and memory.weights_gib * tp <= instance.accelerator_count * memory.usable_gib + host:
        return  # the built-in Accelerate handler loads with device_map=auto: what the GPUs lack goes to host memory
    larger = [str(d) for d in instance.valid_tensor_parallel_degrees() if d > tp]
    hint = f"raise tensor_parallel_degree to {' or '.join(larger)}" if larger else "use a larger instance"
    estimate = " (the size is an estimate from the model id)" if view.facts and view.facts.estimated else ""
    yield (
        f"{view.model_id} in {derived.dtype} does not fit {instance.name} at TP{tp}{estimate}: needs "
        f"{memory.total_gib:.1f} GiB per {instance.accelerator_noun[:-1]}, has {memory.usable_gib:.1f} GiB; {hint}, or "
        "lower max_batch_size/max_sequence_length or the dtype"
    )


@rule(
    "LMI503",
    title="volume_size_gb on an instance family with instance storage",
    why="SageMaker refuses VolumeSizeInGB where the instance brings NVMe storage.",
    fix="Leave volume_size_gb unset.",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "volume_size_gb": "100"}),
    needs=("config", "instance"),
)
def volume_supported(view: View, derived: Derived) -> Iterator[str]:
    assert view.instance is not None
    if view.volume_size_gb is not None and not view.instance.supports_volume_size:
        yield (
            f"volume_size_gb={view.volume_size_gb} is refused by SageMaker on {view.instance.name}: the "
            f"{view.instance.family} family uses instance storage; leave volume_size_gb unset"
        )


@rule(
    "LMI504",
    title="volume_size_gb too small for the weights",
    why="The container downloads the weights to the volume; a full disk fails the download.",
    fix="Raise volume_size_gb to the size the message gives.",
    example=Example(
        settings={
            "engine": "vllm",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "instance_type": "ml.p3.8xlarge",
            "dtype": "fp16",
            "volume_size_gb": "5",
        }
    ),
    needs=("config", "instance", "parameters"),
)
def volume_holds_weights(view: View, derived: Derived) -> Iterator[str]:
    assert view.instance is not None and view.facts is not None
    if view.volume_size_gb is None or not view.instance.supports_volume_size:
        return
    need_gb = math.ceil(weights_gb(view.facts) * 1.1) + 10
    if view.volume_size_gb < need_gb:
        yield (
            f"volume_size_gb={view.volume_size_gb} cannot hold the weights: needs at least {need_gb} GB (weights + "
            "10% + 10 GB for the container); raise volume_size_gb"
        )


@rule(
    "LMI505",
    title="Large weights on the default volume",
    why="The LMI guidance is to raise the volume above the model's size on families with EBS volumes.",
    fix="Set volume_size_gb above the weights' size.",
    example=Example(settings={"engine": "vllm", "model_id": "acme/model-20b", "instance_type": "ml.p3.16xlarge"}),
    level="warning",
    needs=("config", "instance", "parameters"),
)
def large_weights_volume(view: View, derived: Derived) -> Iterator[str]:
    assert view.instance is not None and view.facts is not None
    size = weights_gb(view.facts)
    if view.volume_size_gb is None and view.instance.supports_volume_size and size > LARGE_WEIGHTS_GB / 1e9:
        yield (
            f"{size:.0f} GB of weights on {view.instance.name} without volume_size_gb: the LMI guidance is to raise "
            "the volume above the model size"
        )
