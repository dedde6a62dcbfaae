"""``lmi-deploy recommend``: the cheapest instance, engine and TP degree that meet a latency or throughput target.

Every instance type of the catalog x every engine serving the model's family (at its newest release in the region)
x every TP degree that splits the heads and fits memory is estimated (``lmi_deploy.performance``), priced
(``lmi_deploy.pricing``), filtered by the target and ranked by $/hour, then $ per million generated tokens. The
options shown are validated as the deployment file ``--write-config`` writes, through the same rules as
``scripts/validate.py``; everything left out says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import ValidationError

from lmi_deploy import containers, instances, model_facts, pricing
from lmi_deploy.config import DeploymentConfig
from lmi_deploy.containers import ENGINES, Engine
from lmi_deploy.errors import ConfigError
from lmi_deploy.instances import InstanceType
from lmi_deploy.model_facts import ModelFacts
from lmi_deploy.performance import Estimate, Setup, Workload, engine_speed, estimate
from lmi_deploy.rules import estimates
from lmi_deploy.rules.derive import heads_not_split, supports_bf16
from lmi_deploy.rules.estimates import MemoryEstimate

Reason = Literal[
    "engine lacks the family",
    "not in the region",
    "no safe dtype",
    "does not fit",
    "misses the target",
    "over the price limit",
    "same accelerators cost less elsewhere",
    "refused by validation",
]
_OLDEST_DEPLOYABLE = "0.21.0"  # 0.19.0 is refused by the config (no S3 download); 0.20.0 ships no engine we serve
_NEURONX_EARLY_FAMILIES = ("opt", "gpt2", "gptj")  # NeuronX before 0.24.0 (LMI104)


@dataclass(frozen=True)
class Ask:
    """What the user asks for."""

    model_id: str
    model_config: str | None = None
    p50_ms: float | None = None
    tokens_per_s: float | None = None
    input_tokens: int = 512
    output_tokens: int = 128
    concurrency: int = 1
    region: str = "us-east-1"
    max_price_per_hour: float | None = None
    top: int = 5

    @property
    def workload(self) -> Workload:
        return Workload(self.input_tokens, self.output_tokens, self.concurrency)

    @property
    def target(self) -> str:
        if self.p50_ms is not None:
            return f"p50 <= {self.p50_ms:g} ms"
        if self.tokens_per_s is not None:
            return f">= {self.tokens_per_s:g} generated tokens/s"
        return "none (cheapest that fits)"


@dataclass(frozen=True)
class Option:
    """One way to serve the model that fits, with its estimate and price."""

    setup: Setup
    version: str
    estimate: Estimate
    memory: MemoryEstimate
    hourly_usd: float

    @property
    def name(self) -> str:
        return f"{self.setup.instance.name} {self.setup.engine.value} {self.version} TP{self.setup.tensor_parallel}"

    @property
    def usd_per_million_tokens(self) -> float:
        return self.hourly_usd / (self.estimate.tokens_per_s * 3600) * 1e6

    @property
    def rank_key(self) -> tuple[float, float, float]:
        return (self.hourly_usd, self.usd_per_million_tokens, self.estimate.request_ms)

    def settings(self, ask: Ask) -> dict[str, Any]:
        """The deployment file's settings for this option."""
        values: dict[str, Any] = {
            "model_id": ask.model_id,
            "engine": self.setup.engine.value,
            "lmi_version": self.version,
            "tensor_parallel_degree": self.setup.tensor_parallel,
            "dtype": self.setup.dtype,
            "max_sequence_length": max(16, ask.input_tokens + ask.output_tokens),
            "max_batch_size": 1 if engine_speed(self.setup.engine).serial else self.estimate.batch,
            "instance_type": self.setup.instance.name,
            "region": ask.region,
        }
        if ask.model_config:
            values["model_config"] = ask.model_config
        return values


@dataclass(frozen=True)
class Excluded:
    what: str
    reason: Reason
    detail: str
    miss: float = math.inf  # how far off (needed / available, or estimate / target): the closest miss is smallest


@dataclass
class Recommendation:
    ask: Ask
    facts: ModelFacts
    facts_source: str
    options: list[Option] = field(default_factory=list)  # validated, best first, at most ask.top
    meeting: int = 0  # how many options meet the target (before validation and the top cut)
    excluded: list[Excluded] = field(default_factory=list)

    def closest_miss(self, reason: Reason) -> Excluded | None:
        misses = [e for e in self.excluded if e.reason == reason]
        return min(misses, key=lambda e: e.miss) if misses else None


def model_facts_for(ask: Ask) -> tuple[ModelFacts, str]:
    """The model's facts from its config.json; a ConfigError when they lack what the estimate needs."""
    facts, source = model_facts.find(ask.model_id, "main", ask.model_config)
    if facts is None or facts.estimated or facts.missing or facts.parameters is None:
        lacking = ", ".join(facts.missing) if facts and facts.missing else "its config.json"
        raise ConfigError(
            f"--model {ask.model_id}: recommend needs the model's layers, heads and size ({lacking} unknown: "
            f"{source}); pass --model-config PATH to its config.json"
        )
    if facts.max_positions and ask.input_tokens + ask.output_tokens > facts.max_positions:
        raise ConfigError(
            f"--input-tokens {ask.input_tokens} + --output-tokens {ask.output_tokens} exceed {ask.model_id}'s "
            f"{facts.max_positions} positions: ask for at most {facts.max_positions} tokens in all"
        )
    return facts, source


def _family_problem(engine: Engine, facts: ModelFacts) -> str | None:
    spec = ENGINES[engine]
    if spec.model_types is not None and facts.model_type not in spec.model_types:
        return f"serves {', '.join(spec.model_types)}, not {facts.model_type}"
    if spec.model_types is None and facts.is_encoder_decoder and not spec.encoder_decoder:
        return f"serves decoder-only models, not the encoder-decoder {facts.model_type}"
    return None


def _newest_version(engine: Engine, facts: ModelFacts, region: str) -> str | None:
    """The newest release of the engine that serves the family in the region."""
    usable = [
        version
        for version in containers.versions(engine)
        if containers.version_key(version) >= containers.version_key(_OLDEST_DEPLOYABLE)
        and region in containers.regions(engine, version)
        and not (
            engine is Engine.NEURONX
            and containers.version_key(version) < (0, 24, 0)
            and facts.model_type not in _NEURONX_EARLY_FAMILIES
        )
    ]
    return usable[-1] if usable else None


def engines_for(facts: ModelFacts, region: str, excluded: list[Excluded]) -> dict[Engine, str]:
    """Engine -> the release to use; those that cannot serve go to ``excluded``."""
    chosen: dict[Engine, str] = {}
    for engine in Engine:
        problem = _family_problem(engine, facts)
        if problem:
            excluded.append(Excluded(engine.value, "engine lacks the family", problem))
            continue
        version = _newest_version(engine, facts, region)
        if version is None:
            excluded.append(Excluded(engine.value, "not in the region", f"no release serving it is in {region}"))
            continue
        chosen[engine] = version
    return chosen


def _dtype(engine: Engine, instance: InstanceType, version: str, facts: ModelFacts) -> str | None:
    """bf16 where the accelerator and engine have it; else fp16, or fp32 for T5 (fp16 overflows it: LMI402);
    None when T5 would have to run in fp16."""
    if supports_bf16(ENGINES[engine], instance, version):
        return "bf16"
    if not facts.is_encoder_decoder:
        return "fp16"
    return "fp32" if "fp32" in ENGINES[engine].dtypes else None


def _memory(facts: ModelFacts, setup: Setup, ask: Ask, batch: int) -> MemoryEstimate:
    """Weights + KV cache of every sequence a copy holds at full length + overhead, per accelerator; rolling-batch
    engines leave 10% unallocated."""
    load = estimates.Load(setup.dtype, setup.tensor_parallel, batch, ask.input_tokens + ask.output_tokens, False)
    memory = estimates.estimate_memory(facts, setup.instance, load)
    if engine_speed(setup.engine).rolling:
        memory = replace(memory, usable_gib=memory.usable_gib * (1 - estimates.ROLLING_BATCH_RESERVE))
    return memory


def _candidate(facts: ModelFacts, setup: Setup, version: str, ask: Ask) -> Option | Excluded:
    name = f"{setup.instance.name} {setup.engine.value} TP{setup.tensor_parallel}"
    heads = heads_not_split(facts, setup.tensor_parallel, setup.engine, engine_speed(setup.engine).rolling)
    if heads:
        return Excluded(name, "does not fit", f"TP{setup.tensor_parallel} does not divide {heads}")
    work = ask.workload
    found = estimate(facts, setup, work)
    memory = _memory(facts, setup, ask, found.batch)
    if not memory.fits:
        detail = memory.describe(setup.tensor_parallel, setup.instance.accelerator_noun)
        return Excluded(name, "does not fit", detail, memory.total_gib / memory.usable_gib)
    return Option(setup, version, found, memory, pricing.US_EAST_1_HOURLY_USD[setup.instance.name])


def _target_miss(option: Option, ask: Ask) -> Excluded | None:
    found = option.estimate
    if ask.p50_ms is not None and found.request_ms > ask.p50_ms:
        detail = f"p50 {found.request_ms:.0f} ms > {ask.p50_ms:g} ms"
        return Excluded(option.name, "misses the target", detail, found.request_ms / ask.p50_ms)
    if ask.tokens_per_s is not None and found.tokens_per_s < ask.tokens_per_s:
        detail = f"{found.tokens_per_s:.0f} tokens/s < {ask.tokens_per_s:g}"
        return Excluded(option.name, "misses the target", detail, ask.tokens_per_s / found.tokens_per_s)
    if ask.max_price_per_hour is not None and option.hourly_usd > ask.max_price_per_hour:
        detail = f"${option.hourly_usd:g}/h > ${ask.max_price_per_hour:g}/h"
        return Excluded(option.name, "over the price limit", detail, option.hourly_usd / ask.max_price_per_hour)
    return None


def _fitting(facts: ModelFacts, ask: Ask, engines: dict[Engine, str], excluded: list[Excluded]) -> list[Option]:
    options: list[Option] = []
    for instance in instances.catalog().values():
        for engine, version in engines.items():
            if ENGINES[engine].neuron != instance.is_neuron:
                continue  # GPU engines on GPUs, NeuronX on NeuronCores (LMI201/LMI202): not worth a line each
            dtype = _dtype(engine, instance, version, facts)
            if dtype is None:
                why = f"T5 overflows fp16 and {engine.value} has no bf16 or fp32 on {instance.accelerator} (LMI402)"
                excluded.append(Excluded(f"{instance.name} {engine.value}", "no safe dtype", why))
                continue
            for tp in instance.valid_tensor_parallel_degrees():
                found = _candidate(facts, Setup(instance, engine, tp, dtype), version, ask)
                if isinstance(found, Option):
                    options.append(found)
                else:
                    excluded.append(found)
    return options


def _cheapest_per_accelerators(options: list[Option], excluded: list[Excluded]) -> list[Option]:
    """One instance per accelerator kind and count (the cheapest): larger hosts of the same GPUs estimate alike."""
    best: dict[tuple[str, int, Engine, int], Option] = {}
    for option in sorted(options, key=lambda o: o.rank_key):
        setup = option.setup
        key = (setup.instance.accelerator, setup.instance.accelerator_count, setup.engine, setup.tensor_parallel)
        if key in best:
            cheaper = best[key].setup.instance.name
            excluded.append(Excluded(option.name, "same accelerators cost less elsewhere", f"{cheaper} has them"))
        else:
            best[key] = option
    return list(best.values())


def validation_problem(option: Option, ask: Ask, facts: ModelFacts, source: str) -> str | None:
    """What the rules refuse in the deployment this option writes, or None."""
    try:
        DeploymentConfig.model_validate(option.settings(ask), context={"facts": facts, "facts_note": source})
    except ValidationError as error:
        return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
    return None


def recommend(ask: Ask) -> Recommendation:
    """The options that meet the target, cheapest first, validated; and why every other was left out."""
    facts, source = model_facts_for(ask)
    result = Recommendation(ask, facts, source)
    engines = engines_for(facts, ask.region, result.excluded)
    options = _cheapest_per_accelerators(_fitting(facts, ask, engines, result.excluded), result.excluded)
    meeting = []
    for option in sorted(options, key=lambda o: o.rank_key):
        miss = _target_miss(option, ask)
        if miss:
            result.excluded.append(miss)
        else:
            meeting.append(option)
    result.meeting = len(meeting)
    for option in meeting:
        if len(result.options) == ask.top:
            break
        problem = validation_problem(option, ask, facts, source)
        if problem:
            result.excluded.append(Excluded(option.name, "refused by validation", problem))
        else:
            result.options.append(option)
    return result
