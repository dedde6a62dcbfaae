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

from lmi_deploy import key_catalog


class Engine(StrEnum):
    """LMI engines lmi-deploy renders for (the names users type, compared case-insensitively)."""

    FASTER_TRANSFORMER = "FasterTransformer"
    DEEPSPEED = "DeepSpeed"
    ACCELERATE = "Accelerate"
    LMI_DIST = "lmi-dist"
    VLLM = "vLLM"
    TENSORRT_LLM = "TensorRT-LLM"
    NEURONX = "NeuronX"


@dataclass(frozen=True)
class ImageLine:
    """A run of versions of one sagemaker-core image framework: ``first``..``last`` inclusive (``last=None``: all)."""

    framework: str
    first: str
    last: str | None = None


@dataclass(frozen=True)
class EngineSpec:
    engine: Engine
    images: tuple[ImageLine, ...]  # where the engine ships; the first line holding a version wins
    server_engine: str  # serving.properties ``engine=`` (DJL engine or alias)
    builtin_entry_point: str | None  # no-code handler; None: the server picks it (rolling batch)
    custom_template: str | None  # bring-your-own model.py template; None: no-code only
    rolling_batch: str | None
    dtypes: tuple[str, ...]
    model_types: tuple[str, ...] | None  # None: any model the backend's loader knows (decoder-only LLMs)
    neuron: bool = False
    compiles_at_startup: bool = False  # TensorRT-LLM engines / Neuron graphs are built when the container starts
    encoder_decoder: bool = False  # serves T5-style models


_DECODER_TYPES = ("gpt2", "gpt_neo", "gptj", "opt", "gpt_neox", "bloom", "llama")

ENGINES: dict[Engine, EngineSpec] = {
    Engine.FASTER_TRANSFORMER: EngineSpec(
        engine=Engine.FASTER_TRANSFORMER,
        images=(ImageLine("djl-fastertransformer", "0.21.0", "0.24.0"),),
        server_engine="FasterTransformer",
        builtin_entry_point="djl_python.fastertransformer",
        custom_template="fastertransformer_model.py.j2",
        rolling_batch=None,
        dtypes=("fp32", "fp16", "bf16", "int8"),
        # fastertransformer wheel: t5 covers T5 / Flan-T5 / Flan-UL2
        model_types=("t5", "gpt2", "gptj", "opt", "gpt_neox", "bloom"),
        encoder_decoder=True,
    ),
    Engine.DEEPSPEED: EngineSpec(
        engine=Engine.DEEPSPEED,
        images=(ImageLine("djl-deepspeed", "0.19.0", "0.27.0"),),
        server_engine="DeepSpeed",
        builtin_entry_point="djl_python.deepspeed",
        custom_template="deepspeed_model.py.j2",
        rolling_batch=None,
        dtypes=("fp16", "bf16", "fp32", "int8"),
        # kernel injection (what makes DeepSpeed TP fast) covers these decoder-only families
        model_types=_DECODER_TYPES,
    ),
    Engine.ACCELERATE: EngineSpec(
        engine=Engine.ACCELERATE,
        images=(ImageLine("djl-deepspeed", "0.19.0", "0.27.0"), ImageLine("djl-lmi", "0.28.0")),
        server_engine="Python",
        builtin_entry_point="djl_python.huggingface",
        custom_template="accelerate_model.py.j2",
        rolling_batch=None,
        dtypes=("fp32", "fp16", "bf16"),
        model_types=None,
        encoder_decoder=True,
    ),
    Engine.LMI_DIST: EngineSpec(
        engine=Engine.LMI_DIST,
        images=(ImageLine("djl-deepspeed", "0.23.0", "0.27.0"), ImageLine("djl-lmi", "0.28.0", "0.32.0")),
        server_engine="MPI",
        builtin_entry_point=None,
        custom_template=None,
        rolling_batch="lmi-dist",
        dtypes=("fp16", "bf16"),
        model_types=None,
        # T5 too: 0.23's rolling_batch=auto picks lmi-dist for T5 under MPI; DJL tests flan-t5-xxl on it
        encoder_decoder=True,
    ),
    Engine.VLLM: EngineSpec(
        engine=Engine.VLLM,
        images=(ImageLine("djl-deepspeed", "0.23.0", "0.27.0"), ImageLine("djl-lmi", "0.28.0")),
        server_engine="Python",
        builtin_entry_point=None,
        custom_template=None,
        rolling_batch="vllm",
        dtypes=("fp16", "bf16"),
        model_types=None,
    ),
    Engine.TENSORRT_LLM: EngineSpec(
        engine=Engine.TENSORRT_LLM,
        images=(ImageLine("djl-tensorrtllm", "0.25.0", "0.33.0"),),
        server_engine="MPI",
        builtin_entry_point=None,
        custom_template=None,
        rolling_batch="trtllm",
        dtypes=("fp16", "bf16"),
        model_types=None,
        compiles_at_startup=True,
    ),
    Engine.NEURONX: EngineSpec(
        engine=Engine.NEURONX,
        images=(ImageLine("djl-neuronx", "0.22.1", "0.29.0"),),
        server_engine="Python",
        builtin_entry_point="djl_python.transformers_neuronx",  # "transformers-neuronx" before 0.24.0
        custom_template=None,
        rolling_batch=None,
        dtypes=("fp32", "fp16", "bf16"),
        model_types=("opt", "gpt2", "gptj", "gpt_neox", "llama", "bloom"),
        neuron=True,
        compiles_at_startup=True,
    ),
}

# Engines whose checkpoint lmi-deploy can partition/compile ahead of time (lmi_deploy.partition).
PARTITIONABLE = (Engine.FASTER_TRANSFORMER, Engine.DEEPSPEED, Engine.TENSORRT_LLM)

# Names users type for engines (compared lower-case).
ENGINE_ALIASES: dict[str, Engine] = {
    **{e.value.lower(): e for e in Engine},
    "faster-transformer": Engine.FASTER_TRANSFORMER,
    "faster_transformer": Engine.FASTER_TRANSFORMER,
    "ft": Engine.FASTER_TRANSFORMER,
    "ds": Engine.DEEPSPEED,
    "huggingface": Engine.ACCELERATE,
    "hf-accelerate": Engine.ACCELERATE,
    "python": Engine.ACCELERATE,
    "lmi_dist": Engine.LMI_DIST,
    "lmidist": Engine.LMI_DIST,
    "mpi": Engine.LMI_DIST,
    "trtllm": Engine.TENSORRT_LLM,
    "tensorrt_llm": Engine.TENSORRT_LLM,
    "tensorrtllm": Engine.TENSORRT_LLM,
    "trt-llm": Engine.TENSORRT_LLM,
    "transformers-neuronx": Engine.NEURONX,
    "transformers_neuronx": Engine.NEURONX,
    "neuron": Engine.NEURONX,
}


@cache
def _image_config(framework: str) -> dict[str, Any]:
    """sagemaker-core's bundled image config for one framework, read as data (importing the SDK takes seconds)."""
    path = metadata.distribution("sagemaker-core").locate_file(f"sagemaker/core/image_uri_config/{framework}.json")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _image_line(engine: Engine, version: str) -> ImageLine | None:
    for line in ENGINES[engine].images:
        known = _image_config(line.framework)["versions"]
        in_range = version_key(line.first) <= version_key(version) and (
            line.last is None or version_key(version) <= version_key(line.last)
        )
        if version in known and in_range:
            return line
    return None


def versions(engine: Engine) -> list[str]:
    """Container (DJL) versions that ship this engine, oldest first (from sagemaker-core's image config)."""
    found = {
        version
        for line in ENGINES[engine].images
        for version in _image_config(line.framework)["versions"]
        if _image_line(engine, version) is line
    }
    return sorted(found, key=version_key)


def framework(engine: Engine, version: str) -> str:
    """The sagemaker-core image framework (``djl-lmi``, ``djl-deepspeed``, ...) that ships engine at version."""
    line = _image_line(engine, version)
    if line is None:
        raise KeyError(f"{engine.value} does not ship in {version}")
    return line.framework


def engines_in(version: str) -> list[Engine]:
    """Engines that ship in some container at this version."""
    return [engine for engine in Engine if _image_line(engine, version) is not None]


def regions(engine: Engine, version: str) -> list[str]:
    """Regions that host the engine's image at this version."""
    return sorted(_image_config(framework(engine, version))["versions"][version]["registries"])


def image_tag(engine: Engine, version: str) -> str:
    tag: str = _image_config(framework(engine, version))["versions"][version]["tag_prefix"]
    return tag


# ECR domains of the regions outside amazonaws.com, as sagemaker-core's ``common_utils.ALTERNATE_DOMAINS``.
_ALTERNATE_DOMAINS = {
    "cn-north-1": "amazonaws.com.cn",
    "cn-northwest-1": "amazonaws.com.cn",
    "us-iso-east-1": "c2s.ic.gov",
    "us-iso-west-1": "c2s.ic.gov",
    "us-isob-east-1": "sc2s.sgov.gov",
    "us-isob-west-1": "sc2s.sgov.gov",
    "us-isof-south-1": "csp.hci.ic.gov",
    "us-isof-east-1": "csp.hci.ic.gov",
    "eu-isoe-west-1": "cloud.adc-e.uk",
    "eusc-de-east-1": "amazonaws.eu",
}


def image_uri(engine: Engine, version: str, region: str) -> str:
    """The LMI image URI for a region: ``{account}.dkr.ecr.{region}.{domain}/{repository}:{tag}``.

    Built from sagemaker-core's bundled image config exactly as ``sagemaker.core.image_uris.retrieve`` builds it
    (a test checks every engine x version x region against ``retrieve``); importing the SDK itself costs ~3 s of
    every synth.
    """
    entry = _image_config(framework(engine, version))["versions"][version]
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


# Request parameters -> transformers ``generate`` arguments (Accelerate and DeepSpeed handlers); seed is applied
# with torch.manual_seed rather than passed.
HF_GENERATION_PARAMETERS: dict[str, tuple[str, str]] = {
    name: (name, kind)
    for name, kind in {
        "max_new_tokens": "int",
        "min_new_tokens": "int",
        "do_sample": "bool",
        "temperature": "float",
        "top_k": "int",
        "top_p": "float",
        "num_beams": "int",
        "repetition_penalty": "float",
        "length_penalty": "float",
        "no_repeat_ngram_size": "int",
        "seed": "int",
    }.items()
}


def generation_parameters(engine: Engine, model_type: str) -> dict[str, tuple[str, str]]:
    """The request parameters a custom handler for this engine and model family accepts, and what they map to."""
    if engine is Engine.FASTER_TRANSFORMER:
        return FT_GENERATION_PARAMETERS["t5" if model_type == "t5" else "gpt"]
    return HF_GENERATION_PARAMETERS


# ---- version-specific serving.properties facts (fact sheet §0, §1, §8) ----


def entry_point(engine: Engine, version: str) -> str | None:
    """The no-code handler module for this engine at this version (None: the server chooses)."""
    entry = ENGINES[engine].builtin_entry_point
    if engine is Engine.NEURONX and version_key(version) < (0, 24, 0):
        return "djl_python.transformers-neuronx"  # renamed with an underscore in 0.24.0
    return entry


def server_engine(engine: Engine, version: str) -> str:
    """serving.properties ``engine=``: the engine's DJL name, where this version's server knows it."""
    name = ENGINES[engine].server_engine
    return name if name in server_engines(version) else "Python"


def weights_key(version: str) -> str:
    """``option.s3url`` where the server downloads S3 weights named by it (0.20-0.26, as the seed writes before
    0.23); ``option.model_id`` otherwise (0.19.0 reads no s3url at all)."""
    old_key = version_key(version) < (0, 23, 0) and key_catalog.upstream_reads("option.s3url", version)
    return "option.s3url" if old_key else "option.model_id"


def dtype_key(version: str) -> str | None:
    """The key a built-in handler of this version reads the dtype from (``data_type`` on 0.19.0), if any."""
    return next((key for key in ("option.dtype", "option.data_type") if key_catalog.upstream_reads(key, version)), None)


def rolling_batch_values(version: str) -> tuple[str, ...]:
    """``option.rolling_batch`` values this version accepts (its RollingBatchEnum; empty before 0.23)."""
    return key_catalog.allowed_values("option.rolling_batch", version) or ()


def rolling_batch_present_means_on(version: str) -> bool:
    """0.23-0.26 turn rolling batch on whenever the key is present, even as ``disable``: omit it there."""
    return (0, 23, 0) <= version_key(version) < (0, 27, 0)


def accepts_tp_max(version: str) -> bool:
    """``option.tensor_parallel_degree=max`` parses from 0.24.0 (earlier: Integer.parseInt fails)."""
    return version_key(version) >= (0, 24, 0)


def server_engines(version: str) -> tuple[str, ...]:
    """Values of ``engine=`` this version's server knows (the engine names djl-serving's providers register)."""
    return key_catalog.allowed_values("engine", version) or ("Python",)


# Options of lmi-deploy's own Accelerate handler: config field -> default. DJL hands every option.* key to the
# handler's properties, so these travel in serving.properties like the container's own keys.
HANDLER_OPTIONS: dict[str, bool | str] = {
    "kv_cache": "static",
    "cuda_graphs": True,
    "compile": True,
    "fuse_projections": True,
    "fast_load": True,
}


def all_versions() -> list[str]:
    """Every LMI/DJL version that has some container."""
    return sorted({v for e in Engine for v in versions(e)}, key=version_key)
