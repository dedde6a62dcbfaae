"""Isolation and secrets: VPC placement, network isolation, the KMS key and the Hub token's secret."""

from __future__ import annotations

import re
from collections.abc import Iterator

from lmi_deploy.identifiers import SECRET_NAME
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View

_KMS_KEY_ARN = re.compile(
    r"arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/"
    r"(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
_HUB_TOKEN = re.compile(r"(hf_|api_org_)[A-Za-z0-9]{20,}")
_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}"
)
_SUBNET = "subnet-0123456789abcdef0"
_GROUP = "sg-0123456789abcdef0"
_KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


@rule(
    "LMI621",
    title="VPC settings that place nothing, or conflict",
    why="The endpoint joins a VPC through its subnets; lmi-deploy creates the security group only when it knows the "
    "VPC and none is given.",
    fix="Give vpc_subnet_ids with vpc_security_group_ids or vpc_id (not both).",
    example=Example(settings={"vpc_security_group_ids": _GROUP}),
    needs=("config",),
)
def vpc_complete(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    subnets, groups = c.vpc_subnet_ids, c.vpc_security_group_ids
    if groups and not subnets:
        yield (
            "vpc_security_group_ids are set but vpc_subnet_ids are not: the endpoint joins a VPC only through its "
            "subnets; add vpc_subnet_ids (private subnets, one per availability zone you want)"
        )
    if c.vpc_id and not subnets:
        yield f"vpc_id={c.vpc_id!r} without vpc_subnet_ids places nothing in the VPC: add vpc_subnet_ids"
    elif subnets and not groups and not c.vpc_id:
        yield (
            "vpc_subnet_ids without vpc_security_group_ids: lmi-deploy creates the security group and needs the "
            "subnets' vpc_id for it; set vpc_id, or give vpc_security_group_ids"
        )
    elif subnets and groups and c.vpc_id:
        yield (
            f"vpc_id={c.vpc_id!r} is only used to create a security group, but vpc_security_group_ids are given: "
            "remove vpc_id"
        )


@rule(
    "LMI622",
    title="A subnet or security group listed twice",
    why="SageMaker refuses a VpcConfig with duplicate ids.",
    fix="List each id once.",
    example=Example(settings={"vpc_subnet_ids": f"{_SUBNET},{_SUBNET}", "vpc_security_group_ids": _GROUP}),
    needs=("config",),
)
def vpc_ids_unique(view: View, derived: Derived) -> Iterator[str]:
    for kind in ("vpc_subnet_ids", "vpc_security_group_ids"):
        ids = getattr(view.config, kind)
        for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
            yield f"{kind} lists {duplicate} twice: list each once"


@rule(
    "LMI623",
    title="Network isolation with the container downloading the weights",
    why="An isolated container has no network and no credentials, so it cannot download from S3.",
    fix="Use weights_delivery=sagemaker (SageMaker copies them to /opt/ml/model before the container starts).",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "network_isolation": "true"}),
    needs=("config",),
)
def isolation_needs_sagemaker_delivery(view: View, derived: Derived) -> Iterator[str]:
    if view.config.network_isolation and view.weights_delivery == "container":
        yield (
            "network_isolation=true keeps the container off the network (no S3, no Hub, no credentials), but "
            "weights_delivery=container has the container download the weights itself: use "
            "weights_delivery=sagemaker (SageMaker copies them to /opt/ml/model before the container starts)"
        )


@rule(
    "LMI624",
    title="kms_key is not a key ARN of the deployment's region",
    why="The role's permissions name the key by ARN, and KMS keys are regional.",
    fix="Give the key's ARN (arn:aws:kms:<region>:<account>:key/<id>) in the deployment's region, or kms_key=create.",
    example=Example(settings={"kms_key": "arn:aws:kms:us-east-1:111122223333:alias/my-key"}),
    needs=("config",),
)
def kms_key_arn(view: View, derived: Derived) -> Iterator[str]:
    key, region = view.config.kms_key, view.config.region
    if key is None or key == "create":
        return
    match = _KMS_KEY_ARN.fullmatch(key)
    if "alias/" in key:
        yield (
            f"kms_key={key!r} is an alias: give the key's ARN (arn:aws:kms:<region>:<account>:key/<id>), which the "
            "role's permissions name, or kms_key=create"
        )
    elif not match:
        yield f"kms_key={key!r} is neither 'create' nor a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>)"
    elif match.group("region") != region:
        yield (
            f"kms_key is in {match.group('region')} but the deployment is in {region}: KMS keys are regional; use a "
            "key of that region, or kms_key=create"
        )


@rule(
    "LMI625",
    title="hf_token_secret holds a token",
    why="The setting names a Secrets Manager secret; a token written there leaks into the template and logs.",
    fix="Store the token in Secrets Manager and set hf_token_secret to the secret's name or ARN.",
    example=Example(settings={"hf_token_secret": "hf_" + "a" * 30}),
    needs=("config",),
)
def hub_token_not_inline(view: View, derived: Derived) -> Iterator[str]:
    secret = view.config.hf_token_secret
    if secret is not None and _HUB_TOKEN.fullmatch(secret.strip()):
        yield (
            "hf_token_secret holds what looks like a Hub token itself (the value is not shown here): store the token "
            "in Secrets Manager and set hf_token_secret to the secret's name or ARN"
        )


@rule(
    "LMI626",
    title="hf_token_secret is not a secret name or ARN of the deployment's region",
    why="The container reads the secret in its own region, by a valid name or ARN.",
    fix="Give the secret's name, or its ARN in the deployment's region.",
    example=Example(settings={"hf_token_secret": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:hub"}),
    needs=("config",),
)
def hub_token_secret_valid(view: View, derived: Derived) -> Iterator[str]:
    secret = view.config.hf_token_secret
    if secret is None or _HUB_TOKEN.fullmatch(secret.strip()):
        return
    if secret.startswith("arn:"):
        match = _SECRET_ARN.fullmatch(secret)
        if not match:
            yield (
                f"hf_token_secret={secret!r} is not a Secrets Manager secret ARN "
                "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
            )
        elif match.group("region") != view.config.region:
            yield (
                f"hf_token_secret is in {match.group('region')} but the deployment is in {view.config.region}: the "
                "container reads it in its own region; replicate the secret there"
            )
    elif not SECRET_NAME.fullmatch(secret):
        yield f"hf_token_secret={secret!r} is not a Secrets Manager secret name (1-512 of A-Z a-z 0-9 / _ + = . @ -)"
