"""LoRA adapters: the engine and release serve them, each adapter fits the base model and the LoRA limits, and
SageMaker can attach them as adapter inference components."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from lmi_deploy import adapters
from lmi_deploy.containers import ENGINES, version_key
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.multi_model import Together
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View

_LLAMA = "meta-llama/Llama-2-7b-hf"
_BASE = {"engine": "vllm", "lmi_version": "0.33.0", "model_id": _LLAMA}
_SQL = {"name": "sql", "source": "./adapters/sql"}
_CONFIG = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": _LLAMA}
MAX_COMPONENT_NAME = 63  # SageMaker's InferenceComponentName
LORA_KEYS = ("option.enable_lora", "option.max_loras", "option.max_lora_rank", "option.max_cpu_loras")


def _files(name: str = "sql", **changes: Any) -> dict[str, str]:
    """An adapter folder for a bad example: its adapter_config.json (with ``changes``) and an (empty) weights file."""
    return {
        f"adapters/{name}/adapter_config.json": json.dumps({**_CONFIG, **changes}),
        f"adapters/{name}/adapter_model.safetensors": "",
    }


def _adapters(view: View) -> list[tuple[str, adapters.Adapter, adapters.AdapterFacts | None]]:
    """(label, adapter, its facts) of the deployment's adapters."""
    config = view.config
    return [
        (f"adapters[{i}] ({a.name})", a, facts)
        for i, (a, facts) in enumerate(zip(config.adapters, config.adapter_facts, strict=True))
    ]


@rule(
    "LMI971",
    title="Adapters on an engine or release without LoRA",
    why="LMI serves LoRA adapters on vLLM and lmi-dist rolling batch from 0.27.0 (option.enable_lora); any other "
    "engine or release ignores the adapters and serves only the base model.",
    fix="Use engine=vLLM (0.27.0 onward) or lmi-dist (0.27.0-0.32.0), or remove adapters and lora.",
    example=Example(settings={"engine": "tensorrt-llm", "model_id": _LLAMA, "lora": '{"max_loras": 2}'}),
    needs=("config",),
    gate=True,
)
def lora_engine(view: View, derived: Derived) -> Iterator[str]:
    config = view.config
    if not config.lora_enabled:
        return
    for key in sorted(set(config.extra_properties) & set(LORA_KEYS)):
        yield f"extra_properties sets {key}, which lmi-deploy writes for adapters/lora: set it under lora: instead"
    too_old = version_key(view.version) < version_key(adapters.LORA_FIRST)
    if ENGINES[config.engine].serves_lora and not too_old:
        return
    what = "adapters" if config.adapters else "lora"
    yield (
        f"{what}: {config.engine.value} {view.version} serves no LoRA adapters (vLLM and lmi-dist rolling batch "
        f"read option.enable_lora from {adapters.LORA_FIRST}; lmi-dist ships to {adapters.LMI_DIST_LAST}): set "
        f"engine=vLLM with lmi_version={adapters.LORA_FIRST} or later, or remove {what}"
    )


@rule(
    "LMI972",
    title="An adapter source that is no LoRA adapter",
    why="The server registers each folder of adapters/ at start; a folder without adapter_config.json and adapter "
    "weights, or with another PEFT method, fails the registration and the endpoint's startup.",
    fix="Point source at a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors).",
    example=Example(deployment_file={**_BASE, "adapters": [_SQL]}, files=_files(peft_type="PREFIX_TUNING")),
    needs=("config",),
)
def adapter_readable(view: View, derived: Derived) -> Iterator[str]:
    for label, _, facts in _adapters(view):
        if facts is not None and facts.problem:
            yield f"{label}: {facts.problem}; source must be a PEFT LoRA adapter folder"


@rule(
    "LMI973",
    title="An adapter trained on another base model",
    why="A LoRA adapter's matrices have the shapes and meaning of the model it was trained on; on another one it fails "
    "to load or produces garbage.",
    fix="Use adapters whose adapter_config.json names this model_id (base_model_name_or_path), or change model_id.",
    example=Example(
        deployment_file={**_BASE, "adapters": [_SQL]},
        files=_files(base_model_name_or_path="mistralai/Mistral-7B-v0.1"),
    ),
    needs=("config",),
)
def adapter_base_model(view: View, derived: Derived) -> Iterator[str]:
    for label, _, facts in _adapters(view):
        base = facts.base_model if facts is not None and not facts.problem else None
        if base and not adapters.same_model(base, view.model_id):
            yield (
                f"{label} was trained on {base} (base_model_name_or_path), not on model_id={view.model_id}: serve it "
                "on its own base model, or use an adapter of this one"
            )


@rule(
    "LMI974",
    title="An adapter rank above max_lora_rank, or a max_lora_rank the engine refuses",
    why="vLLM sizes every LoRA slot for max_lora_rank and accepts only some values (8-64; 128 and 256 from 0.30.0); a "
    "larger adapter fails to load, another value fails the engine's startup.",
    fix="Raise lora.max_lora_rank to a value the message lists that holds the adapter, or leave it unset.",
    example=Example(deployment_file={**_BASE, "adapters": [_SQL], "lora": {"max_lora_rank": 16}}, files=_files(r=32)),
    needs=("config",),
)
def adapter_rank(view: View, derived: Derived) -> Iterator[str]:
    config = view.config
    accepted = adapters.accepted_ranks(view.version)
    rank = config.lora_plan.max_lora_rank
    if config.lora is not None and config.lora.max_lora_rank is not None and rank not in accepted:
        yield (
            f"lora.max_lora_rank={rank} is not one LMI {view.version}'s engine accepts: use one of "
            f"{', '.join(map(str, accepted))}"
        )
        return
    for label, _, facts in _adapters(view):
        if facts is not None and facts.rank and facts.rank > rank:
            fits = [str(r) for r in accepted if r >= facts.rank]
            fix = f"set lora.max_lora_rank to {fits[0]}" if fits else f"retrain it at rank {accepted[-1]} or less"
            yield f"{label} has rank {facts.rank}, above max_lora_rank={rank}: {fix}"


@rule(
    "LMI975",
    title="An adapter targeting modules the base model does not have",
    why="The engine maps each target module onto the base model's layers; a name the architecture lacks fails the "
    "adapter's load (or, in PEFT, matches nothing and changes nothing).",
    fix="Use an adapter trained on this architecture; its target_modules must name the model's linear layers.",
    example=Example(
        deployment_file={**_BASE, "adapters": [_SQL]}, files=_files(target_modules=["query_key_value", "dense"])
    ),
    needs=("config",),
)
def adapter_targets(view: View, derived: Derived) -> Iterator[str]:
    names = adapters.module_names(view.model_type)
    if names is None:
        return
    for label, _, facts in _adapters(view):
        if facts is None or facts.problem or facts.target_modules is None:
            continue
        missing = [m for m in facts.target_modules if m.rsplit(".", 1)[-1] not in names]
        if missing:
            yield (
                f"{label} targets {', '.join(missing)}, which {view.model_type} models do not have (theirs: "
                f"{', '.join(sorted(names))}): use an adapter trained on {view.model_id}"
            )


@rule(
    "LMI976",
    title="max_cpu_loras below max_loras",
    why="vLLM refuses a host cache smaller than the adapters of one batch; the engine fails at startup.",
    fix="Set lora.max_cpu_loras to at least max_loras, or leave it unset.",
    example=Example(settings={**_BASE, "lora": '{"max_loras": 4, "max_cpu_loras": 2}'}),
    needs=("config",),
)
def cpu_cache(view: View, derived: Derived) -> Iterator[str]:
    plan = view.config.lora_plan
    if plan.max_cpu_loras is not None and plan.max_cpu_loras < plan.max_loras:
        yield (
            f"lora.max_cpu_loras={plan.max_cpu_loras} is below max_loras={plan.max_loras}: set it to "
            f"{plan.max_loras} or more, or leave it unset"
        )


@rule(
    "LMI977",
    title="More adapters than the host-memory cache holds",
    why="Adapters beyond max_cpu_loras are evicted and read from disk again when a request names them: slower first "
    "tokens for the least used ones.",
    fix="Raise lora.max_cpu_loras to the number of adapters (or leave it unset: it is derived so).",
    example=Example(
        deployment_file={
            **_BASE,
            "adapters": [_SQL, {"name": "chat", "source": "./adapters/chat"}],
            "lora": {"max_loras": 1, "max_cpu_loras": 1},
        },
        files={**_files(), **_files("chat")},
    ),
    level="warning",
    needs=("config",),
)
def adapters_cached(view: View, derived: Derived) -> Iterator[str]:
    plan = view.config.lora_plan
    if plan.adapters > plan.cached:
        yield (
            f"{plan.adapters} adapters and max_cpu_loras={plan.cached}: {plan.adapters - plan.cached} of them are "
            "read from disk again whenever they were evicted; raise lora.max_cpu_loras to "
            f"{plan.adapters}"
        )


@rule(
    "LMI978",
    title="Adapter checks skipped",
    why="The base model, rank and target checks read each adapter's adapter_config.json; an s3:// adapter, a Hub "
    "adapter not in the local cache, or an architecture lmi-deploy does not know leaves them unchecked.",
    fix="Validate with the adapter's folder at hand (download it, or huggingface-cli download it into the cache).",
    example=Example(settings={**_BASE, "adapters": '[{"name": "sql", "source": "s3://bucket/adapters/sql/"}]'}),
    level="warning",
    needs=("config",),
)
def adapter_checks_skipped(view: View, derived: Derived) -> Iterator[str]:
    unread = [label for label, _, facts in _adapters(view) if facts is None]
    if unread:
        yield (
            f"{', '.join(unread)}: adapter_config.json not readable here (s3://, or not in the Hub cache): base model, "
            "rank and target modules not checked; max_lora_rank assumes the ranks fit"
        )
    if view.config.adapters and adapters.module_names(view.model_type) is None:
        yield f"target modules not checked: lmi-deploy knows no module names of {view.model_type or 'this model'}"


@rule(
    "LMI980",
    title="A Hub adapter at a revision that can move",
    why="A branch or tag can point at other weights tomorrow: the staged adapter and its inference component would "
    "no longer match what was validated.",
    fix="Pin the adapter's revision to a 40-character commit.",
    example=Example(
        settings={**_BASE, "adapters": '[{"name": "sql", "source": "acme/llama-2-sql-lora", "revision": "main"}]'}
    ),
    level="warning",
    needs=("config",),
)
def adapter_pinned(view: View, derived: Derived) -> Iterator[str]:
    for label, adapter, _ in _adapters(view):
        if not adapter.pinned:
            yield f"{label}: revision={adapter.revision!r} of {adapter.source} is no commit: pin a commit"


@rule(
    "LMI979",
    title="Adapters SageMaker cannot attach as inference components",
    why="Each adapter of an inference-component model becomes an adapter inference component, which SageMaker "
    "registers through LMI's adapters API with its alias header (0.31.0 onward) under a name of at most 63 "
    "characters; a multi-model endpoint (mme) has no adapter mechanism at all.",
    fix="Use lmi_version 0.31.0 or later and shorter names, or deploy the model with its adapters on its own endpoint.",
    example=Example(
        deployment_file={
            "deployment": "lora",
            "multi_model": "inference_components",
            "models": [{**_BASE, "name": "llama", "lmi_version": "0.30.0", "adapters": [_SQL]}],
        },
        files=_files(),
    ),
    subject="multi-model",
    gate=True,
)
def adapter_components(together: Together) -> Iterator[str]:
    for model in together.models:
        config = model.config
        if not config.adapters:
            continue
        label = f"models[{model.index}] ({model.name})"
        if together.mode == "mme":
            yield (
                f"{label}: a multi-model endpoint (mme) serves no adapters: use multi_model: inference_components, "
                "or deploy the model with its adapters on its own endpoint"
            )
        elif version_key(config.lmi_version) < version_key(adapters.ADAPTER_COMPONENTS_FIRST):
            yield (
                f"{label}: adapter inference components need lmi_version {adapters.ADAPTER_COMPONENTS_FIRST} or later "
                f"(SageMaker registers them through the adapters API), this is {config.lmi_version}: raise lmi_version"
            )
        else:
            base = f"{together.endpoint.deployment}-{model.name}"
            for adapter in config.adapters:
                name = adapters.component_name(base, adapter)
                if len(name) > MAX_COMPONENT_NAME:
                    yield (
                        f"{label}: adapter {adapter.name}'s inference component {name} is {len(name)} characters, "
                        f"SageMaker takes {MAX_COMPONENT_NAME}: shorten the deployment, model or adapter name"
                    )
