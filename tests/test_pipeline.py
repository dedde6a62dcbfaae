"""The GitHub Actions pipeline: the README's test command, cdk-nag + cfn-lint synth, approval-gated OIDC deploys;
and, parsed, its hardening: no expression inside a shell, every action pinned to a commit, no credentials kept by
checkout, runs that never overlap, deploy environments fixed by the job (the role's trust pins them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"
DEPLOY_ACTION = ROOT / ".github" / "actions" / "deploy" / "action.yml"
FILES = [WORKFLOW, DEPLOY_ACTION]


def test_pipeline_tests_synthesizes_and_deploys_with_oidc_after_approval() -> None:
    text = WORKFLOW.read_text() + DEPLOY_ACTION.read_text()
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    test_steps = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert any(run.strip() == "make test" for run in test_steps)  # the README's command
    assert any("cdk synth" in run and "cfn-lint" in run for run in test_steps)
    assert jobs["deploy-staging"]["needs"] == "test"
    for name in ("deploy-staging", "deploy-production"):
        steps = jobs[name]["steps"]
        assert any(step.get("uses") == "./.github/actions/deploy" for step in steps)
        assert jobs[name]["permissions"]["id-token"] == "write"
    action = yaml.safe_load(DEPLOY_ACTION.read_text())["runs"]["steps"]
    credentials = next(s for s in action if str(s.get("uses", "")).startswith("aws-actions/configure-aws"))
    assert credentials["with"]["role-to-assume"] == "${{ inputs.role-to-assume }}"
    assert all(
        step["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
        for name in ("deploy-staging", "deploy-production")
        for step in jobs[name]["steps"]
        if step.get("uses") == "./.github/actions/deploy"
    )
    for stored_key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws-access-key-id", "secrets."):
        assert stored_key not in text
    runs = [s.get("run", "") for s in action]
    assert runs.index(next(r for r in runs if "scripts/validate.py" in r)) < runs.index(
        next(r for r in runs if "cdk deploy" in r)
    )


def _steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    if "runs" in document:  # a composite action
        return list(document["runs"]["steps"])
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def test_no_expression_inside_run_and_every_action_pinned_to_a_commit() -> None:
    for path in FILES:
        document = yaml.safe_load(path.read_text())
        for step in _steps(document):
            assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name')}: pass inputs through env:"
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), f"{path.name}: {uses} is not pinned"
            if uses and uses.startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: checkout keeps a token"
        for line in path.read_text().splitlines():
            if re.search(r"uses: [\w.-]+/[\w.-]+@", line):
                assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), f"{path.name}: name the tag: {line}"


def test_deploy_jobs_fix_their_environment_and_runs_never_overlap() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"] == {"contents": "read"}
    assert "group" in workflow["concurrency"]
    deploy_jobs = {name: job for name, job in workflow["jobs"].items() if job.get("permissions", {}).get("id-token")}
    assert set(deploy_jobs) == {"deploy-staging", "deploy-production"}
    for name, job in deploy_jobs.items():
        environment = job["environment"]
        assert isinstance(environment, str) and "${{" not in environment, f"{name}: the environment comes from input"
        assert name == f"deploy-{environment}"
        assert job["concurrency"] == {"group": f"deploy-{environment}", "cancel-in-progress": False}
    assert deploy_jobs["deploy-production"]["needs"] == "deploy-staging"
    for name, job in workflow["jobs"].items():
        if name not in deploy_jobs:
            assert "id-token" not in job.get("permissions", {}), f"{name} may not mint credentials"
    dispatch_inputs = workflow[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads the key `on` as true
    assert "stage" not in dispatch_inputs and dispatch_inputs["production"]["type"] == "boolean"
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "repo:<owner>/<repo>:environment:production" in operations
