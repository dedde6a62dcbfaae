"""The rule registry itself: every rule's bad example fires that rule and no other error, docs/rules.md is current,
the rules' modules import without cycles, and no rule function grows past ~50 lines."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from lmi_deploy.commands import validate
from lmi_deploy.config import load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from lmi_deploy.rules import docs, runner  # noqa: F401  (registers every rule)
from lmi_deploy.rules.registry import RULES, Finding, Rule

PACKAGE = Path(__file__).resolve().parent.parent / "lmi_deploy"
ACCOUNT = {"account": "111122223333"}


def _from_settings(rule: Rule, tmp_path: Path) -> list[Finding]:
    example = rule.example
    try:
        for name, content in (example.files or {}).items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(content)
        if example.deployment_file is not None:
            path = tmp_path / "deployment.yaml"
            path.write_text(yaml.safe_dump(example.deployment_file))
            loaded = load_deployment({"config": str(path)}, environment_defaults=ACCOUNT)
        else:
            loaded = load_config(example.settings, environment_defaults=ACCOUNT)
    except ConfigError as error:
        return validate.findings_of(error)
    if isinstance(loaded, MultiModelDeployment):
        warnings = [w for m in loaded.models for w in m.config.resolved.warnings]
        return warnings + [Finding("warning", *w.split(" ", 1)) for w in loaded.warnings]  # type: ignore[arg-type]
    return list(loaded.resolved.findings)


def _from_properties(rule: Rule, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[Finding]:
    example = rule.example
    path = tmp_path / "serving.properties"
    path.write_text(example.properties or "")
    args = ["--serving-properties", str(path), "--container", str(example.container), "--json"]
    args += ["--instance-type", example.instance_type] if example.instance_type else []
    args += ["--startup-timeout", str(example.startup_timeout)] if example.startup_timeout else []
    if example.model_config is not None:
        (tmp_path / "config.json").write_text(json.dumps(example.model_config))
        args += ["--model-config", str(tmp_path / "config.json")]
    validate.main(args)
    report = json.loads(capsys.readouterr().out)
    return [Finding(level, f["rule"], f["message"]) for level in ("error", "warning") for f in report[level + "s"]]


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_each_bad_example_fires_its_rule_and_no_other_error(
    rule_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = RULES[rule_id]
    if rule.example.properties is not None:
        findings = _from_properties(rule, tmp_path, capsys)
    else:
        findings = _from_settings(rule, tmp_path)
    errors = sorted({f.rule for f in findings if f.level == "error"})
    if rule.level == "error":
        assert errors == [rule_id], findings
    else:
        assert errors == [] and rule_id in {f.rule for f in findings}, findings
    assert all(f.message and "\n" not in f.message for f in findings)


def test_docs_are_generated_from_the_registry() -> None:
    assert docs.main(["--check"]) == 0, "run python -m lmi_deploy.rules.docs"
    text = docs.DOCS.read_text()
    assert all(f"### {rule_id}: " in text for rule_id in RULES)


def _module_imports(path: Path) -> set[str]:
    """lmi_deploy modules a file imports at module level (not inside functions or TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmi_deploy"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(
                    candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() else node.module
                )
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lmi_deploy")}
    return found


def test_the_package_imports_without_cycles() -> None:
    modules = {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): path
        for path in PACKAGE.rglob("*.py")
        if "model_configs" not in path.parts
    }
    graph = {name.removesuffix(".__init__"): _module_imports(path) for name, path in modules.items()}
    seen: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state = seen.get(node)
        assert state != "open", f"import cycle: {' -> '.join([*path, node])}"
        if state == "done" or node not in graph:
            return
        seen[node] = "open"
        for child in graph[node]:
            visit(child, [*path, node])
        seen[node] = "done"

    for name in sorted(n for n in graph if n.startswith("lmi_deploy.rules")):
        visit(name, [])
    assert {n for n in graph if n.startswith("lmi_deploy.rules.")} >= {"lmi_deploy.rules.registry"}


def test_rule_functions_stay_small() -> None:
    too_long = [
        f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in (PACKAGE / "rules").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.end_lineno and node.end_lineno - node.lineno + 1 > 50
    ]
    assert too_long == []


@pytest.mark.parametrize(
    ("settings", "fires"),
    [
        ({"lmi_version": "0.33.0", "instance_type": "ml.g4dn.12xlarge"}, True),  # TensorRT-LLM 0.21
        ({"lmi_version": "0.32.0", "instance_type": "ml.g4dn.12xlarge"}, False),  # TensorRT-LLM 0.12 still had Turing
        ({"lmi_version": "0.33.0", "instance_type": "ml.g5.12xlarge"}, False),  # Ampere
    ],
)
def test_tensorrt_llm_on_t4_follows_the_bundled_release(settings: dict[str, str], fires: bool) -> None:
    base = {"engine": "tensorrt-llm", "model_id": "meta-llama/Llama-2-7b-hf", "dtype": "fp16"}
    try:
        findings = list(load_config({**base, **settings}, environment_defaults=ACCOUNT).resolved.findings)
    except ConfigError as error:
        findings = validate.findings_of(error)
    assert ("LMI714" in {f.rule for f in findings}) is fires, findings
