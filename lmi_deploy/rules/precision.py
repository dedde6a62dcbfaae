"""Precision: the dtype vs the engine, the model family and the accelerator's architecture."""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy.containers import Engine
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.estimates import NO_BF16
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View


@rule(
    "LMI401",
    title="dtype the engine does not support",
    why="lmi-deploy renders each engine only with the dtypes it has checked that engine serves.",
    fix="Use one of the dtypes the message lists.",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "dtype": "fp32"}),
    needs=("config",),
)
def dtype_supported(view: View, derived: Derived) -> Iterator[str]:
    assert view.spec is not None
    if derived.dtype is not None and derived.dtype not in view.spec.dtypes and derived.dtype != "auto":
        yield (
            f"dtype={derived.dtype!r} is not supported by {view.spec.engine.value}: use one of "
            f"{', '.join(view.spec.dtypes)}"
        )


@rule(
    "LMI402",
    title="fp16 with a T5 model",
    why="T5's activations overflow fp16 into NaN: the endpoint answers garbage.",
    fix="Use dtype=bf16 or dtype=fp32.",
    example=Example(settings={"engine": "accelerate", "dtype": "fp16"}),
)
def t5_not_fp16(view: View, derived: Derived) -> Iterator[str]:
    # In an existing file only FasterTransformer's T5 is refused: DJL's own tests run Flan-T5 in fp16 on lmi-dist.
    checked = view.source == "deployment" or view.engine is Engine.FASTER_TRANSFORMER
    if view.is_t5 and derived.dtype == "fp16" and checked:
        yield (
            "dtype='fp16' with T5 models gives garbage output (fp16 activations overflow into NaN): use dtype=bf16 "
            "or dtype=fp32"
        )


@rule(
    "LMI403",
    title="int8 with T5 on FasterTransformer",
    why="FasterTransformer's T5 path refuses int8 weights.",
    fix="Use dtype=bf16 or dtype=fp32.",
    example=Example(settings={"dtype": "int8"}),
)
def t5_not_int8_on_ft(view: View, derived: Derived) -> Iterator[str]:
    if view.is_t5 and derived.dtype == "int8" and view.engine is Engine.FASTER_TRANSFORMER:
        yield "dtype='int8' is refused by FasterTransformer for T5 models: use dtype=bf16 or dtype=fp32"


@rule(
    "LMI404",
    title="bf16 on a pre-Ampere GPU",
    why="T4 and V100 GPUs have no bf16 arithmetic; the engine fails or emulates it very slowly.",
    fix="Use fp16 (fp32 for T5), or an ml.g5/g6/p4d instance.",
    example=Example(settings={"engine": "accelerate", "dtype": "bf16", "instance_type": "ml.g4dn.12xlarge"}),
    needs=("instance",),
)
def bf16_needs_ampere(view: View, derived: Derived) -> Iterator[str]:
    assert view.instance is not None
    if derived.dtype == "bf16" and view.instance.accelerator in NO_BF16:
        yield (
            f"dtype='bf16' needs an Ampere or newer GPU, but {view.instance.name} has {view.instance.accelerator}s: "
            "use fp16 (fp32 for T5) or an ml.g5/g6/p4d instance"
        )


@rule(
    "LMI405",
    title="bf16 on NeuronX before 0.24.0",
    why="The 0.22.1-0.23.0 Transformers-NeuronX handler takes fp32 and fp16 only.",
    fix="Use lmi_version 0.24.0 or later, or fp16.",
    example=Example(
        settings={
            "engine": "neuronx",
            "lmi_version": "0.23.0",
            "model_id": "facebook/opt-1.3b",
            "dtype": "bf16",
            "instance_type": "ml.inf2.xlarge",
        }
    ),
)
def neuronx_bf16_version(view: View, derived: Derived) -> Iterator[str]:
    if derived.dtype == "bf16" and view.engine is Engine.NEURONX and not view.at_least("0.24.0"):
        yield "dtype='bf16' on NeuronX needs lmi_version 0.24.0 or later (0.22.1-0.23.0: fp32, fp16)"
