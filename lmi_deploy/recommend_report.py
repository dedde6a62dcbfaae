"""What ``lmi-deploy recommend`` prints and writes: the ranked table with the reason for each number, why the rest
were left out, the same as JSON, and the chosen option as a deployment file."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from lmi_deploy import pricing
from lmi_deploy.errors import ConfigError
from lmi_deploy.recommend import Excluded, Option, Reason, Recommendation

_EXAMPLES = 3  # left-out options named per reason (the closest first); --json lists them all
_ALL_NAMED: tuple[Reason, ...] = ("engine lacks the family", "not in the region", "refused by validation")


def header(result: Recommendation) -> list[str]:
    ask, facts = result.ask, result.facts
    kind = "encoder-decoder" if facts.is_encoder_decoder else "decoder-only"
    prices = "us-east-1 on-demand prices" + ("" if ask.region == "us-east-1" else f" (not {ask.region}'s)")
    return [
        f"{ask.model_id}: {facts.model_type} {kind}, {(facts.parameters or 0) / 1e9:.2f}B parameters "
        f"({result.facts_source})",
        f"workload: {ask.input_tokens} prompt + {ask.output_tokens} generated tokens, {ask.concurrency} request(s) in "
        f"flight; target: {ask.target}; region {ask.region}; {prices}, approximate, as of {pricing.PRICES_AS_OF}",
    ]


def _row(rank: int, option: Option) -> str:
    found = option.estimate
    engine = f"{option.setup.engine.value} {option.version}"
    return (
        f"{rank:>2}  {option.setup.instance.name:<18} {engine:<24} {option.setup.tensor_parallel:>2}  "
        f"{option.setup.dtype:<5} {found.request_ms:>8.0f} {found.step_ms:>8.2f} {found.prefill_ms:>8.1f} "
        f"{found.tokens_per_s:>8.1f} {option.hourly_usd:>8.3f} {option.usd_per_million_tokens:>9.2f}"
    )


def option_reasons(option: Option, ask_concurrency: int, output_tokens: int) -> list[str]:
    """Where each number of a row comes from."""
    setup, found = option.setup, option.estimate
    copies = f"{setup.copies} copies" if setup.copies > 1 else "1 copy"
    return [
        f"{setup.instance.name}: {setup.instance.accelerator_count} x {setup.instance.accelerator} "
        f"({setup.instance.speed.source}); {setup.instance.interconnect.name}",
        *found.reasons(),
        f"p50 {found.request_ms:.0f} ms = "
        + (f"{found.turns} requests in turn x " if found.turns > 1 else "")
        + f"(prompt pass + decode steps) at {found.batch} sequence(s) at once per copy ({copies} of "
        f"TP{setup.tensor_parallel} on the instance"
        + ("; the engine serves one request at a time)" if found.speed.serial else ")"),
        f"{found.tokens_per_s:.1f} tokens/s = {ask_concurrency} x {output_tokens} tokens / "
        f"{found.request_ms / 1e3:.2f} s; ${option.usd_per_million_tokens:.2f} per million = ${option.hourly_usd:g}/h "
        f"({pricing.PRICE_BASIS[setup.instance.name]}) / (tokens/s x 3600)",
        option.memory.describe(setup.tensor_parallel, setup.instance.accelerator_noun),
    ]


def left_out(result: Recommendation) -> list[str]:
    counts = Counter(e.reason for e in result.excluded)
    if not counts:
        return []
    lines = ["left out: " + ", ".join(f"{n} {reason}" for reason, n in counts.most_common())]
    for reason, count in counts.most_common():
        named = sorted((e for e in result.excluded if e.reason == reason), key=lambda e: e.miss)
        shown = named if reason in _ALL_NAMED else named[:_EXAMPLES]
        more = f" (closest {len(shown)} of {count})" if len(shown) < count else ""
        lines.append(f"  {reason}{more}:")
        lines += [f"    {e.what}: {e.detail}" for e in shown]
    return lines


def nothing_found(result: Recommendation) -> str | None:
    """The one line that says why nothing is recommended, with the closest miss; None when something is."""
    if result.options:
        return None
    if result.meeting:
        refused = result.closest_miss("refused by validation")
        assert refused is not None
        return (
            f"every option meeting the target is refused by validation; the cheapest: {refused.what}: {refused.detail}"
        )
    fitting = [e for e in result.excluded if e.reason in ("misses the target", "over the price limit")]
    if fitting:
        near = min(fitting, key=lambda e: e.miss)
        return f"no option meets the target ({result.ask.target}); closest: {near.what}: {near.detail}"
    closest = result.closest_miss("does not fit")
    where = f"; closest miss: {closest.what}: {closest.detail}" if closest else ""
    return f"no instance fits {result.ask.model_id}{where}"


def text(result: Recommendation) -> str:
    lines = header(result)
    if result.options:
        lines += [
            "",
            f"{'#':>2}  {'instance':<18} {'engine':<24} {'TP':>2}  {'dtype':<5} {'p50 ms':>8} {'ms/tok':>8} "
            f"{'prompt':>8} {'tok/s':>8} {'$/hour':>8} {'$/M tok':>9}",
        ]
        for rank, option in enumerate(result.options, 1):
            lines.append(_row(rank, option))
            reasons = option_reasons(option, result.ask.concurrency, result.ask.output_tokens)
            lines += [f"      {reason}" for reason in reasons]
        lines.append(f"{result.meeting} option(s) meet the target; the {len(result.options)} cheapest are shown")
    lines += ["", *left_out(result)]
    return "\n".join(lines)


def _option_json(option: Option, result: Recommendation) -> dict[str, Any]:
    found = option.estimate
    return {
        "instance_type": option.setup.instance.name,
        "engine": option.setup.engine.value,
        "lmi_version": option.version,
        "tensor_parallel_degree": option.setup.tensor_parallel,
        "dtype": option.setup.dtype,
        "p50_ms": round(found.request_ms, 1),
        "ms_per_token": round(found.step_ms, 3),
        "prompt_pass_ms": round(found.prefill_ms, 2),
        "tokens_per_s": round(found.tokens_per_s, 2),
        "usd_per_hour": option.hourly_usd,
        "usd_per_million_tokens": round(option.usd_per_million_tokens, 3),
        "memory_per_accelerator_gib": round(option.memory.total_gib, 2),
        "usable_per_accelerator_gib": round(option.memory.usable_gib, 2),
        "reasons": option_reasons(option, result.ask.concurrency, result.ask.output_tokens),
        "settings": option.settings(result.ask),
    }


def _excluded_json(excluded: Excluded) -> dict[str, Any]:
    return {"option": excluded.what, "reason": excluded.reason, "detail": excluded.detail}


def as_json(result: Recommendation) -> dict[str, Any]:
    ask = result.ask
    return {
        "model_id": ask.model_id,
        "model_facts": result.facts_source,
        "workload": {
            "input_tokens": ask.input_tokens,
            "output_tokens": ask.output_tokens,
            "concurrency": ask.concurrency,
        },
        "target": ask.target,
        "region": ask.region,
        "prices": f"us-east-1 on-demand, approximate, {pricing.PRICES_AS_OF}",
        "meeting_target": result.meeting,
        "options": [_option_json(o, result) for o in result.options],
        "nothing_found": nothing_found(result),
        "excluded": [_excluded_json(e) for e in result.excluded],
    }


def deployment_file(option: Option, result: Recommendation) -> str:
    found = option.estimate
    comment = (
        f"# Written by lmi-deploy recommend for {result.ask.model_id}: {result.ask.input_tokens} prompt + "
        f"{result.ask.output_tokens} generated tokens, {result.ask.concurrency} in flight.\n"
        f"# Estimate: p50 {found.request_ms:.0f} ms, {found.step_ms:.2f} ms/token, {found.tokens_per_s:.1f} tokens/s, "
        f"~${option.hourly_usd:g}/h (approximate). Check with lmi-deploy validate, then lmi-deploy bench.\n"
    )
    return comment + yaml.safe_dump(option.settings(result.ask), sort_keys=False)


def write_config(path: Path, option: Option, result: Recommendation) -> None:
    """Write the deployment file whole or not at all."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"--write-config {path}: folder {folder} does not exist; create it or choose another path")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(deployment_file(option, result))
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ConfigError(f"--write-config {path}: cannot write it ({error.strerror})") from None
