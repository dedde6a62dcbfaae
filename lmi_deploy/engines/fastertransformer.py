"""FasterTransformer: NVIDIA's C++ kernels, in the djl-fastertransformer images 0.21.0-0.24.0 (T5 and decoder LLMs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmi_deploy.engines.base import Engine, EngineSpec, ImageLine, register
from lmi_deploy.rules.registry import Example, rule

if TYPE_CHECKING:
    from lmi_deploy.rules.derive import Derived
    from lmi_deploy.rules.view import View


# Request parameters (Hugging Face names) -> FasterTransformer ``pipeline_generate`` arguments and their types.
# From the fastertransformer wheel's t5model.py / gptmodel.py signatures (fact sheet §3).
_FT_COMMON: dict[str, tuple[str, str]] = {
    "num_beams": ("beam_width", "int"),
    "top_k": ("top_k", "int"),
    "top_p": ("top_p", "float"),
    "temperature": ("temperature", "float"),
    "repetition_penalty": ("repetition_penalty", "float"),
    "length_penalty": ("len_penalty", "float"),
    "min_length": ("min_length", "int"),
    "seed": ("random_seed", "int"),
}
FT_GENERATION_PARAMETERS: dict[str, dict[str, tuple[str, str]]] = {
    "t5": {
        **_FT_COMMON,
        "max_new_tokens": ("max_seq_len", "int"),
        "max_length": ("max_seq_len", "int"),
        "presence_penalty": ("presence_penalty", "float"),
        "diversity_rate": ("beam_search_diversity_rate", "float"),
    },
    "gpt": {**_FT_COMMON, "max_new_tokens": ("output_len", "int")},
}


@dataclass(frozen=True)
class FasterTransformer(EngineSpec):
    def generation_parameters(self, model_type: str) -> dict[str, tuple[str, str]]:
        return FT_GENERATION_PARAMETERS["t5" if model_type == "t5" else "gpt"]

    def implied_handler(self, version: str) -> str | None:
        return self.builtin_entry_point


SPEC = register(
    FasterTransformer(
        engine=Engine.FASTER_TRANSFORMER,
        images=(ImageLine("djl-fastertransformer", "0.21.0", "0.24.0"),),
        server_engine="FasterTransformer",
        builtin_entry_point="djl_python.fastertransformer",
        custom_template="fastertransformer_model.py.j2",
        rolling_batch=None,
        dtypes=("fp32", "fp16", "bf16", "int8"),
        # fastertransformer wheel: t5 covers T5 / Flan-T5 / Flan-UL2
        model_types=("t5", "gpt2", "gptj", "opt", "gpt_neox", "bloom"),
        summary="0.21.0-0.24.0",
        aliases=("faster-transformer", "faster_transformer", "ft"),
        encoder_decoder=True,
        partitionable=True,
        handler_marks=("fastertransformer",),
        recognition_order=1,
    )
)


@rule(
    "LMI403",
    title="int8 with T5 on FasterTransformer",
    why="FasterTransformer's T5 path refuses int8 weights.",
    fix="Use dtype=bf16 or dtype=fp32.",
    example=Example(settings={"dtype": "int8"}),
    concern="precision",
)
def t5_not_int8_on_ft(view: View, derived: Derived) -> Iterator[str]:
    if view.is_t5 and derived.dtype == "int8" and view.engine is Engine.FASTER_TRANSFORMER:
        yield "dtype='int8' is refused by FasterTransformer for T5 models: use dtype=bf16 or dtype=fp32"


@rule(
    "LMI710",
    title="FasterTransformer 0.23.0-0.24.0 built-in handler ignores max_new_tokens for T5",
    why="The built-in handler of those releases always generates 200 tokens for T5 models.",
    fix="Use handler=custom (lmi-deploy's model.py).",
    example=Example(settings={"lmi_version": "0.24.0", "handler": "builtin"}),
    level="warning",
    concern="handlers",
)
def ft_t5_builtin_bug(view: View, derived: Derived) -> Iterator[str]:
    builtin = view.handler_module() == "djl_python.fastertransformer" or view.handler == "builtin"
    if view.engine is Engine.FASTER_TRANSFORMER and builtin and view.is_t5 and view.version in ("0.23.0", "0.24.0"):
        yield (
            f"the built-in FasterTransformer handler of {view.version} ignores max_new_tokens for T5 (always 200): "
            "use handler=custom"
        )


@rule(
    "LMI711",
    title="FasterTransformer 0.23.0 answers a dynamic batch with the first request's output",
    why="The 0.23.0 built-in handler has a batch-offset bug.",
    fix="Prefer lmi_version 0.24.0.",
    example=Example(settings={"lmi_version": "0.23.0"}),
    level="warning",
    concern="handlers",
)
def ft_023_batch_bug(view: View, derived: Derived) -> Iterator[str]:
    if view.engine is Engine.FASTER_TRANSFORMER and view.version == "0.23.0":
        yield (
            "FasterTransformer 0.23.0's built-in handler answers every request of a dynamic batch with the first "
            "one's output: prefer 0.24.0"
        )
