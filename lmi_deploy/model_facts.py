"""Model facts: a model's ``config.json`` read into the numbers validation needs (heads, layers, parameters, dtype).

Sources, first found wins: an explicit ``model_config`` file or folder; ``model_id`` itself when it is a local folder;
the configs bundled for the example deployments (``lmi_deploy/model_configs/``); the Hugging Face Hub at the pinned
revision (through ``huggingface_hub``; skipped quickly when offline).
"""

from __future__ import annotations

import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmi_deploy import input_files
from lmi_deploy.errors import UNREADABLE_INPUT, ConfigError

BUNDLED = Path(__file__).resolve().parent / "model_configs"
DTYPE_BYTES = {"fp32": 4, "float32": 4, "fp16": 2, "float16": 2, "bf16": 2, "bfloat16": 2, "int8": 1}
_GATED_MLP_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "qwen2_moe"}


@dataclass(frozen=True)
class ModelFacts:
    """What lmi-deploy knows of a model's architecture, from its config.json (or, lacking one, its name).

    A number the config.json does not give (under any of the names model families use for it) is None: only the
    rules that need it are skipped, with a warning that names it.
    """

    model_type: str
    architectures: tuple[str, ...]
    attention_heads: int | None
    kv_heads: int | None
    layers: int | None  # decoder layers (these hold the KV cache)
    encoder_layers: int  # 0 for decoder-only models
    hidden_size: int | None
    head_dim: int | None
    vocab_size: int | None
    parameters: int | None
    parameters_from: str  # "safetensors index", "computed from config.json" or "estimated from the model id ..."
    native_dtype: str | None
    max_positions: int | None
    source: str
    missing: tuple[str, ...] = ()  # numbers config.json lacks
    estimated: bool = False  # parameters guessed from the model id: no config.json at all
    ffn_size: int | None = None  # the feed-forward layer's inner size (sizes LoRA slots)
    encoder_parameters: int = 0  # of ``parameters``, those only the prompt pass runs (an encoder-decoder's encoder)
    auto_classes: tuple[str, ...] = ()  # the Auto classes config.json's ``auto_map`` gives code for (trust_remote_code)

    @property
    def is_encoder_decoder(self) -> bool:
        return self.encoder_layers > 0

    def weight_bytes(self, dtype: str) -> int:
        if self.parameters is None:
            raise ValueError(f"{self.source}: the parameter count is unknown")
        return self.parameters * DTYPE_BYTES[dtype]

    def kv_cache_bytes_per_token(self, dtype: str) -> int | None:
        """K and V for every decoder layer; encoder-decoder models also cache cross-attention K/V. None: unknown."""
        if self.kv_heads is None or self.head_dim is None or self.layers is None:
            return None
        per_layer = 2 * self.kv_heads * self.head_dim * DTYPE_BYTES[dtype]
        return per_layer * self.layers * (2 if self.is_encoder_decoder else 1)


def _first(config: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        value = config.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float | str) and str(value).strip():
            return value
    return default


_MAX_COUNT = 2**40  # beyond any real model's dimension or layer count


class _BadCount(ValueError):
    """A config.json count that is there but is no positive whole number (``num_heads: 0``)."""


def _int(config: dict[str, Any], *names: str) -> int | None:
    """The first of ``names`` that config.json sets, as a count; None when none is set (or it is not a number)."""
    name = next((n for n in names if _first(config, n) is not None), None)
    if name is None:
        return None
    value = config[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number % 1 or not 0 < number <= _MAX_COUNT:
        raise _BadCount(f"config.json {name}={value!r} must be a positive whole number (at most {_MAX_COUNT})")
    return int(number)


def _dtype_name(torch_dtype: Any) -> str | None:
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(str(torch_dtype)) if torch_dtype else None


# Field names across families: Llama/Mistral/GPT-NeoX use the first; GPT-2/GPT-J n_*; MPT n_heads/d_model/n_layers
# (and attn_config.kv_n_heads); Falcon n_head/n_layer (n_head_kv, multi_query); T5 num_heads/d_model/num_layers;
# BLOOM n_head/n_layer; OPT ffn_dim; ChatGLM/Qwen-1 seq_length/padded_vocab_size/ffn_hidden_size.
HIDDEN = ("hidden_size", "n_embd", "d_model", "model_dim", "dim")
HEADS = ("num_attention_heads", "n_head", "n_heads", "num_heads")
LAYERS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_head_kv", "kv_n_heads", "multi_query_group_num")
FFN = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "d_ff")
POSITIONS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "max_seq_len")
VOCAB = ("vocab_size", "padded_vocab_size")


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    """A multimodal config's text model (``text_config``) and MPT's ``attn_config`` read as top-level fields."""
    flat = dict(config)
    for nested in ("attn_config", "text_config", "llm_config"):
        if isinstance(config.get(nested), dict):
            flat = {**config[nested], **{k: v for k, v in flat.items() if v is not None}}
    return flat


@dataclass
class _Shape:
    hidden: int | None
    heads: int | None
    layers: int | None
    encoder_layers: int
    kv_heads: int | None
    head_dim: int | None
    ffn: int | None
    vocab: int | None


def _shape(config: dict[str, Any], model_type: str) -> _Shape:
    hidden, heads = _int(config, *HIDDEN), _int(config, *HEADS)
    if model_type in ("t5", "mt5", "umt5"):
        encoder = _int(config, "num_layers") or 0
        layers = _int(config, "num_decoder_layers") or encoder or None
    else:
        encoder, layers = 0, _int(config, *LAYERS)
    head_dim = _int(config, "head_dim", "d_kv") or (hidden // heads if hidden and heads else None)
    kv_heads = 1 if config.get("multi_query") is True else (_int(config, *KV_HEADS) or heads)
    ffn = _int(config, *FFN)
    if ffn is None and hidden:
        ffn = int(float(_first(config, "expansion_ratio", default=4)) * hidden)
    return _Shape(hidden, heads, layers, encoder, kv_heads, head_dim, ffn, _int(config, *VOCAB))


def _computed_parameters(shape: _Shape, config: dict[str, Any], model_type: str) -> tuple[int, int] | None:
    """All parameters, and the encoder's among them (0 for decoder-only models); None when a number is missing."""
    hidden, heads, head_dim, kv_heads = shape.hidden, shape.heads, shape.head_dim, shape.kv_heads
    if None in (hidden, heads, head_dim, kv_heads, shape.layers, shape.ffn, shape.vocab):
        return None
    assert hidden and heads and head_dim and kv_heads and shape.layers and shape.ffn and shape.vocab
    encoder = 0
    if shape.encoder_layers:
        gated = str(config.get("feed_forward_proj", "relu")).startswith("gated")
        attention = 4 * hidden * heads * head_dim
        mlp = (3 if gated else 2) * hidden * shape.ffn
        encoder = shape.encoder_layers * (attention + mlp)
        computed = encoder + shape.layers * (2 * attention + mlp)
    else:
        experts = _int(config, "num_local_experts", "num_experts") or 1
        attention = hidden * heads * head_dim * 2 + 2 * hidden * kv_heads * head_dim
        mlp = (3 if model_type in _GATED_MLP_TYPES else 2) * hidden * shape.ffn * experts
        computed = shape.layers * (attention + mlp + 2 * hidden)
    tied = bool(config.get("tie_word_embeddings", True))
    return computed + shape.vocab * hidden * (1 if tied else 2), encoder


def from_config(config: dict[str, Any], *, source: str, safetensors_total_size: int | None = None) -> ModelFacts:
    """Facts from a parsed config.json (and the safetensors index's ``total_size`` when there is one)."""
    model_type = str(config.get("model_type", "")).lower()
    flat = _flatten(config)
    try:
        shape = _shape(flat, model_type)
        positions = None if shape.encoder_layers else _int(flat, *POSITIONS)  # T5: relative positions, no fixed limit
        computed = _computed_parameters(shape, flat, model_type)
    except _BadCount as error:
        raise ConfigError(f"{UNREADABLE_INPUT} {source}: {error}") from None
    native = _dtype_name(_first(flat, "torch_dtype", "dtype"))
    total, encoder = computed or (None, 0)
    if safetensors_total_size:
        parameters: int | None = int(safetensors_total_size) // DTYPE_BYTES.get(native or "fp32", 4)
        parameters_from = "safetensors index"
        encoder = round(encoder * parameters / total) if total and parameters else 0  # the computed share
    else:
        parameters, parameters_from = total, "computed from config.json"
    numbers = {"attention heads": shape.heads, "layers": shape.layers, "hidden size": shape.hidden}
    numbers["parameter count"] = parameters
    return ModelFacts(
        model_type=model_type,
        architectures=tuple(config.get("architectures") or ()),
        attention_heads=shape.heads,
        kv_heads=shape.kv_heads,
        layers=shape.layers,
        encoder_layers=shape.encoder_layers,
        hidden_size=shape.hidden,
        head_dim=shape.head_dim,
        vocab_size=shape.vocab,
        parameters=parameters,
        parameters_from=parameters_from,
        native_dtype=native,
        max_positions=positions,
        source=source,
        missing=tuple(name for name, value in numbers.items() if value is None),
        ffn_size=shape.ffn,
        encoder_parameters=encoder,
        auto_classes=tuple(sorted(config["auto_map"])) if isinstance(config.get("auto_map"), dict) else (),
    )


_SIZE = re.compile(r"(?<![a-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?![a-z0-9])", re.IGNORECASE)
MOE_SHARED = 0.85  # a mixture of n experts of size s holds fewer than n*s parameters (attention is shared)


def from_model_id(model_id: str) -> ModelFacts | None:
    """Facts guessed from the size in a model id (``Llama-3.1-70B``, ``7b``, ``8x7b``, ``350m``): the parameter
    count only, marked as an estimate; None when the id names no size."""
    name = model_id.rstrip("/").rsplit("/", 1)[-1]
    match = _SIZE.search(name.replace("_", "-"))
    if match is None:
        return None
    experts, size, unit = match.group(1), float(match.group(2)), match.group(3).lower()
    parameters = size * (1e9 if unit == "b" else 1e6) * (int(experts) * MOE_SHARED if experts else 1)
    return ModelFacts(
        model_type="",
        architectures=(),
        attention_heads=None,
        kv_heads=None,
        layers=None,
        encoder_layers=0,
        hidden_size=None,
        head_dim=None,
        vocab_size=None,
        parameters=int(parameters),
        parameters_from=f"estimated from the model id ({match.group(0)})",
        native_dtype="bf16",  # what checkpoints of this size are published in; an assumption like the count
        max_positions=None,
        source=f"estimate from the name {name!r}",
        missing=("attention heads", "layers", "hidden size"),
        estimated=True,
    )


# Architecture by model name, when no config.json says it: (name fragment, HF model_type).
_MODEL_TYPE_HINTS: tuple[tuple[str, str], ...] = (
    ("t5", "t5"),
    ("ul2", "t5"),
    ("gpt-j", "gptj"),
    ("gptj", "gptj"),
    ("gpt-neox", "gpt_neox"),
    ("pythia", "gpt_neox"),
    ("bloom", "bloom"),
    ("opt-", "opt"),
    ("gpt2", "gpt2"),
)


def model_type_from_name(model_id: str) -> str:
    """HF model_type guessed from a model id (``google/flan-t5-xxl`` -> ``t5``); "" when the name does not say."""
    name = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    return next((model_type for fragment, model_type in _MODEL_TYPE_HINTS if fragment in name), "")


def _read_json(path: Path, what: str = "model_config") -> dict[str, Any]:
    return input_files.load_json_object(path, what)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    """``path.is_dir()`` that says no (rather than raising) for names the OS refuses: too long, NUL bytes."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def is_local_folder(model_id: str) -> bool:
    """Whether ``model_id`` names a folder on this machine (rather than a Hub id or an s3:// prefix)."""
    return not model_id.startswith("s3://") and _is_dir(Path(model_id))


def safetensors_total_size(index_file: Path) -> int | None:
    """``metadata.total_size`` of a safetensors index (bytes of all shards), None when the index does not say."""
    index = _read_json(index_file, "safetensors index")
    metadata = index.get("metadata")
    total = metadata.get("total_size") if isinstance(metadata, dict) else None
    if total is None:
        return None
    if isinstance(total, bool) or not isinstance(total, int) or not 0 < total < 2**60:
        raise ConfigError(
            f"{UNREADABLE_INPUT} safetensors index {index_file}: metadata.total_size={total!r} is not a size in bytes"
        )
    return total


def read_folder_or_file(path: Path, what: str = "model_config") -> ModelFacts:
    """Facts from a config.json file, or a model folder holding one (and maybe model.safetensors.index.json);
    ``what`` names the setting the path came from, in messages."""
    folder, config_file = (path, path / "config.json") if _is_dir(path) else (path.parent, path)
    index_file = folder / "model.safetensors.index.json"
    total = safetensors_total_size(index_file) if _is_file(index_file) else None
    return from_config(_read_json(config_file, what), source=str(config_file), safetensors_total_size=total)


def bundled_name(model_id: str) -> str:
    return model_id.replace("/", "--") + ".json"


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return False
    return True


def from_hub(model_id: str, revision: str) -> ModelFacts | None:
    """config.json (and safetensors index) from the Hub cache, else the Hub when it is reachable; None when neither."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        return None

    def fetch(name: str, local_only: bool) -> Path | None:
        try:
            return Path(hf_hub_download(model_id, name, revision=revision, local_files_only=local_only))
        except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
            return None

    local_only = not _hub_reachable()
    config_path = fetch("config.json", local_only)
    if config_path is None:
        return None
    index_path = fetch("model.safetensors.index.json", local_only)
    total = safetensors_total_size(index_path) if index_path else None
    return from_config(_read_json(config_path), source=f"hub:{model_id}@{revision}", safetensors_total_size=total)


def find(model_id: str, revision: str, model_config: str | None) -> tuple[ModelFacts | None, str]:
    """The model's facts and where they came from, or None and why none were found."""
    if model_config:
        return read_folder_or_file(Path(model_config)), model_config
    if is_local_folder(model_id):
        return read_folder_or_file(Path(model_id), "model_id folder's config.json"), model_id
    bundled = BUNDLED / bundled_name(model_id)
    if _is_file(bundled):
        facts = from_config(_read_json(bundled), source=f"bundled {bundled.name}")
        return facts, facts.source
    if not model_id.startswith("s3://"):
        from_the_hub = from_hub(model_id, revision)
        if from_the_hub is not None:
            return from_the_hub, from_the_hub.source
    missing = f"no config.json for {model_id!r} (not a local folder, not bundled, Hub unreachable)"
    estimate = from_model_id(model_id)
    if estimate is not None:
        return estimate, f"{missing}; {estimate.parameters_from}: {(estimate.parameters or 0) / 1e9:.1f}B parameters"
    return None, f"{missing}; set model_config to its config.json to enable the head and memory checks"
