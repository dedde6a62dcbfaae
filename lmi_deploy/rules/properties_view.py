"""An existing serving.properties read into the same :class:`View` the typed config produces.

The engine is told from what the release reads: ``engine=``, ``option.rolling_batch``, ``option.entryPoint`` and
the container tag (``...-tensorrtllm...``, ``...-neuronx...``), as djl-serving's ``PyModel`` picks the handler.
"""

from __future__ import annotations

from typing import Literal

from lmi_deploy import instances
from lmi_deploy.containers import ENGINES, Engine, version_key
from lmi_deploy.instances import InstanceType
from lmi_deploy.model_facts import ModelFacts, model_type_from_name
from lmi_deploy.rules.view import Entry, View, server_disables_rolling_batch

# option.rolling_batch values that name an engine (each engine module lists its own)
_BY_ROLLING_BATCH = {name: spec.engine for spec in ENGINES.values() for name in spec.rolling_batch_names}


def parse_properties(text: str) -> list[Entry]:
    """(line number, key, value) as java.util.Properties reads them: the value keeps trailing spaces and ``#``."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith(("#", "!")):
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut < 0:
            key, value = line.rstrip(), ""
        else:
            key, value = line[:cut].rstrip(), line[cut + 1 :].lstrip()
        entries.append(Entry(number, key, value))
    return entries


def _engine_from_handler(entry: str, server: str, rolling: str = "") -> Engine | None:
    """The engine whose handler option.entryPoint names, or whose own engine= value the file sets."""
    for spec in sorted(ENGINES.values(), key=lambda s: s.recognition_order):
        if spec.recognises(entry, server, rolling):
            return spec.engine
    return None


def _lmi_image(version: str, tag: str) -> bool:
    """The 0.28+ ``lmi`` image, whose server turns rolling batch on (auto) when the file leaves it unset."""
    return version_key(version) >= (0, 28, 0) and not any(name in tag for name in ("neuronx", "tensorrtllm"))


def _rolling_engine(rolling: str, server: str, version: str, tag: str) -> Engine:
    """What ``auto`` (or, on the lmi image, nothing) picks: lmi-dist under MPI or on the lmi image (vLLM from 0.33,
    when lmi-dist left), else the Accelerate handler's own scheduler."""
    if _lmi_image(version, tag):
        return Engine.VLLM if version_key(version) >= (0, 33, 0) else Engine.LMI_DIST
    return Engine.LMI_DIST if server == "MPI" else Engine.ACCELERATE


def infer_engine(
    values: dict[str, str], version: str, tag: str, instance: InstanceType | None, has_model_py: bool = False
) -> Engine | None:
    """lmi-deploy's engine for what this file asks of this container; None when the file does not say."""
    entry, server = values.get("option.entryPoint", ""), values.get("engine", "")
    if has_model_py and not entry:  # DJL runs a model.py beside the file before any default handler
        # MPI: lmi-deploy's Accelerate handler runs tensor-parallel under it (lmi_deploy.mpi_mode)
        return _engine_from_handler("", server) or (Engine.ACCELERATE if server in ("", "Python", "MPI") else None)
    rolling = values.get("option.rolling_batch", "")
    tag = tag.lower()
    if "neuronx" in tag or (instance is not None and instance.is_neuron and not rolling and not entry):
        return Engine.NEURONX
    if "tensorrtllm" in tag and not entry:
        return Engine.TENSORRT_LLM
    by_handler = _engine_from_handler(entry, server, rolling)
    if by_handler is not None:
        return by_handler
    if rolling in _BY_ROLLING_BATCH:
        return _BY_ROLLING_BATCH[rolling]
    if entry and entry != "djl_python.huggingface":
        return None  # a model.py of the user's own: any backend
    if rolling == "auto" or (not rolling and not entry and _lmi_image(version, tag)):
        # batch_size > 1: the server writes rolling_batch=disable, so djl_python.huggingface serves without one
        forced = server_disables_rolling_batch(values, version)
        return Engine.ACCELERATE if forced else _rolling_engine(rolling, server, version, tag)
    return Engine.ACCELERATE


_FOUR_BIT = (
    "awq",
    "gptq",
    "squeezellm",
    "bitsandbytes",
    "bitsandbytes4",
    "aqlm",
    "marlin",
    "gptq_marlin",
    "awq_marlin",
)
_EIGHT_BIT = ("smoothquant", "dynamic_int8", "bitsandbytes8", "int8", "fp8", "static_int8", "llm_int8")


def bytes_per_parameter(values: dict[str, str], model_id: str) -> float | None:
    """Weights smaller than the dtype: option.quantize, or a pre-quantized checkpoint named so (AWQ, GPTQ, 4bit)."""
    quantize = values.get("option.quantize", "").lower()
    if quantize in _FOUR_BIT or values.get("option.load_in_4bit", "").lower() == "true":
        return 0.5
    if quantize in _EIGHT_BIT or values.get("option.load_in_8bit", "").lower() == "true":
        return 1.0
    name = model_id.rsplit("/", 1)[-1].lower()
    return 0.5 if any(mark in name for mark in ("awq", "gptq", "4bit", "int4")) else None


def _rolling(engine: Engine | None, values: dict[str, str], version: str) -> bool:
    if "async_service" in values.get("option.entryPoint", ""):
        return True  # vLLM/TensorRT-LLM async mode: the engine pages the KV cache itself
    if server_disables_rolling_batch(values, version):
        return False  # batch_size > 1: the server writes rolling_batch=disable whatever the file says
    value = values.get("option.rolling_batch")
    if value is not None:
        return value != "disable"
    return engine is not None and ENGINES[engine].rolling_batch is not None


def _int(values: dict[str, str], *keys: str) -> int | None:
    for key in keys:
        value = values.get(key, "")
        if value.isdigit():
            return int(value)
    return None


def _batch_size(values: dict[str, str], rolling: bool) -> int | None:
    """The most sequences at once: option.max_rolling_batch_size, which only a rolling batch reads, then the dynamic
    batch."""
    return _int(values, *(("option.max_rolling_batch_size",) if rolling else ()), "batch_size", "option.batch_size")


def _sequence(values: dict[str, str]) -> int | None:
    given = _int(values, "option.max_model_len", "option.max_seq_len", "option.n_positions", "option.max_tokens")
    if given is not None:
        return given
    inputs, outputs = _int(values, "option.max_input_len"), _int(values, "option.max_output_len")
    return inputs + outputs if inputs is not None and outputs is not None else None


def _handler(entry_point: str | None, custom: bool) -> Literal["custom", "builtin"] | None:
    if custom:
        return "custom"
    if entry_point is None:
        return None
    return "builtin" if entry_point.startswith("djl_python.") else "custom"


def _tensor_parallel(value: str | None) -> int | str | None:
    if value == "max":
        return "max"
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def from_properties(
    text: str,
    version: str,
    *,
    container_tag: str = "",
    instance_type: str | None = None,
    facts: ModelFacts | None = None,
    facts_note: str = "",
    startup_timeout: int | None = None,
    has_model_py: bool = False,
) -> View:
    """The view of a serving.properties; ``has_model_py``: a model.py ships beside it (the handler is that file)."""
    entries = tuple(parse_properties(text))
    values = {entry.key: entry.value for entry in entries}
    instance = instances.get(instance_type) if instance_type else None
    model_id = values.get("option.model_id") or values.get("option.s3url") or ""
    entry_point = values.get("option.entryPoint") or None
    tp = _tensor_parallel(values.get("option.tensor_parallel_degree"))
    engine = infer_engine(values, version, container_tag, instance, has_model_py)
    custom, rolling = has_model_py and entry_point is None, _rolling(engine, values, version)
    return View(
        source="serving.properties",
        version=version,
        engine=engine,
        server_engine=values.get("engine") or None,
        entry_point=entry_point,
        rolling_batch=values.get("option.rolling_batch") or None,
        instance_type=instance_type,
        instance=instance,
        model_id=model_id,
        model_type=(facts.model_type if facts and facts.model_type else "") or model_type_from_name(model_id),
        facts=facts,
        facts_note=facts_note,
        dtype=values.get("option.dtype") or None,
        tensor_parallel="max" if tp == "max" else (tp if isinstance(tp, int) else None),
        max_sequence_length=_sequence(values),
        max_batch_size=_batch_size(values, rolling),
        handler=_handler(entry_point, custom),
        partitioned=False,
        weights_delivery="container",
        download_timeout=None,
        startup_timeout=startup_timeout,
        model_loading_timeout=_int(values, "option.model_loading_timeout"),
        reserved_memory_mb=_int(values, "gpu.reserved_memory_mb"),
        volume_size_gb=None,
        properties=entries,
        rolling=rolling,
        bytes_per_parameter=bytes_per_parameter(values, model_id),
        image_tag=container_tag.rsplit(":", 1)[-1].lower() if "-" in container_tag else "",
    )
