"""LoRA adapters served on one copy of a base model: the ``adapters:`` and ``lora:`` settings, what each adapter's
``adapter_config.json`` says, the LoRA limits a deployment renders, and where adapters are staged.

What LMI reads (djl-serving's source): vLLM and lmi-dist rolling batch take ``option.enable_lora``, ``max_loras``
(default 4: adapters in one batch, each a slot in GPU memory), ``max_lora_rank`` (default 16), ``max_cpu_loras``
(adapters cached in host memory, at least ``max_loras``) from 0.27.0. At startup the server registers every folder of
``adapters/`` beside the model (in the model folder, or in the downloaded ``s3://`` model) under the folder's name; a
request picks one with ``"adapters": "<name>"`` in its body (one per input) or SageMaker's
``X-Amzn-SageMaker-Adapter-Identifier`` header, which SageMaker sets for an adapter inference component (registered
through the adapters API with ``X-Amzn-SageMaker-Adapter-Alias``, 0.31.0 onward).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lmi_deploy import identifiers
from lmi_deploy.engines.base import version_key

Kind = Literal["hub", "local", "s3"]
ADAPTER_CONFIG = "adapter_config.json"
ADAPTERS_FOLDER = "adapters"  # beside the model: what the LMI server registers at startup
ADAPTER_ARCHIVE = "adapter.tar.gz"  # an adapter inference component's ArtifactUrl: one gzipped tar
LORA_FIRST = "0.27.0"  # option.enable_lora & co. in vLLM and lmi-dist rolling batch
ADAPTER_COMPONENTS_FIRST = "0.31.0"  # the adapters API takes SageMaker's alias; requests carry the identifier header
LMI_DIST_LAST = "0.32.0"
CONTAINER_MAX_LORAS = 4  # LMI's default option.max_loras
CONTAINER_MAX_LORA_RANK = 16  # LMI's default option.max_lora_rank
# max_lora_rank values vLLM accepts (LoRAConfig.possible_max_ranks): 8-64 in vLLM 0.3-0.4 (LMI 0.27-0.28; lmi-deploy
# assumes the same for 0.29's 0.5.3); 128 and 256 in vLLM 0.6 (LMI 0.30 onward).
RANKS = (8, 16, 32, 64)
WIDE_RANKS = (*RANKS, 128, 256)
WIDE_RANKS_FIRST = "0.30.0"
IDENTIFIER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"
# whole-string patterns (fullmatch: "$" would let a trailing newline through)
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?")
_COMMIT = re.compile(r"[0-9a-f]{40}")


class Adapter(BaseModel):
    """One LoRA adapter: a name the requests use, and where its PEFT folder comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        description="1-30 of `a-z0-9-`: the adapter's folder under `adapters/` (what requests name in `adapters`) and "
        "its inference component `<deployment>-<model>-<name>`."
    )
    source: str = Field(
        min_length=1,
        description="Hugging Face Hub id (needs `revision`), a local PEFT folder (relative to the deployment file), "
        "or an `s3://` prefix holding one.",
    )
    revision: str | None = Field(None, description="Hub revision of the adapter: pin a commit.")

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-30 characters of a-z, 0-9 and '-', not starting or ending with '-'")
        return value

    @model_validator(mode="after")
    def _source_syntax(self) -> Adapter:
        problem = source_problem(self.source, self.kind)
        if problem:
            raise ValueError(f"source {self.source!r} {problem}")
        if self.kind == "hub" and not self.revision:
            raise ValueError(f"source {self.source!r} is a Hub id: pin its revision (revision: <commit>)")
        if self.kind != "hub" and self.revision:
            raise ValueError(f"revision is for Hub adapters; {self.source!r} is a {self.kind} source: remove it")
        if self.revision:
            problem = identifiers.revision_problem(self.revision)
            if problem:
                raise ValueError(f"revision {self.revision!r} {problem}")
        return self

    @property
    def kind(self) -> Kind:
        return source_kind(self.source)

    @property
    def pinned(self) -> bool:
        """A commit, not a branch or tag that can move (local folders and S3 prefixes are what they are now)."""
        return self.kind != "hub" or bool(_COMMIT.fullmatch(self.revision or ""))


class LoraSettings(BaseModel):
    """The engine's LoRA limits; each derived when unset (see :func:`plan`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_loras: int | None = Field(None, ge=1, le=256, description="Adapters in one batch (GPU slots).")
    max_lora_rank: int | None = Field(None, ge=1, le=512, description="The largest rank the slots hold.")
    max_cpu_loras: int | None = Field(None, ge=1, le=4096, description="Adapters cached in host memory.")


def source_kind(source: str) -> Kind:
    if source[:5].lower() == "s3://":
        return "s3"
    if source.startswith(("/", ".", "~")) or Path(source).expanduser().is_dir() or source.count("/") > 1:
        return "local"
    return "hub"


def source_problem(source: str, kind: Kind) -> str | None:
    if kind == "s3":
        return identifiers.s3_prefix_problem(source)
    if kind == "local":
        return identifiers.local_folder_problem(source)
    problem = identifiers.hub_id_problem(source)
    return "is not a Hub id (org/name), a local folder that exists, nor an s3:// prefix" if problem else None


def resolve_sources(raw: Any, base: Path) -> Any:
    """Adapter folders given relative to a deployment file, made relative to where the file is (when they exist)."""
    if not isinstance(raw, list):
        return raw
    resolved = []
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("source"), str):
            candidate = base / item["source"]
            if not Path(item["source"]).is_absolute() and candidate.is_dir():
                item = {**item, "source": str(candidate)}
        resolved.append(item)
    return resolved


def adapters_from_text(value: Any) -> Any:
    """``-c adapters=[...]`` as JSON; a lone mapping as a list of one."""
    if isinstance(value, str):
        text = value.strip()
        return json.loads(text) if text else []
    return [value] if isinstance(value, dict) else value


def unique_names(adapters: Sequence[Adapter]) -> None:
    names = [a.name for a in adapters]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"adapter name {twice[0]!r} is used twice; give every adapter its own name")


# ---- adapter_config.json -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterFacts:
    """What an adapter's ``adapter_config.json`` says; ``problem`` when it is no LoRA adapter lmi-deploy can read."""

    source: str  # where it was read
    base_model: str | None = None
    rank: int | None = None
    target_modules: tuple[str, ...] | None = None  # None: a regex or "all-linear" (matched by PEFT at load)
    problem: str | None = None


def read_facts(adapter: Adapter) -> AdapterFacts | None:
    """The adapter's facts: a local folder's ``adapter_config.json``, a Hub adapter's from the local Hub cache (at
    its revision); None when they cannot be read here (an ``s3://`` adapter, a Hub one not in the cache)."""
    if adapter.kind == "local":
        return _read_folder(str(Path(adapter.source).expanduser()))
    if adapter.kind == "hub":
        cached = _hub_cached(adapter.source, adapter.revision or "main")
        return _read_file(cached) if cached else None
    return None


@cache
def _read_folder(folder: str) -> AdapterFacts:
    path = Path(folder)
    if not path.is_dir():
        return AdapterFacts(folder, problem=f"{folder} is not a folder")
    if not (path / ADAPTER_CONFIG).is_file():
        return AdapterFacts(folder, problem=f"{folder} has no {ADAPTER_CONFIG}: is it a PEFT LoRA adapter folder?")
    if not any(path.glob("adapter_model*.safetensors")) and not any(path.glob("adapter_model*.bin")):
        return AdapterFacts(folder, problem=f"{folder} holds no adapter_model.safetensors (or .bin): no weights")
    return _read_file(str(path / ADAPTER_CONFIG))


def _hub_cached(repo: str, revision: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, ADAPTER_CONFIG, revision=revision)
    return found if isinstance(found, str) else None


@cache
def _read_file(path: str) -> AdapterFacts:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        return AdapterFacts(path, problem=f"{path} cannot be read as JSON ({error})")
    if not isinstance(data, dict):
        return AdapterFacts(path, problem=f"{path} holds no JSON object")
    if str(data.get("peft_type", "LORA")).upper() != "LORA":
        return AdapterFacts(path, problem=f"{path} is a {data.get('peft_type')} adapter; LMI serves LoRA adapters only")
    rank = data.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        return AdapterFacts(path, problem=f"{path}: r={rank!r} is no LoRA rank (a positive whole number)")
    targets = data.get("target_modules")
    modules = tuple(str(t) for t in targets) if isinstance(targets, list) else None
    base = data.get("base_model_name_or_path")
    return AdapterFacts(path, str(base) if base else None, rank, modules)


def same_model(base_model: str, model_id: str) -> bool:
    """Whether an adapter's ``base_model_name_or_path`` names the deployment's model: the same Hub id, or (a local
    folder or an S3 prefix on either side) the same last path part, case-insensitively."""
    if base_model.strip("/") == model_id.strip("/"):
        return True
    if base_model.count("/") == 1 and model_id.count("/") == 1 and not model_id.startswith("s3:"):
        return base_model.lower() == model_id.lower()  # two Hub ids
    return _last(base_model) == _last(model_id)


def _last(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


# ---- the limits rendered -----------------------------------------------------------------------------------------


def accepted_ranks(version: str) -> tuple[int, ...]:
    return WIDE_RANKS if version_key(version) >= version_key(WIDE_RANKS_FIRST) else RANKS


@dataclass(frozen=True)
class LoraPlan:
    """The LoRA limits a deployment renders (``option.max_loras`` & co.) and why."""

    max_loras: int
    max_lora_rank: int
    max_cpu_loras: int | None  # None: the container's default (= max_loras)
    adapters: int
    notes: tuple[str, ...]

    @property
    def cached(self) -> int:
        """Adapters host memory holds (the rest are read from disk again when asked for)."""
        return self.max_cpu_loras or self.max_loras


def plan(
    adapters: Sequence[Adapter], settings: LoraSettings | None, facts: Iterable[AdapterFacts | None], version: str
) -> LoraPlan:
    """max_lora_rank: the smallest the release accepts that holds every adapter's rank; max_loras: every adapter in
    one batch up to the container's 4; max_cpu_loras: every adapter cached in host memory when they outnumber that."""
    settings = settings or LoraSettings.model_validate({})
    notes: list[str] = []
    ranks = [f.rank for f in facts if f is not None and f.rank]
    rank = settings.max_lora_rank
    if rank is None:
        needed = max(ranks, default=CONTAINER_MAX_LORA_RANK)
        ranks_ok = [r for r in accepted_ranks(version) if r >= max(needed, 1)]
        rank = ranks_ok[0] if ranks_ok else accepted_ranks(version)[-1]
        why = f"the adapters' largest rank is {max(ranks)}" if ranks else "the adapters' ranks are unknown here"
        notes.append(f"lora.max_lora_rank -> {rank} ({why})")
    loras = settings.max_loras or max(1, min(len(adapters), CONTAINER_MAX_LORAS))
    cpu = settings.max_cpu_loras
    if cpu is None and len(adapters) > loras:
        cpu = len(adapters)
        notes.append(f"lora.max_cpu_loras -> {cpu} (every adapter stays in host memory; {loras} share a batch)")
    return LoraPlan(loras, rank, cpu, len(adapters), tuple(notes))


# LoRA-targetable linear modules of each architecture (Hugging Face module names), with their (in, out) sizes in terms
# of h (hidden), q (attention heads x head dim), kv (key/value heads x head dim), f (FFN): for the target check, and
# for the GPU memory the engine sets aside per LoRA slot (it allocates every targetable module of every layer).
_LLAMA = {
    "q_proj": ("h", "q"),
    "k_proj": ("h", "kv"),
    "v_proj": ("h", "kv"),
    "o_proj": ("q", "h"),
    "gate_proj": ("h", "f"),
    "up_proj": ("h", "f"),
    "down_proj": ("f", "h"),
}
_FUSED_QKV = {
    "query_key_value": ("h", "qkv"),
    "dense": ("q", "h"),
    "dense_h_to_4h": ("h", "f"),
    "dense_4h_to_h": ("f", "h"),
}
_SEPARATE_QKV = {"q_proj": ("h", "q"), "k_proj": ("h", "kv"), "v_proj": ("h", "kv"), "out_proj": ("q", "h")}
MODULES: dict[str, dict[str, tuple[str, str]]] = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "yi", "internlm2"), _LLAMA),
    "mixtral": {**{k: v for k, v in _LLAMA.items() if k.endswith(("q_proj", "k_proj", "v_proj", "o_proj"))}},
    "phi3": {"qkv_proj": ("h", "qkv"), "o_proj": ("q", "h"), "gate_up_proj": ("h", "2f"), "down_proj": ("f", "h")},
    "phi": {
        **{k: v for k, v in _LLAMA.items() if k in ("q_proj", "k_proj", "v_proj")},
        "dense": ("q", "h"),
        "fc1": ("h", "f"),
        "fc2": ("f", "h"),
    },
    "gpt_neox": _FUSED_QKV,
    "falcon": _FUSED_QKV,
    "gptj": {**_SEPARATE_QKV, "fc_in": ("h", "f"), "fc_out": ("f", "h")},
    "opt": {**_SEPARATE_QKV, "fc1": ("h", "f"), "fc2": ("f", "h")},
    "starcoder2": {
        **{k: v for k, v in _LLAMA.items() if k.endswith("_proj") and k[0] in "qkvo"},
        "c_fc": ("h", "f"),
        "c_proj": ("f", "h"),
    },
    "gpt_bigcode": {"c_attn": ("h", "qkv"), "c_proj": ("f", "h"), "c_fc": ("h", "f")},
}
EMBEDDINGS = ("embed_tokens", "lm_head", "wte", "embed_in", "embed_out", "word_embeddings")
MIXTRAL_EXPERTS = ("w1", "w2", "w3", "gate")


def module_names(model_type: str) -> frozenset[str] | None:
    """The names an adapter of this architecture may target; None when lmi-deploy does not know the architecture."""
    table = MODULES.get(model_type)
    if table is None:
        return None
    extra = MIXTRAL_EXPERTS if model_type == "mixtral" else ()
    return frozenset((*table, *EMBEDDINGS, *extra))


def lora_bytes_per_slot(facts: Any, rank: int, dtype_bytes: int) -> int | None:
    """Bytes one LoRA slot takes on the accelerators (A and B of every targetable module of every layer), or None
    when the architecture or its sizes are unknown."""
    table = MODULES.get(getattr(facts, "model_type", "") or "")
    hidden, layers = getattr(facts, "hidden_size", None), getattr(facts, "layers", None)
    heads, kv_heads, head_dim = facts.attention_heads, facts.kv_heads, facts.head_dim
    ffn = getattr(facts, "ffn_size", None)
    if table is None or None in (hidden, layers, heads, kv_heads, head_dim, ffn):
        return None
    assert heads and kv_heads and head_dim and hidden and layers and ffn
    q, kv = heads * head_dim, kv_heads * head_dim
    size = {"h": hidden, "q": q, "kv": kv, "qkv": q + 2 * kv, "f": ffn, "2f": 2 * ffn}
    per_layer = sum(size[a] + size[b] for a, b in table.values())
    return int(per_layer * rank * layers * dtype_bytes)


# ---- where adapters are staged -----------------------------------------------------------------------------------


def folder_prefix(weights_prefix: str, adapter: Adapter) -> str:
    """A single-model endpoint: the adapter's files under the weights prefix, where the server registers them."""
    return f"{weights_prefix}{ADAPTERS_FOLDER}/{adapter.name}/"


def archive_key(adapter: Adapter) -> str:
    """An adapter inference component: its archive, keyed by what it is (the Hub revision, the local folder's
    content, the S3 prefix), so that a changed adapter gets a new ArtifactUrl and its component is replaced."""
    if adapter.kind == "hub":
        where = f"hub/{adapter.source}/{adapter.revision}"
    elif adapter.kind == "local":
        where = f"local/{adapter.name}-{content_hash(Path(adapter.source).expanduser())[:12]}"
    else:
        where = "s3/" + adapter.source.removeprefix("s3://").rstrip("/")
    return f"{ADAPTERS_FOLDER}/{where}/{ADAPTER_ARCHIVE}"


@cache
def content_hash(folder: Path) -> str:
    """sha256 over a folder's files (names and bytes, sorted): what a local adapter is."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def component_name(base_component: str, adapter: Adapter) -> str:
    return f"{base_component}-{adapter.name}"


def request_adapters(body: Mapping[str, Any], headers: Mapping[str, str]) -> list[str] | None:
    """The adapter a request names, per input, as LMI reads it: the body's ``adapters`` (a name, or one per input;
    ``""`` for the base model), else SageMaker's identifier header; None when it names none."""
    lowered = {key.lower(): value for key, value in headers.items()}
    named: Any = body.get("adapters")
    if named is None:
        named = lowered.get(IDENTIFIER_HEADER.lower())
    if named is None:
        return None
    names = named if isinstance(named, list) else [named]
    if not all(isinstance(n, str) for n in names):
        raise ValueError('"adapters" must be an adapter name, or a list of one name ("" for the base model) per input')
    return list(names)
