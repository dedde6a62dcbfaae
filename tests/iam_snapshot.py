"""What every role of a representative set of apps may do, in a form that survives refactoring: the IAM-equivalence
fixture (tests/fixtures/iam_statements.json) and the helper that synthesizes it.

Per role (keyed by stack and construct path, so a role that moves to another logical id shows): its trust policy,
managed policies, and the statements of every policy attached to it; and every resource policy (key, bucket, topic,
repository). Statements are sorted, their actions and resources too; asset hashes, logical-id hashes and
cross-stack export names are masked, references are written as the construct path they point at.

Regenerate (only when a change to what the roles may do is intended, and say so in the commit):
``.venv/bin/python -m tests.iam_snapshot --write``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from lmi_deploy.config import load_config
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment, load_multi_model
from lmi_deploy.multi_render import render_multi
from lmi_deploy.render import render
from stacks.deployment import add_checks, add_deployment
from stacks.multi_model_deployment import add_multi_model_deployment

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "iam_statements.json"
ACCOUNT = "111122223333"
ENVIRONMENT = {"account": ACCOUNT, "region": "us-east-1"}
CDK_JSON_CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]
SUBNETS = "subnet-0123456789abcdef0,subnet-0fedcba9876543210"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# One deployment per way the roles differ. Names are distinct so all of them fit one app (one synth).
SINGLE: dict[str, dict[str, str]] = {
    "default": {},
    "everything": {
        "deployment": "everything",
        "engine": "accelerate",
        "instance_type": "ml.p3.16xlarge",
        "dtype": "fp32",
        "volume_size_gb": "200",
        "autoscaling_max_instances": "4",
        "autoscaling_min_instances": "0",
        "inference_mode": "async",
        "async_notifications": "true",
        "data_capture": "true",
        "vpc_subnet_ids": SUBNETS,
        "vpc_security_group_ids": "sg-0123456789abcdef0",
        "kms_key": "create",
        "hf_token_secret": "hf-token",
        "image": "mirror",
        "alarm_email": "oncall@example.com",
    },
    "vpc-kms-secret-async-capture": {
        "deployment": "guarded",
        "engine": "accelerate",
        "instance_type": "ml.p3.16xlarge",
        "dtype": "fp32",
        "volume_size_gb": "200",
        "inference_mode": "async",
        "data_capture": "true",
        "vpc_subnet_ids": SUBNETS,
        "vpc_id": "vpc-0123456789abcdef0",
        "kms_key": KEY_ARN,
        "hf_token_secret": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:hf-token-AbCdEf",
        "image": "custom",
        "dockerfile_dir": str(ROOT / "images" / "custom-lmi"),
    },
    "isolated-sagemaker-delivery": {
        "deployment": "isolated",
        "engine": "vllm",
        "model_id": "meta-llama/Llama-2-7b-hf",
        "lmi_version": "0.33.0",
        "instance_type": "ml.g5.2xlarge",
        "weights_delivery": "sagemaker",
        "network_isolation": "true",
        "vpc_subnet_ids": SUBNETS,
        "vpc_id": "vpc-0123456789abcdef0",
        "kms_key": "create",
    },
}
MULTI_EXAMPLES = ("chat-llms-inference-components.yaml", "small-models-mme.yaml")
# Inference components of two engines and two weights buckets: one more image and prefix to grant.
MIXED_COMPONENTS: dict[str, Any] = {
    "deployment": "mixed-ic",
    "multi_model": "inference_components",
    "instance_type": "ml.g5.12xlarge",
    "models": [
        {"name": "llama-3-8b", "model_id": "meta-llama/Meta-Llama-3-8B-Instruct", "engine": "vllm"},
        {"name": "mistral-7b", "model_id": "mistralai/Mistral-7B-Instruct-v0.2", "engine": "vllm"},
        {"name": "flan", "model_id": "google/flan-t5-large", "engine": "accelerate", "lmi_version": "0.27.0"},
    ],
}


def synthesize(outdir: Path) -> cdk.App:
    """All of the representative deployments in one app, synthesized (cdk-nag runs: a finding fails here)."""
    app = cdk.App(outdir=str(outdir / "cdk.out"), context=CDK_JSON_CONTEXT)
    for context in SINGLE.values():
        config = load_config(context, environment_defaults=ENVIRONMENT)
        add_deployment(app, config, render(config, outdir / "model_code"))
    multis = [
        load_deployment({"config": str(ROOT / "deployments" / f)}, environment_defaults=ENVIRONMENT)
        for f in MULTI_EXAMPLES
    ]
    multis.append(load_multi_model({}, MIXED_COMPONENTS, ENVIRONMENT))
    for multi in multis:
        assert isinstance(multi, MultiModelDeployment)
        add_multi_model_deployment(app, multi, render_multi(multi, outdir / "model_code"))
    add_checks(app)
    app.synth()
    return app


_HASH = re.compile(r"[0-9a-f]{64}")
_LOGICAL_SUFFIX = re.compile(r"[0-9A-F]{8}(?=[A-Za-z]*$|[^0-9A-Za-z])")
_RESOURCE_POLICIES = {
    "AWS::KMS::Key": "KeyPolicy",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::ECR::Repository": "RepositoryPolicyText",
}


def _paths(stack: cdk.Stack) -> dict[str, str]:
    """Logical id -> construct path under the stack, for every CloudFormation resource of ``stack``."""
    found: dict[str, str] = {}
    for child in stack.node.find_all():
        if isinstance(child, cdk.CfnElement) and cdk.Stack.of(child) is stack:
            found[stack.resolve(child.logical_id)] = child.node.path.removeprefix(stack.node.path + "/")
    return found


def _value(value: Any, paths: dict[str, str]) -> Any:
    """A policy value with intrinsics spelled as readable strings and hashes masked."""
    if isinstance(value, str):
        return _HASH.sub("<hash>", value)
    if isinstance(value, list):
        return [_value(v, paths) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        return "${" + (name if name.startswith("AWS::") else paths.get(name, name)) + "}"
    if set(value) == {"Fn::GetAtt"}:
        logical, attribute = value["Fn::GetAtt"]
        return "${" + paths.get(logical, logical) + "." + attribute + "}"
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(_value(p, paths)) for p in parts)
    if set(value) == {"Fn::ImportValue"}:
        return "${Import:" + _LOGICAL_SUFFIX.sub("<id>", str(_value(value["Fn::ImportValue"], paths))) + "}"
    if set(value) == {"Fn::Sub"}:
        return _value(value["Fn::Sub"], paths)
    return {k: _value(v, paths) for k, v in sorted(value.items())}


def _listed(value: Any) -> list[Any]:
    return sorted((value if isinstance(value, list) else [value]), key=json.dumps)


def _statement(statement: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    normal = {key: _value(value, paths) for key, value in sorted(statement.items())}
    for key in ("Action", "NotAction", "Resource", "NotResource"):
        if key in normal:
            normal[key] = _listed(normal[key])
    for operator in normal.get("Condition", {}).values():
        for key, values in operator.items():
            operator[key] = _listed(values)
    return normal


def _statements(document: dict[str, Any], paths: dict[str, str]) -> list[dict[str, Any]]:
    return sorted((_statement(s, paths) for s in document.get("Statement", [])), key=json.dumps)


def _roles_of(stack: cdk.Stack, template: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    resources: dict[str, Any] = template.get("Resources", {})
    roles: dict[str, Any] = {}
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        properties = resource.get("Properties", {})
        attached = [
            other["Properties"]
            for other in resources.values()
            if other["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
            and {"Ref": logical} in other["Properties"].get("Roles", [])
        ]
        inline = [p["PolicyDocument"] for p in properties.get("Policies", [])]
        roles[f"{stack.stack_name}/{paths[logical]}"] = {
            "trust": _statements(properties["AssumeRolePolicyDocument"], paths),
            "managed": sorted(json.dumps(_value(a, paths)) for a in properties.get("ManagedPolicyArns", [])),
            "statements": sorted(
                [s for p in attached for s in _statements(p["PolicyDocument"], paths)]
                + [s for d in inline for s in _statements(d, paths)],
                key=json.dumps,
            ),
        }
    return roles


def _resource_policies_of(stack: cdk.Stack, template: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for logical, resource in template.get("Resources", {}).items():
        key = _RESOURCE_POLICIES.get(resource["Type"])
        if key is not None and key in resource.get("Properties", {}):
            found[f"{stack.stack_name}/{paths[logical]}"] = _statements(resource["Properties"][key], paths)
    return found


def snapshot(app: cdk.App) -> dict[str, Any]:
    """The normalized IAM of every stack of a synthesized ``app``."""
    assembly = app.synth()
    roles: dict[str, Any] = {}
    resource_policies: dict[str, Any] = {}
    for stack in sorted((c for c in app.node.children if isinstance(c, cdk.Stack)), key=lambda s: s.stack_name):
        template = assembly.get_stack_by_name(stack.stack_name).template
        paths = _paths(stack)
        roles.update(_roles_of(stack, template, paths))
        resource_policies.update(_resource_policies_of(stack, template, paths))
    return {"roles": roles, "resource_policies": resource_policies}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    args = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory() as tmp:
        text = json.dumps(snapshot(synthesize(Path(tmp))), indent=1, sort_keys=True) + "\n"
    if args == ["--write"]:
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(text)
        print(f"wrote {FIXTURE.relative_to(ROOT)}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
