"""The one view every rule runs on, whatever the source: a typed deployment config, or an existing
serving.properties read with its container tag, instance type and the model's config.json.

Fields a source cannot give are None; rules that need them are skipped with a warning naming the missing fact
(``needs`` in the registry). Reading a serving.properties into this view lives in ``properties_view``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from lmi_deploy.engines.base import ENGINES, Engine, EngineSpec, version_key
from lmi_deploy.instances import InstanceType
from lmi_deploy.model_facts import ModelFacts

if TYPE_CHECKING:
    from lmi_deploy.rules.registry import Fact

Source = Literal["deployment", "serving.properties"]
TensorParallel = int | Literal["auto", "max"] | None


class Entry(NamedTuple):
    """One serving.properties line as java.util.Properties reads it."""

    line: int
    key: str
    value: str


def server_disables_rolling_batch(values: Mapping[str, str], version: str) -> bool:
    """Whether the server writes option.rolling_batch=disable itself, whatever the file says: ``batch_size`` > 1 from
    0.28.0 (``LmiConfigRecommender.setRollingBatch``: "If dynamic batch is enabled, we don't enable rolling batch",
    run for every model from ``LmiUtils.configureLmiModel``), or on 0.27.0, which runs it only when it infers the
    engine (no ``engine=``)."""
    size = values.get("batch_size", "").strip()
    if not size.isdigit() or int(size) <= 1:
        return False
    return version_key(version) >= (0, 28, 0) or (version_key(version) >= (0, 27, 0) and not values.get("engine"))


@dataclass(frozen=True)
class View:
    source: Source
    version: str
    engine: Engine | None  # lmi-deploy's name for the serving backend; None: cannot tell
    server_engine: str | None  # engine= (None: unset, the server infers it)
    entry_point: str | None  # option.entryPoint (None: the server's default, or a model.py)
    rolling_batch: str | None  # option.rolling_batch as written (None: unset)
    instance_type: str | None
    instance: InstanceType | None
    model_id: str
    model_type: str  # HF model_type, "" when unknown
    facts: ModelFacts | None
    facts_note: str
    dtype: str | None  # as asked: a dtype, "auto" (derived) or None (unset: the engine's default)
    tensor_parallel: TensorParallel
    max_sequence_length: int | None
    max_batch_size: int | None
    handler: Literal["custom", "builtin"] | None  # None: cannot tell (a serving.properties may ship a model.py)
    partitioned: bool
    weights_delivery: str
    download_timeout: int | Literal["auto"] | None
    startup_timeout: int | Literal["auto"] | None
    model_loading_timeout: int | None
    reserved_memory_mb: int | None  # gpu.reserved_memory_mb
    volume_size_gb: int | None
    properties: tuple[Entry, ...] = ()
    config: Any = None  # the DeploymentConfig (deployment source only)
    rolling: bool = False  # a rolling batch pages the KV cache (vLLM, lmi-dist, TensorRT-LLM, scheduler, ...)
    bytes_per_parameter: float | None = None  # quantized weights (option.quantize, AWQ/GPTQ checkpoints); None: dtype
    image_tag: str = ""  # the container's tag when given (``0.26.0-deepspeed0.12.6-cu121``); "" for a bare version

    @property
    def spec(self) -> EngineSpec | None:
        return ENGINES[self.engine] if self.engine is not None else None

    @property
    def is_t5(self) -> bool:
        return self.model_type in ("t5", "mt5", "umt5") or (self.facts is not None and self.facts.is_encoder_decoder)

    @property
    def values(self) -> dict[str, str]:
        return {entry.key: entry.value for entry in self.properties}

    def handler_module(self) -> str | None:
        """The handler module the server runs for this view: option.entryPoint, else the release's default (None: a
        custom model.py, or a file that leaves it to the server and its container)."""
        if self.entry_point:
            return self.entry_point
        if self.server_engine == "DeepSpeed" and not self.at_least("0.28.0"):
            return "djl_python.deepspeed"
        implied = self.spec.implied_handler(self.version) if self.spec is not None else None
        if implied is not None:
            return implied
        return "djl_python.huggingface" if self.source == "serving.properties" else None

    def dynamic_batch(self) -> int:
        """The batch_size the Python handler reads: ``batch_size``, or ``option.batch_size`` (the prefix stripped)."""
        sizes = [self.values.get(key, "") for key in ("batch_size", "option.batch_size")]
        return max((int(size) for size in sizes if size.strip().isdigit()), default=1)

    def written(self, key: str) -> str | None:
        """A serving.properties key as the file, or the deployment's extra_properties, writes it."""
        if self.source == "serving.properties":
            return self.values.get(key)
        extra: dict[str, str] = self.config.extra_properties if self.config is not None else {}
        return extra.get(key)

    def at_least(self, version: str) -> bool:
        return version_key(self.version) >= version_key(version)

    def known(self, fact: Fact) -> bool:
        """Whether the view holds what a rule needs."""
        facts = self.facts
        known: dict[str, bool] = {
            "instance": self.instance is not None,
            "engine": self.engine is not None,
            "heads": facts is not None and facts.attention_heads is not None and facts.kv_heads is not None,
            "parameters": facts is not None and facts.parameters is not None,
            "kv": facts is not None and facts.kv_cache_bytes_per_token("fp16") is not None,
            "positions": facts is not None and facts.max_positions is not None,
            "config": self.config is not None,
            "properties": self.source == "serving.properties",
            "startup_timeout": isinstance(self.startup_timeout, int),
        }
        return known[fact]
