"""The rule registry: every rule's stable id, title, why it matters, the fix, a bad example, and its check.

A check is a small function that yields one message per problem (one line naming the key, the value and the fix);
the runner turns each into a :class:`Finding` carrying the rule's id and level. Rules whose problem is found while
the settings are parsed (field types, unknown settings: ``config.py``, ``multi_model.py``) are registered with
``check=None`` so that their id, docs and bad example live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Level = Literal["error", "warning"]
# What a rule runs on: one deployment's view, the models of a multi-model endpoint together, or the parsing of the
# settings themselves (check=None).
Subject = Literal["deployment", "multi-model", "settings"]
# Facts a deployment rule needs; without one the rule is skipped and a warning names the fact (see runner).
Fact = Literal[
    "instance", "engine", "heads", "parameters", "kv", "positions", "config", "properties", "startup_timeout"
]


@dataclass(frozen=True)
class Finding:
    level: Level
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule} {self.message}"


@dataclass(frozen=True)
class Example:
    """A bad example: deployment settings (as ``-c key=value``), a whole deployment file, or a serving.properties
    text with the container, instance and model config.json it is checked against."""

    settings: dict[str, Any] | None = None
    deployment_file: dict[str, Any] | None = None
    properties: str | None = None
    container: str | None = None
    instance_type: str | None = None
    model_config: dict[str, Any] | None = None
    startup_timeout: int | None = None
    files: dict[str, str] | None = None  # files beside the deployment file (adapter folders), path -> content

    def describe(self) -> str:
        """The example as a user would write it (for docs/rules.md)."""
        if self.properties is not None:
            facts = [f"--container {self.container}"]
            facts += [f"--instance-type {self.instance_type}"] if self.instance_type else []
            facts += ["--model-config config.json"] if self.model_config else []
            facts += [f"--startup-timeout {self.startup_timeout}"] if self.startup_timeout else []
            return f"serving.properties ({' '.join(facts)}):\n\n" + "".join(
                f"    {line}\n" for line in self.properties.splitlines()
            )
        values = self.deployment_file if self.deployment_file is not None else self.settings or {}
        text = "deployment settings:\n\n" + "".join(f"    {key}: {value!r}\n" for key, value in values.items())
        for path, content in (self.files or {}).items():
            text += f"\nbeside it, `{path}`" + (f":\n\n    {content}\n" if content else " (empty)\n")
        return text


Messages = Iterable[str]
Check = Callable[..., Messages]
F = TypeVar("F", bound=Check)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    why: str
    fix: str
    example: Example
    level: Level
    subject: Subject
    concern: str  # the module it lives in
    needs: tuple[Fact, ...] = ()
    gate: bool = False  # a gate error stops the rules after it (they would repeat it in other words)
    check: Check | None = field(default=None, compare=False)


RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    if rule.id in RULES:
        raise ValueError(f"rule id {rule.id} is registered twice ({RULES[rule.id].concern}, {rule.concern})")
    RULES[rule.id] = rule
    return rule


def rule(
    rule_id: str,
    *,
    title: str,
    why: str,
    fix: str,
    example: Example,
    level: Level = "error",
    subject: Subject = "deployment",
    needs: tuple[Fact, ...] = (),
    gate: bool = False,
    concern: str | None = None,
) -> Callable[[F], F]:
    """Register the decorated check under ``rule_id``; ``concern``: the rules module whose section of docs/rules.md
    it belongs to, for a rule that lives elsewhere (an engine's own rules live in its ``lmi_deploy/engines/``
    module)."""

    def decorate(check: F) -> F:
        module = concern or check.__module__.rsplit(".", 1)[-1]
        register(Rule(rule_id, title, why, fix, example, level, subject, module, needs, gate, check))
        return check

    return decorate


def parse_rule(
    rule_id: str, *, title: str, why: str, fix: str, example: Example, concern: str, level: Level = "error"
) -> str:
    """Register a rule found while parsing settings (no check function); returns the id for its messages."""
    register(Rule(rule_id, title, why, fix, example, level, "settings", concern))
    return rule_id


def tagged(rule_id: str, message: str) -> str:
    """A message line as users see it: the id first."""
    return f"{rule_id} {message}"
