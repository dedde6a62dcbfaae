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
