"""Model facts: a model's ``config.json`` read into the numbers validation needs (heads, layers, parameters, dtype).

Sources, first found wins: an explicit ``model_config`` file or folder; ``model_id`` itself when it is a local folder;
the configs bundled for the example deployments (``lmi_deploy/model_configs/``); the Hugging Face Hub at the pinned
revision (through ``huggingface_hub``; skipped quickly when offline).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmi_deploy.errors import ConfigError

BUNDLED = Path(__file__).resolve().parent / "model_configs"
DTYPE_BYTES = {"fp32": 4, "float32": 4, "fp16": 2, "float16": 2, "bf16": 2, "bfloat16": 2, "int8": 1}
_GATED_MLP_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "qwen2_moe"}


@dataclass(frozen=True)
class ModelFacts:
    """What lmi-deploy knows of a model's architecture, from its config.json."""

    model_type: str
    architectures: tuple[str, ...]
    attention_heads: int
    kv_heads: int
    layers: int  # decoder layers (these hold the KV cache)
    encoder_layers: int  # 0 for decoder-only models
    hidden_size: int
    head_dim: int
    vocab_size: int
    parameters: int
    parameters_from: str  # "safetensors index" or "computed from config.json"
    native_dtype: str | None
    max_positions: int | None
    source: str

    @property
    def is_encoder_decoder(self) -> bool:
        return self.encoder_layers > 0

    def weight_bytes(self, dtype: str) -> int:
        return self.parameters * DTYPE_BYTES[dtype]

    def kv_cache_bytes_per_token(self, dtype: str) -> int:
        """K and V for every decoder layer; encoder-decoder models also cache cross-attention K/V."""
        per_layer = 2 * self.kv_heads * self.head_dim * DTYPE_BYTES[dtype]
        return per_layer * self.layers * (2 if self.is_encoder_decoder else 1)


def _first(config: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return default


def _dtype_name(torch_dtype: Any) -> str | None:
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(str(torch_dtype)) if torch_dtype else None


def from_config(config: dict[str, Any], *, source: str, safetensors_total_size: int | None = None) -> ModelFacts:
    """Facts from a parsed config.json (and the safetensors index's ``total_size`` when there is one)."""
    model_type = str(config.get("model_type", "")).lower()
    if not model_type:
        raise ConfigError(f"{source}: config.json has no model_type")
    try:
        if model_type in ("t5", "mt5", "umt5"):
            hidden = int(config["d_model"])
            heads = int(config["num_heads"])
            head_dim = int(config.get("d_kv", hidden // heads))
            encoder_layers = int(config["num_layers"])
            layers = int(config.get("num_decoder_layers") or encoder_layers)
            kv_heads = heads
            ffn = int(config["d_ff"])
            gated = str(config.get("feed_forward_proj", "relu")).startswith("gated")
            attention = 4 * hidden * heads * head_dim
            mlp = (3 if gated else 2) * hidden * ffn
            computed = encoder_layers * (attention + mlp) + layers * (2 * attention + mlp)
            max_positions = None  # relative position buckets: no fixed limit
        else:
            hidden = int(_first(config, "hidden_size", "n_embd", "d_model"))
            heads = int(_first(config, "num_attention_heads", "n_head", "num_heads"))
            layers = int(_first(config, "num_hidden_layers", "n_layer", "num_layers"))
            encoder_layers = 0
            head_dim = int(config.get("head_dim") or hidden // heads)
            kv_heads = int(_first(config, "num_key_value_heads", "num_kv_heads", default=heads))
            if config.get("multi_query"):
                kv_heads = 1
            ffn = int(_first(config, "intermediate_size", "n_inner", "ffn_dim", default=None) or 4 * hidden)
            gated = model_type in _GATED_MLP_TYPES
            experts = int(_first(config, "num_local_experts", "num_experts", default=1))
            attention = hidden * heads * head_dim * 2 + 2 * hidden * kv_heads * head_dim
            mlp = (3 if gated else 2) * hidden * ffn * experts
            computed = layers * (attention + mlp + 2 * hidden)
            max_positions = _first(
                config, "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"
            )
            max_positions = int(max_positions) if max_positions else None
        vocab = int(_first(config, "vocab_size", "padded_vocab_size"))
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{source}: config.json lacks a field lmi-deploy needs ({error})") from None
    tied = bool(config.get("tie_word_embeddings", True))
    computed += vocab * hidden * (1 if tied else 2)
    native = _dtype_name(_first(config, "torch_dtype", "dtype"))
    if safetensors_total_size:
        parameters = safetensors_total_size // DTYPE_BYTES.get(native or "fp32", 4)
        parameters_from = "safetensors index"
    else:
        parameters, parameters_from = computed, "computed from config.json"
    return ModelFacts(
        model_type=model_type,
        architectures=tuple(config.get("architectures") or ()),
        attention_heads=heads,
        kv_heads=kv_heads,
        layers=layers,
        encoder_layers=encoder_layers,
        hidden_size=hidden,
        head_dim=head_dim,
        vocab_size=vocab,
        parameters=parameters,
        parameters_from=parameters_from,
        native_dtype=native,
        max_positions=max_positions,
        source=source,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def read_folder_or_file(path: Path) -> ModelFacts:
    """Facts from a config.json file, or a model folder holding one (and maybe model.safetensors.index.json)."""
    folder, config_file = (path, path / "config.json") if path.is_dir() else (path.parent, path)
    if not config_file.exists():
        raise ConfigError(f"model config {config_file} does not exist")
    index_file = folder / "model.safetensors.index.json"
    total = _read_json(index_file).get("metadata", {}).get("total_size") if index_file.exists() else None
    return from_config(_read_json(config_file), source=str(config_file), safetensors_total_size=total)


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
    total = _read_json(index_path).get("metadata", {}).get("total_size") if index_path else None
    return from_config(_read_json(config_path), source=f"hub:{model_id}@{revision}", safetensors_total_size=total)


def find(model_id: str, revision: str, model_config: str | None) -> tuple[ModelFacts | None, str]:
    """The model's facts and where they came from, or None and why none were found."""
    if model_config:
        return read_folder_or_file(Path(model_config)), model_config
    if not model_id.startswith("s3://") and Path(model_id).is_dir():
        return read_folder_or_file(Path(model_id)), model_id
    bundled = BUNDLED / bundled_name(model_id)
    if bundled.exists():
        facts = from_config(_read_json(bundled), source=f"bundled {bundled.name}")
        return facts, facts.source
    if not model_id.startswith("s3://"):
        from_the_hub = from_hub(model_id, revision)
        if from_the_hub is not None:
            return from_the_hub, from_the_hub.source
    return None, (
        f"no config.json for {model_id!r} (not a local folder, not bundled, Hub unreachable); "
        "set model_config to its config.json to enable the head and memory checks"
    )
