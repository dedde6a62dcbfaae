"""What every engine module declares: the engine's name, where it ships, what it renders and what it offers.

An engine module (``lmi_deploy/engines/<engine>.py``) holds one :class:`EngineSpec` (a subclass where the engine
renders or reads something of its own) and registers it with :func:`register`; the package's ``__init__`` imports
every module of the package, so :data:`ENGINES` always holds them all. This module imports nothing of lmi-deploy's
but the key catalog, so that the rule registry's view and derivations can read the specs without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Engine(StrEnum):
    """LMI engines lmi-deploy renders for (the names users type, compared case-insensitively)."""

    FASTER_TRANSFORMER = "FasterTransformer"
    DEEPSPEED = "DeepSpeed"
    DEEPSPEED_ROLLING = "DeepSpeed-rolling"
    ACCELERATE = "Accelerate"
    LMI_DIST = "lmi-dist"
    VLLM = "vLLM"
    TENSORRT_LLM = "TensorRT-LLM"
    NEURONX = "NeuronX"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class ImageLine:
    """A run of versions of one sagemaker-core image framework: ``first``..``last`` inclusive (``last=None``: all)."""

    framework: str
    first: str
    last: str | None = None


# Decoder-only families an engine with its own kernels serves (DeepSpeed's kernel injection covers these).
DECODER_TYPES = ("gpt2", "gpt_neo", "gptj", "opt", "gpt_neox", "bloom", "llama")

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

# Whether a release reads a serving.properties key: ``known_keys.reads``, passed in by the renderer.
Reads = Callable[[str, str], bool]
Properties = list[tuple[str, str]]


@dataclass(frozen=True)
class EngineSpec:
    """One engine: its catalog facts, and the hooks through which render, partition and the rules ask it."""

    engine: Engine
    images: tuple[ImageLine, ...]  # where the engine ships; the first line holding a version wins
    server_engine: str  # serving.properties ``engine=`` (DJL engine or alias)
    builtin_entry_point: str | None  # no-code handler; None: the server picks it (rolling batch)
    custom_template: str | None  # bring-your-own model.py template; None: no-code only
    rolling_batch: str | None
    dtypes: tuple[str, ...]
    model_types: tuple[str, ...] | None  # None: any model the backend's loader knows (decoder-only LLMs)
    summary: str  # the versions and what it is, as the `engine` setting's description lists it
    aliases: tuple[str, ...] = ()  # other names users type (lower-case)
    neuron: bool = False
    compiles_at_startup: bool = False  # TensorRT-LLM engines / Neuron graphs are built when the container starts
    compile_seconds: tuple[int, int] | None = None  # (per billion parameters, at least) of that build
    encoder_decoder: bool = False  # serves T5-style models
    partitionable: bool = False  # scripts/partition_model.py can partition/compile it ahead of time
    partition_reads_properties: bool = False  # the partition job runs the container's compiler on serving.properties
    multi_model: bool = False  # served as a model of a multi-model endpoint (inference components)
    serves_lora: bool = False  # LoRA adapters (option.enable_lora) from lmi_deploy.adapters.LORA_FIRST
    # Recognising an existing serving.properties: substrings of option.entryPoint naming its handler, values of
    # option.rolling_batch selecting it, and the order engines are tried in (lower first).
    handler_marks: tuple[str, ...] = ()
    rolling_batch_names: tuple[str, ...] = ()
    recognition_order: int = 100
    splits_any_core_count: bool = False  # TP any number of cores up to the instance's; pads heads to the degree
    offloads_to_host: bool = False  # the built-in handler loads with device_map=auto (host memory takes the rest)
    dtype_from_model: bool = False  # an unset dtype means the checkpoint's own (fp16 when it says none)
    # djl-serving properties classes (properties_manager/, as the key catalog names them) that the built-in handler
    # validates every file with, whatever the release: a value must pass each one's enum (LMI807). Empty: not
    # recorded, the values pooled over all of a release's classes apply.
    properties_classes: tuple[str, ...] = ()
    # Options of lmi-deploy's own handler (config field -> default), written as option.* with handler=custom.
    handler_options: Mapping[str, bool | str] = field(default_factory=dict)

    def generation_parameters(self, model_type: str) -> dict[str, tuple[str, str]]:
        """The request parameters our model.py for this engine accepts, and what they map to (custom handlers)."""
        return HF_GENERATION_PARAMETERS

    def entry_point(self, version: str) -> str | None:
        """The no-code handler module at this version (None: the server chooses)."""
        return self.builtin_entry_point

    def implied_handler(self, version: str) -> str | None:
        """The handler module the server runs for this engine when a file names none (None: not implied)."""
        return None

    def unset_dtype(self, bf16_supported: bool, version: str) -> tuple[str, str]:
        """What an unset option.dtype means to the handler (dtype, why); ``dtype_from_model`` engines aside."""
        return "fp32", "the handler's default"

    def length_properties(
        self, sequence: int, batch: int | None, version: str, custom: bool, reads: Reads
    ) -> Properties:
        """The serving.properties keys that size sequences and batches for this engine (``custom``: our model.py)."""
        return []

    def partitioned_properties(self) -> Properties:
        """Keys a deployment loading its ahead-of-time partitioned checkpoint adds."""
        return []

    def partition_command(self, tp: int, script: str, code_dir: str, output_dir: str) -> list[str]:
        """The partition job's command (``script``: our rendered partition.py)."""
        return ["python3", script]

    def partition_problem(self, version: str) -> str | None:
        """Why this version cannot be partitioned ahead of time (the engine is partitionable), or None."""
        return None

    def recognises(self, entry_point: str, server_engine: str, rolling_batch: str) -> bool:
        """Whether a serving.properties' option.entryPoint or engine= names this engine's handler (its
        option.rolling_batch, "" when unset, for an engine that shares another's handler)."""
        named = any(mark in entry_point for mark in self.handler_marks)
        return named or (server_engine == self.server_engine and server_engine not in ("Python", "MPI"))


def model_dtype(native: str | None) -> tuple[str, str]:
    """An unset dtype on an engine that loads the checkpoint as it is: its own half precision, else fp16."""
    if native in ("bf16", "fp16"):
        return native, f"the model's own dtype ({native})"
    return "fp16", "fp16"


@dataclass(frozen=True)
class ModelLenEngine(EngineSpec):
    """A rolling-batch engine sized by ``option.max_model_len`` where the release reads it (vLLM, lmi-dist: 0.26.0
    onward)."""

    def length_properties(
        self, sequence: int, batch: int | None, version: str, custom: bool, reads: Reads
    ) -> Properties:
        return [("option.max_model_len", str(sequence))] if reads("option.max_model_len", version) else []


ENGINES: dict[Engine, EngineSpec] = {}


def register(spec: EngineSpec) -> EngineSpec:
    """Add an engine module's spec to :data:`ENGINES` (in :class:`Engine` order, whatever the import order)."""
    if spec.engine in ENGINES:
        raise ValueError(f"engine {spec.engine.value} is registered twice")
    ENGINES[spec.engine] = spec
    ordered = sorted(ENGINES.values(), key=lambda s: list(Engine).index(s.engine))
    ENGINES.clear()
    ENGINES.update((s.engine, s) for s in ordered)
    return spec
