"""Engine vs hardware: GPU engines on GPUs, NeuronX on Inferentia/Trainium, and what the GPU has left to give."""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View


@rule(
    "LMI201",
    title="NeuronX on a GPU instance",
    why="Transformers-NeuronX compiles for NeuronCores; on a GPU instance the container finds no Neuron device.",
    fix="Use an ml.inf2 or ml.trn1 instance.",
    example=Example(settings={"engine": "neuronx", "model_id": "meta-llama/Llama-2-7b-hf"}),
    needs=("engine", "instance"),
    gate=True,
)
def neuronx_on_gpu(view: View, derived: Derived) -> Iterator[str]:
    assert view.spec is not None and view.instance is not None
    if view.spec.neuron and not view.instance.is_neuron:
        yield (
            f"engine NeuronX runs on AWS Inferentia2/Trainium, but {view.instance.name} has "
            f"{view.instance.accelerator} GPUs: use an ml.inf2 or ml.trn1 instance"
        )


@rule(
    "LMI202",
    title="A GPU engine on Inferentia/Trainium",
    why="vLLM, lmi-dist, TensorRT-LLM, DeepSpeed, FasterTransformer and Accelerate need CUDA; an inf2/trn1 instance "
    "has "
    "none, so the model never loads.",
    fix="Use engine=NeuronX (Transformers-NeuronX), or a GPU instance.",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/llama-2-7b/\noption.rolling_batch=vllm\n"
        "option.tensor_parallel_degree=2\noption.model_loading_timeout=1200\n",
        container="0.28.0",
        instance_type="ml.inf2.8xlarge",
    ),
    needs=("engine", "instance"),
    gate=True,
)
def gpu_engine_on_neuron(view: View, derived: Derived) -> Iterator[str]:
    assert view.spec is not None and view.instance is not None
    if not view.spec.neuron and view.instance.is_neuron:
        yield (
            f"engine {view.spec.engine.value} needs NVIDIA GPUs, but {view.instance.name} has "
            f"{view.instance.accelerator} NeuronCores: use engine=NeuronX, or a GPU instance (ml.g5, ml.g6, ml.p4d, "
            "...)"
        )


@rule(
    "LMI203",
    title="gpu.reserved_memory_mb is as large as the GPU",
    why="DJL Serving keeps this much of each GPU for itself; reserving all of it leaves nothing for the model.",
    fix="Lower gpu.reserved_memory_mb well below the GPU's memory, or remove it.",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/model/\ngpu.reserved_memory_mb=30000\n"
        "option.model_loading_timeout=1200\n",
        container="0.28.0",
        instance_type="ml.g5.2xlarge",
    ),
    needs=("instance",),
)
def reserved_memory_exceeds_gpu(view: View, derived: Derived) -> Iterator[str]:
    assert view.instance is not None
    reserved = view.reserved_memory_mb
    per_gpu_mib = view.instance.memory_per_accelerator_gib * 1024
    if reserved is not None and not view.instance.is_neuron and reserved >= per_gpu_mib:
        yield (
            f"gpu.reserved_memory_mb={reserved} is not less than the {per_gpu_mib:.0f} MiB of each "
            f"{view.instance.accelerator} on {view.instance.name}: nothing would be left for the model; lower it"
        )
