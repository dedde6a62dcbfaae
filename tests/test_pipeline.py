"""The GitHub Actions pipeline: the README's test command, cdk-nag + cfn-lint synth, approval-gated OIDC deploy."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "deploy.yml"


def test_pipeline_tests_synthesizes_and_deploys_with_oidc_after_approval() -> None:
    text = WORKFLOW.read_text()
    workflow = yaml.safe_load(text)
    jobs = workflow["jobs"]
    test_steps = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert any(run.strip() == "make test" for run in test_steps)  # the README's command
    assert any("make synth" in run and "cfn-lint" in run for run in test_steps)
    deploy = jobs["deploy"]
    assert deploy["needs"] == "test" and deploy["environment"] == "${{ inputs.stage }}"  # environment = approval
    assert deploy["permissions"]["id-token"] == "write"
    credentials = next(s for s in deploy["steps"] if str(s.get("uses", "")).startswith("aws-actions/configure-aws"))
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    for stored_key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws-access-key-id", "secrets."):
        assert stored_key not in text
    assert any("scripts/validate.py" in s.get("run", "") for s in deploy["steps"])
