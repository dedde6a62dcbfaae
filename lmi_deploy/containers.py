"""Catalog of LMI containers: which engine ships in which image, for which versions and regions.

Versions, tags and registries come from sagemaker-core's bundled ``image_uri_config`` (not a hand-kept list);
image URIs are resolved with ``sagemaker.core.image_uris``. Facts on engines are from the fact sheet
(``shared/reference/lmi-serving.md`` §0, §3, §5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import metadata
from typing import Any


class Engine(StrEnum):
    """LMI engines lmi-deploy can render for. Later engines join here with their catalog entry."""

    FASTER_TRANSFORMER = "FasterTransformer"


@dataclass(frozen=True)
class EngineSpec:
    engine: Engine
    sdk_framework: str  # the sagemaker-core image_uri_config file (framework name)
    builtin_entry_point: str
    model_types: tuple[str, ...]  # HF model_type values the engine can serve
    dtypes: tuple[str, ...]


ENGINES: dict[Engine, EngineSpec] = {
    Engine.FASTER_TRANSFORMER: EngineSpec(
        engine=Engine.FASTER_TRANSFORMER,
        sdk_framework="djl-fastertransformer",
        builtin_entry_point="djl_python.fastertransformer",
        # fastertransformer wheel: t5 covers T5 / Flan-T5 / Flan-UL2
        model_types=("t5", "gpt2", "gptj", "opt", "gpt_neox", "bloom"),
        dtypes=("fp32", "fp16", "bf16", "int8"),
    ),
}

# Names users type for engines (compared lower-case), including those of engines not rendered yet.
ENGINE_ALIASES: dict[str, Engine] = {
    "fastertransformer": Engine.FASTER_TRANSFORMER,
    "faster-transformer": Engine.FASTER_TRANSFORMER,
    "faster_transformer": Engine.FASTER_TRANSFORMER,
}
LATER_ENGINES = ("deepspeed", "accelerate", "lmi-dist", "vllm", "tensorrt-llm", "neuronx")


@cache
def _image_config(framework: str) -> dict[str, Any]:
    """sagemaker-core's bundled image config for one framework, read as data (importing the SDK takes seconds)."""
    path = metadata.distribution("sagemaker-core").locate_file(f"sagemaker/core/image_uri_config/{framework}.json")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def versions(engine: Engine) -> list[str]:
    """Container (DJL) versions that ship this engine, oldest first."""
    return sorted(_image_config(ENGINES[engine].sdk_framework)["versions"], key=version_key)


def regions(engine: Engine, version: str) -> list[str]:
    """Regions that host the engine's image at this version."""
    return sorted(_image_config(ENGINES[engine].sdk_framework)["versions"][version]["registries"])


def image_tag(engine: Engine, version: str) -> str:
    tag: str = _image_config(ENGINES[engine].sdk_framework)["versions"][version]["tag_prefix"]
    return tag


# ECR domains of the regions outside amazonaws.com, as sagemaker-core's ``common_utils.ALTERNATE_DOMAINS``.
_ALTERNATE_DOMAINS = {
    "cn-north-1": "amazonaws.com.cn",
    "cn-northwest-1": "amazonaws.com.cn",
    "eusc-de-east-1": "amazonaws.eu",
}


def image_uri(engine: Engine, version: str, region: str) -> str:
    """The LMI image URI for a region: ``{account}.dkr.ecr.{region}.{domain}/{repository}:{tag}``.

    Built from sagemaker-core's bundled image config exactly as ``sagemaker.core.image_uris.retrieve`` builds it
    (a test checks every engine x version x region against ``retrieve``); importing the SDK itself costs ~3 s of
    every synth.
    """
    entry = _image_config(ENGINES[engine].sdk_framework)["versions"][version]
    domain = _ALTERNATE_DOMAINS.get(region, "amazonaws.com")
    return f"{entry['registries'][region]}.dkr.ecr.{region}.{domain}/{entry['repository']}:{entry['tag_prefix']}"


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


def ft_generation_parameters(model_type: str) -> dict[str, tuple[str, str]]:
    """The request parameters a FasterTransformer model of this type accepts."""
    return FT_GENERATION_PARAMETERS["t5" if model_type == "t5" else "gpt"]
