"""Run the registry on a view: gate rules, then the derivation pipeline, then every other rule that can apply.

A rule that needs a fact the view lacks is skipped; each missing fact becomes one LMI010 warning that names the
fact, how to give it, and the rules it would enable.
"""

from __future__ import annotations

from collections.abc import Iterable

from lmi_deploy.rules import (  # noqa: F401  (each module registers its rules)
    adapters,
    capacity,
    delivery,
    endpoint,
    handlers,
    hardware,
    model_family,
    network,
    parallelism,
    precision,
    properties,
    scaling,
    settings,
    timeouts,
)
from lmi_deploy.rules.derive import Derived, derive
from lmi_deploy.rules.registry import RULES, Example, Finding, Rule, parse_rule
from lmi_deploy.rules.view import View

SKIPPED = parse_rule(
    settings.SKIPPED,
    title="A check was skipped for lack of a fact",
    why="Rules that need the instance, the model's config.json or the startup timeout cannot run without them; "
    "lmi-deploy says so rather than pass silently.",
    fix="Give the fact the message names (--instance-type, --model-config/model_config, --startup-timeout).",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/model/\noption.tensor_parallel_degree=4\n"
        "option.model_loading_timeout=1200\n",
        container="0.28.0",
    ),
    concern="runner",
    level="warning",
)
# What each missing fact is and how to give it (facts not listed are source-specific and skip silently).
_GROUP = {"heads": "model", "parameters": "model", "kv": "model"}
_WANTED: dict[str, str] = {
    "instance": "the instance type: give --instance-type",
    "engine": "the serving engine (engine=, option.rolling_batch and option.entryPoint do not say): give the image tag",
    "model": "the model's config.json (heads, size, KV-cache shape): give --model-config",
    "startup_timeout": "the startup health-check timeout: give --startup-timeout",
}


def deployment_rules(gate: bool) -> list[Rule]:
    return sorted(
        (r for r in RULES.values() if r.subject == "deployment" and r.gate == gate and r.check is not None),
        key=lambda r: r.id,
    )


def _apply(rules: Iterable[Rule], view: View, derived: Derived, skipped: dict[str, list[str]]) -> list[Finding]:
    findings: list[Finding] = []
    for rule in rules:
        missing = [fact for fact in rule.needs if not view.known(fact)]
        if missing:
            for fact in missing:
                skipped.setdefault(_GROUP.get(fact, fact), []).append(rule.id)
            continue
        assert rule.check is not None
        findings += [Finding(rule.level, rule.id, message) for message in rule.check(view, derived)]
    return findings


def _skipped_warnings(view: View, skipped: dict[str, list[str]]) -> list[Finding]:
    warnings = []
    for fact, how in _WANTED.items():
        if fact not in skipped:
            continue
        ids = ", ".join(sorted(set(skipped[fact])))
        if fact == "model" and view.facts_note:
            how = f"model facts ({view.facts_note})" + ("" if "model_config" in view.facts_note else "; " + how)
        warnings.append(Finding("warning", SKIPPED, f"not checked ({ids}) for lack of {how}"))
    return warnings


def check(view: View) -> tuple[Derived, list[Finding]]:
    """Every rule that can apply to ``view``, in id order. Errors of the settings' gates (the container and instance
    exist) stop the other gates; errors of any gate stop the rest (they would repeat it in other words)."""
    skipped: dict[str, list[str]] = {}
    gates = deployment_rules(gate=True)
    findings = _apply([r for r in gates if r.concern == "settings"], view, Derived(), skipped)
    if not any(f.level == "error" for f in findings):
        findings += _apply([r for r in gates if r.concern != "settings"], view, Derived(), skipped)
    if any(f.level == "error" for f in findings):
        return Derived(), findings
    derived = derive(view)
    findings += _apply(deployment_rules(gate=False), view, derived, skipped)
    return derived, findings + _skipped_warnings(view, skipped)
