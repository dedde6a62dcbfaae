"""docs/rules.md, generated from the registry: ``python -m lmi_deploy.rules.docs [--check]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lmi_deploy.rules import multi_model, runner  # noqa: F401  (registers every rule)
from lmi_deploy.rules.registry import RULES, Rule

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "rules.md"
_CONCERNS = {
    "settings": "Settings",
    "runner": "Settings",
    "model_family": "Model family",
    "hardware": "Hardware",
    "parallelism": "Parallelism",
    "precision": "Precision",
    "capacity": "Capacity and memory",
    "timeouts": "Timeouts",
    "scaling": "Operations: scaling",
    "network": "Operations: isolation and secrets",
    "endpoint": "Operations: endpoint form",
    "handlers": "Versions and handler names",
    "properties": "serving.properties lines",
    "delivery": "Weights delivery and partitioning",
    "multi_model": "Multi-model endpoints",
}


def _applies(rule: Rule) -> str:
    if rule.subject == "settings":
        return "settings being parsed"
    if rule.subject == "multi-model":
        return "the models of a multi-model deployment, together"
    if "config" in rule.needs:
        return "deployment configs"
    if "properties" in rule.needs:
        return "serving.properties files"
    return "deployment configs and serving.properties files"


def _section(rule: Rule) -> str:
    needs = [n for n in rule.needs if n not in ("config", "properties")]
    lines = [
        f"### {rule.id}: {rule.title}",
        "",
        f"*{rule.level}*, on {_applies(rule)}" + (f"; needs: {', '.join(needs)}" if needs else "") + ".",
        "",
        f"**Why:** {rule.why}",
        "",
        f"**Fix:** {rule.fix}",
        "",
        f"**Bad example**, {rule.example.describe()}",
    ]
    return "\n".join(lines)


def render() -> str:
    header = [
        "# Validation rules",
        "",
        "Generated from the registry in `lmi_deploy/rules/` by `python -m lmi_deploy.rules.docs`; do not edit by hand.",
        f"{len(RULES)} rules. Every message starts with its rule's id (`lmi-deploy validate --json` reports it as",
        "`rule`). Errors stop a deploy; warnings are printed. A rule that needs a fact the input lacks (the instance,",
        "the model's config.json, the startup timeout) is skipped, and LMI010 names the fact.",
        "",
    ]
    sections: list[str] = []
    current = ""
    for rule in sorted(RULES.values(), key=lambda r: r.id):
        concern = _CONCERNS.get(rule.concern, rule.concern)
        if concern != current:
            sections += [f"## {concern}", ""]
            current = concern
        sections += [_section(rule), ""]
    return "\n".join(header + sections).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/rules.md is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOCS.read_text() if DOCS.exists() else ""
        if current != text:
            print(f"{DOCS} is out of date: run python -m lmi_deploy.rules.docs", file=sys.stderr)
            return 1
        return 0
    DOCS.write_text(text)
    print(f"wrote {DOCS} ({len(RULES)} rules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
