"""Production operations: scheduled scaling, isolation (VPC, network isolation, KMS, Hub token), images, async
inference and data capture. One synthesized app with everything enabled is shared by the template assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from lmi_deploy.config import load_config
from lmi_deploy.errors import ConfigError
from tests.test_stacks import ACCOUNT, synth

SCHEDULES = [
    {"name": "night", "schedule": "cron(0 20 ? * MON-FRI *)", "min_instances": 1, "max_instances": 2},
    {
        "name": "morning",
        "schedule": "cron(0 7 ? * MON-FRI *)",
        "min_instances": 2,
        "max_instances": 6,
        "timezone": "Europe/Berlin",
    },
]


def refused(context: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(context)
    return str(raised.value)


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Template:
    tmp = tmp_path_factory.mktemp("scheduled")
    _, stacks, _ = synth(
        tmp,
        instance_count="2",
        autoscaling_max_instances="6",
        autoscaling_min_instances="1",
        autoscaling_schedules=json.dumps(SCHEDULES),  # as `-c key=value` passes it
    )
    return Template.from_stack(stacks.endpoint)


def test_schedules_become_scheduled_actions(scheduled: Template) -> None:
    scheduled.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "MinCapacity": 1,
            "MaxCapacity": 6,
            "ScheduledActions": [
                {
                    "ScheduledActionName": "night",
                    "Schedule": "cron(0 20 ? * MON-FRI *)",
                    "ScalableTargetAction": {"MinCapacity": 1, "MaxCapacity": 2},
                    "Timezone": "UTC",
                },
                {
                    "ScheduledActionName": "morning",
                    "Schedule": "cron(0 7 ? * MON-FRI *)",
                    "ScalableTargetAction": {"MinCapacity": 2, "MaxCapacity": 6},
                    "Timezone": "Europe/Berlin",
                },
            ],
        },
    )


def test_schedules_from_a_deployment_file(deployment_file) -> None:
    path = deployment_file(
        "autoscaling_max_instances: 4\n"
        "autoscaling_schedules:\n"
        "  - {name: weekend, schedule: 'cron(0 0 ? * SAT *)', min_instances: 1, max_instances: 1}\n"
        "  - {name: weekday, schedule: 'rate(1 day)', min_instances: 1, max_instances: 4}\n"
    )
    config = load_config({"config": str(path)})
    assert [s.name for s in config.autoscaling_schedules] == ["weekend", "weekday"]
    assert config.minimum_instances == 1 and config.autoscaling_floor == 1


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"autoscaling_schedules": json.dumps(SCHEDULES[:1])},
            "autoscaling_schedules change the bounds of autoscaling, which is off: set autoscaling_max_instances",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "min_instances": 3, "max_instances": 2}]),
            },
            "autoscaling_schedules 'night': min_instances=3 is above max_instances=2",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "max_instances": 5}]),
            },
            "max_instances=5 is above autoscaling_max_instances=4",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "schedule": "cron(0 20 * * MON-FRI *)"}]),
            },
            "needs '?' in exactly one of day-of-month and day-of-week",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "schedule": "cron(0 25 ? * * *)"}]),
            },
            "cron field hours='25' is outside 0-23",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "schedule": "cron(0 20 * *)"}]),
            },
            "cron(...) takes 6 fields",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "schedule": "every night"}]),
            },
            "is not a schedule expression",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "schedule": "rate(1 days)"}]),
            },
            "takes the singular unit for 1",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "timezone": "Mars/Olympus"}]),
            },
            "timezone='Mars/Olympus' is not an IANA time zone",
        ),
        (
            {"autoscaling_max_instances": "4", "autoscaling_schedules": json.dumps([SCHEDULES[0], SCHEDULES[0]])},
            "two schedules named 'night'",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "min_instances": 0}]),
            },
            "min_instances=0 would leave a real-time endpoint without instances",
        ),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "min_instances": "x"}]),
            },
            "invalid autoscaling_schedules[0].min_instances='x'",
        ),
        ({"autoscaling_schedules": "[{bad json"}, "invalid autoscaling_schedules='[{bad json': is not valid JSON"),
        (
            {
                "autoscaling_max_instances": "4",
                "autoscaling_schedules": json.dumps([{**SCHEDULES[0], "schedule": "rate(12 hours)\n"}]),
            },
            "holds a control character",  # refused before the schedule rule sees it ...
        ),
        ({"autoscaling_min_instances": "1"}, "autoscaling_min_instances=1 needs autoscaling"),
        (
            {"autoscaling_max_instances": "4", "autoscaling_min_instances": "0"},
            "autoscaling_min_instances=0: only asynchronous endpoints can scale to zero",
        ),
        (
            {"autoscaling_max_instances": "4", "autoscaling_min_instances": "2"},
            "autoscaling_min_instances=2 is above instance_count=1",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_invalid_scaling_is_refused_in_one_line(context: dict[str, Any], message: str) -> None:
    text = refused(context)
    assert message in text, text
    assert "\n" not in text


def test_schedule_expressions_are_matched_whole() -> None:
    """... and the rule itself matches the whole expression too ('$' alone let a trailing newline through)."""
    from lmi_deploy.rules.scaling import schedule_problem

    assert schedule_problem("rate(12 hours)") is None
    assert schedule_problem("rate(12 hours)\n") is not None


# ---- isolation -------------------------------------------------------------------------------------------------

SUBNETS = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
ISOLATED = {
    "engine": "vllm",
    "model_id": "meta-llama/Llama-2-7b-hf",
    "lmi_version": "0.33.0",
    "instance_type": "ml.g5.2xlarge",
    "weights_delivery": "sagemaker",
    "network_isolation": "true",
    "vpc_subnet_ids": ",".join(SUBNETS),
    "vpc_id": "vpc-0123456789abcdef0",
    "kms_key": "create",
}
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, Template, Path]:
    tmp = tmp_path_factory.mktemp("isolated")
    _, stacks, _ = synth(tmp, **ISOLATED)
    return Template.from_stack(stacks.artifacts), Template.from_stack(stacks.endpoint), tmp


def statements(template: Template) -> dict[str, dict[str, Any]]:
    policy = next(
        iter(template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": Match.any_value()}}).values())
    )
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_vpc_with_a_created_security_group_and_network_isolation(isolated) -> None:
    _, endpoint, _ = isolated
    endpoint.resource_count_is("AWS::EC2::SecurityGroup", 1)
    endpoint.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "VpcId": "vpc-0123456789abcdef0",
            "SecurityGroupIngress": Match.absent(),
            "SecurityGroupEgress": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 443,
                    "ToPort": 443,
                    "CidrIp": "0.0.0.0/0",
                    "Description": Match.any_value(),
                }
            ],
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "EnableNetworkIsolation": True,
            "VpcConfig": {
                "Subnets": SUBNETS,
                "SecurityGroupIds": [{"Fn::GetAtt": [Match.string_like_regexp("NetworkSecurityGroup"), "GroupId"]}],
            },
        },
    )
    found = statements(endpoint)
    assert "ec2:DescribeSubnets" in found["DescribeNetwork"]["Action"] and found["DescribeNetwork"]["Resource"] == "*"
    assert found["UseSubnetsAndGroups"]["Action"] == "ec2:CreateNetworkInterface"
    assert len(found["UseSubnetsAndGroups"]["Resource"]) == 3  # two subnets and the group
    managed = found["ManageInterfacesInSubnets"]
    assert sorted(managed["Action"]) == [
        "ec2:CreateNetworkInterface",
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterface",
    ]
    assert len(managed["Condition"]["ArnEquals"]["ec2:Subnet"]) == 2
    assert "network-interface/*" in json.dumps(managed["Resource"])


def test_given_security_groups_are_used_as_they_are(tmp_path: Path) -> None:
    config = load_config(
        {"vpc_subnet_ids": SUBNETS[0], "vpc_security_group_ids": '["sg-0123456789abcdef0"]'},
        environment_defaults={"account": ACCOUNT},
    )
    assert config.vpc_security_group_ids == ("sg-0123456789abcdef0",) and config.vpc_subnet_ids == (SUBNETS[0],)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"vpc_security_group_ids": "sg-0123456789abcdef0"},
            "vpc_security_group_ids are set but vpc_subnet_ids are not",
        ),
        ({"vpc_id": "vpc-0123456789abcdef0"}, "without vpc_subnet_ids places nothing in the VPC"),
        ({"vpc_subnet_ids": SUBNETS[0]}, "lmi-deploy creates the security group and needs the subnets' vpc_id"),
        (
            {
                "vpc_subnet_ids": SUBNETS[0],
                "vpc_security_group_ids": "sg-0123456789abcdef0",
                "vpc_id": "vpc-0123456789abcdef0",
            },
            "is only used to create a security group",
        ),
        ({"vpc_subnet_ids": "subnet-xyz"}, "invalid vpc_subnet_ids[0]='subnet-xyz'"),
        (
            {"vpc_subnet_ids": f"{SUBNETS[0]},{SUBNETS[0]}", "vpc_id": "vpc-0123456789abcdef0"},
            "lists subnet-0123456789abcdef0 twice",
        ),
        ({"network_isolation": "true"}, "network_isolation=true keeps the container off the network"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_invalid_isolation_is_refused_in_one_line(context: dict[str, Any], message: str) -> None:
    text = refused(context)
    assert message in text, text
    assert "\n" not in text


def test_isolated_templates_pass_cfn_lint(isolated) -> None:
    _, _, tmp = isolated
    templates = sorted(str(p) for p in (tmp / "cdk.out").glob("*.template.json"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *templates], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- customer-managed KMS key ----------------------------------------------------------------------------------


def test_created_key_encrypts_bucket_logs_and_topic_but_not_the_nvme_volume(isolated) -> None:
    artifacts, endpoint, _ = isolated
    artifacts.resource_count_is("AWS::KMS::Key", 1)
    artifacts.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {
                "EnableKeyRotation": True,
                "KeyPolicy": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Sid": "EndpointLogGroup",
                                    "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
                                    "Condition": {
                                        "ArnEquals": {"kms:EncryptionContext:aws:logs:arn": Match.any_value()}
                                    },
                                }
                            ),
                            Match.object_like(
                                {
                                    "Sid": "AlarmsPublishToEncryptedTopic",
                                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                }
                            ),
                        ]
                    )
                },
            },
            "DeletionPolicy": "Retain",
        },
    )
    assert "log-group:/aws/sagemaker/Endpoints/llama-2-7b-hf" in json.dumps(artifacts.find_resources("AWS::KMS::Key"))
    artifacts.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/lmi-deploy/llama-2-7b-hf"})
    artifacts.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": f"llama-2-7b-hf-{ACCOUNT}-us-east-1",
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": {"Fn::GetAtt": [Match.string_like_regexp("StoreKey"), "Arn"]},
                        },
                    }
                ]
            },
        },
    )
    imported = {"Fn::ImportValue": Match.string_like_regexp("StoreKey")}
    endpoint.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/aws/sagemaker/Endpoints/llama-2-7b-hf", "KmsKeyId": imported}
    )
    endpoint.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": imported})
    # ml.g5 has NVMe instance storage only: SageMaker refuses KmsKeyId there
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {"KmsKeyId": Match.absent()})
    found = statements(endpoint)
    assert found["UseDeploymentKey"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "Fn::ImportValue" in json.dumps(found["UseDeploymentKey"]["Resource"])


def test_existing_key_on_an_ebs_instance_encrypts_the_volume(tmp_path: Path) -> None:
    config, stacks, _ = synth(
        tmp_path,
        kms_key=KEY_ARN,
        instance_type="ml.p3.16xlarge",
        tensor_parallel_degree="8",
        volume_size_gb="200",
        dtype="fp32",
    )
    assert config.volume_kms_key and not any("NVMe" in n for n in config.resolved.notes)
    endpoint = Template.from_stack(stacks.endpoint)
    endpoint.has_resource_properties("AWS::SageMaker::EndpointConfig", {"KmsKeyId": KEY_ARN})
    endpoint.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": KEY_ARN})
    assert statements(endpoint)["UseDeploymentKey"]["Resource"] == KEY_ARN
    artifacts = Template.from_stack(stacks.artifacts)
    artifacts.resource_count_is("AWS::KMS::Key", 0)
    artifacts.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    Match.object_like(
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}}
                    )
                ]
            }
        },
    )


def test_kms_on_nvme_only_instances_is_noted() -> None:
    config = load_config({"kms_key": "create"})
    assert not config.volume_kms_key
    assert any("ml.g5.12xlarge has NVMe instance storage only" in note for note in config.resolved.notes)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/mine", "is an alias: give the key's ARN"),
        ("my-key", "is neither 'create' nor a KMS key ARN"),
        (KEY_ARN.replace("us-east-1", "eu-west-1"), "kms_key is in eu-west-1 but the deployment is in us-east-1"),
    ],
)
def test_invalid_kms_key_is_refused(value: str, message: str) -> None:
    text = refused({"kms_key": value})
    assert message in text and "\n" not in text


# ---- Hugging Face Hub token ------------------------------------------------------------------------------------


def test_hub_token_secret_reaches_only_a_rendered_handler_by_its_id(everything) -> None:
    config, _, endpoint, tmp = everything  # engine=accelerate (custom handler), hf_token_secret=hf-token
    assert config.endpoint_reads_hub_token
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {"PrimaryContainer": Match.object_like({"Environment": {"HF_TOKEN_SECRET_ID": "hf-token"}})},
    )
    found = statements(endpoint)["ReadHubTokenSecret"]
    assert found["Action"] == "secretsmanager:GetSecretValue"
    assert json.dumps(found["Resource"]).endswith(f':secretsmanager:us-east-1:{ACCOUNT}:secret:hf-token-??????"]]}}')
    model_py = (tmp / "model_code" / config.deployment / "model.py").read_text()
    assert "HUB_TOKEN_SECRET = (HUB_TOKEN_SECRET_ENV, HUB_TOKEN_SECRET_REGION)" in model_py
    assert "hub_token_secret=HUB_TOKEN_SECRET," in model_py
    assert "HUB_TOKEN_SECRET_ENV = 'HF_TOKEN_SECRET_ID'" in model_py


def test_rendered_handler_fetches_the_token_from_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered handler, run against Secrets Manager (moto): HF_TOKEN is set (from JSON too) before it loads."""
    import os

    import boto3
    from moto import mock_aws

    from lmi_deploy.render import render
    from lmi_deploy.runtime import load_handler

    code = render(load_config({"engine": "accelerate", "hf_token_secret": "hf-token"}), tmp_path)
    handler = load_handler(code.directory / "model.py")
    seen: list[str | None] = []
    monkeypatch.setattr(handler.HANDLER, "load", lambda properties: seen.append(os.environ.get("HF_TOKEN")) or ())
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="hf-token", SecretString=json.dumps({"token": "hf_fromsecret"})
        )
        monkeypatch.setenv("HF_TOKEN_SECRET_ID", "hf-token")
        assert handler.handle(handler.Input.of({})) is None  # the empty warm-up call loads
    assert seen == ["hf_fromsecret"] and os.environ["HF_TOKEN"] == "hf_fromsecret"


def test_builtin_handlers_and_isolated_containers_get_no_secret(isolated) -> None:
    config = load_config({**ISOLATED, "hf_token_secret": "hf-token"})
    assert not config.endpoint_reads_hub_token
    assert any("the endpoint gets no access to it (the isolated container" in n for n in config.resolved.notes)
    _, endpoint, _ = isolated
    assert "ReadHubTokenSecret" not in statements(endpoint)


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"hf_token_secret": "hf_" + "a" * 34}, "looks like a Hub token itself (the value is not shown here)"),
        ({"hf_token": "hf_" + "a" * 34}, "setting 'hf_token' would put a Hub token in the config"),
        ({"HF_TOKEN": "x"}, "setting 'HF_TOKEN' would put a Hub token in the config"),
        ({"hf_token_secret": "has spaces"}, "is not a Secrets Manager secret name"),
        (
            {"hf_token_secret": f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:hf-token-AbCdEf"},
            "hf_token_secret is in eu-west-1 but the deployment is in us-east-1",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 60 else None,
)
def test_token_values_are_refused_without_being_echoed(context: dict[str, Any], message: str) -> None:
    text = refused(context)
    assert message in text, text
    assert "aaaaaaaaaa" not in text and "\n" not in text


# ---- images ----------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_custom_image_is_built_from_the_lmi_image_and_pulled_only_from_its_repository(tmp_path: Path) -> None:
    config, stacks, _ = synth(tmp_path, image="custom", dockerfile_dir=str(ROOT / "images" / "custom-lmi"))
    endpoint = Template.from_stack(stacks.endpoint)
    image = endpoint.find_resources("AWS::SageMaker::Model")
    uri = json.dumps(next(iter(image.values()))["Properties"]["PrimaryContainer"]["Image"])
    assert f"{ACCOUNT}.dkr.ecr.us-east-1" in uri and "cdk-hnb659fds-container-assets" in uri
    assets = json.loads(next((tmp_path / "cdk.out").glob("*-endpoint.assets.json")).read_text())
    [docker] = assets["dockerImages"].values()
    assert docker["source"]["dockerBuildArgs"] == {"BASE_IMAGE": config.image_uri}
    assert docker["source"]["platform"] == "linux/amd64"
    pull = statements(endpoint)["PullImage"]["Resource"]
    assert "cdk-hnb659fds-container-assets" in json.dumps(pull) and "763104351884" not in json.dumps(pull)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Template, Template, Path]:
    tmp = tmp_path_factory.mktemp("mirrored")
    config, stacks, _ = synth(tmp, image="mirror")
    return config, Template.from_stack(stacks.artifacts), Template.from_stack(stacks.endpoint), tmp


def test_mirror_copies_the_lmi_image_into_the_deployment_repository(mirrored) -> None:
    config, artifacts, endpoint, _ = mirrored
    mirror = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/lmi-deploy/flan-t5-xxl:0.21.0-fastertransformer5.3.0-cu117"
    assert config.mirror_image_uri == mirror
    artifacts.has_resource_properties(
        "Custom::CDKECRDeployment",
        {
            "SrcImage": f"docker://{config.image_uri}",
            "DestImage": Match.object_like({"Fn::Join": Match.any_value()}),
        },
    )
    assert ":0.21.0-fastertransformer5.3.0-cu117" in json.dumps(artifacts.find_resources("Custom::CDKECRDeployment"))
    copy = next(
        iter(
            artifacts.find_resources(
                "AWS::IAM::Policy", {"Properties": {"PolicyName": Match.string_like_regexp("MirrorCopyPolicy")}}
            ).values()
        )
    )
    sids = {s["Sid"]: s for s in copy["Properties"]["PolicyDocument"]["Statement"]}
    assert set(sids) == {"EcrLogin", "PullLmiImage", "PushToDeploymentRepository", "FunctionLogs"}
    assert "djl-inference" in json.dumps(sids["PullLmiImage"]["Resource"])
    assert len(artifacts.find_resources("AWS::IAM::Policy")) == 1  # the construct's own wildcard grants are dropped
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model", {"PrimaryContainer": Match.object_like({"Image": mirror})}
    )
    pull = json.dumps(statements(endpoint)["PullImage"]["Resource"])
    assert f":{ACCOUNT}:repository/lmi-deploy/flan-t5-xxl" in pull and "763104351884" not in pull


def test_mirrored_templates_pass_cfn_lint(mirrored) -> None:
    *_, tmp = mirrored
    templates = sorted(str(p) for p in (tmp / "cdk.out").glob("*.template.json"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *templates], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        (None, "does not exist; dockerfile_dir must be a folder with a Dockerfile"),
        ("FROM ubuntu:22.04\n", "starts FROM ubuntu:22.04, not FROM ${BASE_IMAGE}"),
        ("FROM ${BASE_IMAGE}\n", "uses ${BASE_IMAGE} without declaring it"),
        ("RUN true\n", "has no FROM line"),
    ],
)
def test_unusable_dockerfiles_are_refused(tmp_path: Path, dockerfile: str | None, message: str) -> None:
    if dockerfile is not None:
        (tmp_path / "Dockerfile").write_text(dockerfile)
    text = refused({"image": "custom", "dockerfile_dir": str(tmp_path)})
    assert message in text and "\n" not in text


def test_image_settings_that_do_not_go_together_are_refused(tmp_path: Path) -> None:
    assert "image=custom: set dockerfile_dir" in refused({"image": "custom"})
    assert "is only built with image=custom" in refused({"dockerfile_dir": str(ROOT / "images" / "custom-lmi")})
    assert "invalid image='ghcr'" in refused({"image": "ghcr"})


# ---- async inference, data capture, and everything at once ------------------------------------------------------

EVERYTHING = {
    "engine": "accelerate",
    "instance_type": "ml.p3.16xlarge",
    "dtype": "fp32",
    "volume_size_gb": "200",
    "instance_count": "1",
    "autoscaling_max_instances": "4",
    "autoscaling_min_instances": "0",
    "autoscaling_schedules": json.dumps(
        [
            {"name": "nights", "schedule": "cron(0 20 ? * * *)", "min_instances": 0, "max_instances": 1},
            {"name": "days", "schedule": "cron(0 7 ? * MON-FRI *)", "min_instances": 1, "max_instances": 4},
        ]
    ),
    "inference_mode": "async",
    "async_notifications": "true",
    "async_max_concurrent_invocations": "4",
    "data_capture": "true",
    "data_capture_sampling_percent": "50",
    "vpc_subnet_ids": ",".join(SUBNETS),
    "vpc_security_group_ids": "sg-0123456789abcdef0",
    "kms_key": "create",
    "hf_token_secret": "hf-token",
    "image": "mirror",
    "alarm_email": "oncall@example.com",
}


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Template, Template, Path]:
    tmp = tmp_path_factory.mktemp("everything")
    config, stacks, _ = synth(tmp, **EVERYTHING)  # cdk-nag runs here: an unacknowledged finding fails
    return config, Template.from_stack(stacks.artifacts), Template.from_stack(stacks.endpoint), tmp


def resource_types(template: Template) -> dict[str, int]:
    counts: dict[str, int] = {}
    for resource in template.to_json()["Resources"].values():
        counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
    return dict(sorted(counts.items()))


def test_everything_enabled_endpoint_config(everything) -> None:
    config, _, endpoint, _ = everything
    key = {"Fn::ImportValue": Match.string_like_regexp("StoreKey")}
    bucket = f"flan-t5-xxl-{ACCOUNT}-us-east-1"
    endpoint.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "KmsKeyId": key,
            "AsyncInferenceConfig": {
                "OutputConfig": {
                    "S3OutputPath": f"s3://{bucket}/async-output/",
                    "S3FailurePath": f"s3://{bucket}/async-output/failures/",
                    "KmsKeyId": key,
                    "NotificationConfig": {
                        "SuccessTopic": {"Ref": Match.string_like_regexp("AsyncNotificationsSuccess")},
                        "ErrorTopic": {"Ref": Match.string_like_regexp("AsyncNotificationsError")},
                    },
                },
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
            },
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": 50,
                "DestinationS3Uri": f"s3://{bucket}/data-capture/",
                "KmsKeyId": key,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json", "application/jsonlines"]},
            },
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "VpcConfig": {"Subnets": SUBNETS, "SecurityGroupIds": ["sg-0123456789abcdef0"]},
            "EnableNetworkIsolation": Match.absent(),
            "PrimaryContainer": Match.object_like(
                {"Image": config.mirror_image_uri, "Environment": {"HF_TOKEN_SECRET_ID": "hf-token"}}
            ),
        },
    )
    for display in ("async successes", "async errors"):
        endpoint.has_resource_properties(
            "AWS::SNS::Topic", {"DisplayName": f"lmi-deploy flan-t5-xxl {display}", "KmsMasterKeyId": key}
        )
    assert set(endpoint.find_outputs("*")) >= {
        "AsyncInputS3Uri",
        "AsyncOutputS3Uri",
        "AsyncSuccessTopicArn",
        "DataCaptureS3Uri",
    }


def test_everything_enabled_role_reads_and_writes_only_its_prefixes(everything) -> None:
    _, _, endpoint, _ = everything
    found = statements(endpoint)
    bucket = f"flan-t5-xxl-{ACCOUNT}-us-east-1"
    assert _flat(found["ReadAsyncRequests"]["Resource"]) == f"arn:aws:s3:::{bucket}/async-input/*"
    assert _flat(found["WriteAsyncResponses"]["Resource"]) == f"arn:aws:s3:::{bucket}/async-output/*"
    assert found["WriteAsyncResponses"]["Action"] == "s3:PutObject"
    assert _flat(found["WriteDataCapture"]["Resource"]) == f"arn:aws:s3:::{bucket}/data-capture/*"
    assert found["NotifyAsyncResults"]["Action"] == "sns:Publish" and len(found["NotifyAsyncResults"]["Resource"]) == 2
    assert {"UseDeploymentKey", "ReadHubTokenSecret", "DescribeNetwork", "ManageInterfacesInSubnets"} <= set(found)
    assert f":{ACCOUNT}:repository/lmi-deploy/flan-t5-xxl" in json.dumps(found["PullImage"]["Resource"])
    actions = [a for s in found.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert not [a for a in actions if a.endswith("*")]


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join("aws" if part == {"Ref": "AWS::Partition"} else part for part in value["Fn::Join"][1])


def test_async_scales_on_backlog_and_out_from_zero(everything) -> None:
    _, _, endpoint, _ = everything
    endpoint.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "MinCapacity": 0,
            "MaxCapacity": 4,
            "ScheduledActions": Match.array_with(
                [
                    Match.object_like(
                        {"ScheduledActionName": "nights", "ScalableTargetAction": {"MinCapacity": 0, "MaxCapacity": 1}}
                    )
                ]
            ),
        },
    )
    endpoint.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 5,
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance",
                    "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": "flan-t5-xxl"}],
                    "Statistic": "Average",
                },
                "ScaleInCooldown": 600,
                "ScaleOutCooldown": 120,
            },
        },
    )
    endpoint.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": Match.object_like({"AdjustmentType": "ChangeInCapacity"}),
        },
    )
    endpoint.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "HasBacklogWithoutCapacity",
            "Namespace": "AWS/SageMaker",
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Threshold": 1,
        },
    )
    # an endpoint that may have no instances is not "unhealthy" at zero
    names = [r["Properties"].get("AlarmName", "") for r in endpoint.find_resources("AWS::CloudWatch::Alarm").values()]
    assert "flan-t5-xxl-no-healthy-instances" not in names


def test_everything_enabled_resource_inventory_and_cfn_lint(everything) -> None:
    _, artifacts, endpoint, tmp = everything
    endpoint_types = resource_types(endpoint)
    artifacts_types = resource_types(artifacts)
    assert endpoint_types["AWS::SNS::Topic"] == 3  # alarms, async successes, async errors
    assert endpoint_types["AWS::SageMaker::EndpointConfig"] == 1
    assert artifacts_types["AWS::KMS::Key"] == 1 and artifacts_types["Custom::CDKECRDeployment"] == 1
    assert "AWS::EC2::SecurityGroup" not in endpoint_types  # given, not created
    (tmp / "inventory.json").write_text(
        json.dumps({"artifacts": artifacts_types, "endpoint": endpoint_types}, indent=1)
    )
    templates = sorted(str(p) for p in (tmp / "cdk.out").glob("*.template.json"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *templates], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_async_handler_refuses_to_stream(tmp_path: Path) -> None:
    from lmi_deploy.render import render
    from tests.conftest import ruff_py39

    asynchronous = render(load_config({"engine": "accelerate", "inference_mode": "async"}), tmp_path)
    text = (asynchronous.directory / "model.py").read_text()
    assert "this endpoint is asynchronous, responses go whole to S3" in text
    assert ruff_py39(asynchronous.directory / "model.py").returncode == 0
    realtime = render(load_config({"engine": "accelerate", "deployment": "rt"}), tmp_path)
    assert "asynchronous" not in (realtime.directory / "model.py").read_text()


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"async_notifications": "true"}, "async_notifications=True applies to asynchronous endpoints only"),
        (
            {"async_output_s3_path": "s3://x-bucket/out/"},
            "async_output_s3_path='s3://x-bucket/out/' applies to asynchronous",
        ),
        ({"async_max_concurrent_invocations": "2"}, "async_max_concurrent_invocations=2 applies to asynchronous"),
        ({"inference_mode": "async", "async_output_s3_path": "/tmp/out"}, "is not an S3 location"),
        (
            {
                "inference_mode": "async",
                "autoscaling_max_instances": "2",
                "autoscaling_min_instances": "0",
                "update_strategy": "canary",
            },
            "update_strategy=canary shifts a share of the instances at a time, but this endpoint may have none",
        ),
        ({"data_capture_sampling_percent": "20"}, "data_capture_sampling_percent=20 without data_capture=true"),
        ({"inference_mode": "batch"}, "invalid inference_mode='batch'"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_invalid_async_and_capture_settings_are_refused(context: dict[str, Any], message: str) -> None:
    text = refused(context)
    assert message in text, text
    assert "\n" not in text


def test_async_scale_to_zero_is_accepted_and_defaults_are_derived() -> None:
    config = load_config(
        {
            "inference_mode": "async",
            "autoscaling_max_instances": "2",
            "autoscaling_min_instances": "0",
            "data_capture": "true",
        }
    )
    assert config.minimum_instances == 0 and config.data_capture_percent == 100 and not config.streaming
    assert config.async_output_s3_uri == "s3://flan-t5-xxl-000000000000-us-east-1/async-output/"


# ---- cost ------------------------------------------------------------------------------------------------------


def test_readme_cost_table_matches_the_pricing_of_every_example_deployment() -> None:
    from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
    from lmi_deploy.pricing import cost_range

    readme = (ROOT / "README.md").read_text()
    files = sorted((ROOT / "deployments").glob("*.yaml"))
    for path in files:
        deployment = load_deployment({"config": str(path)}, environment_defaults={"account": "123456789012"})
        endpoint = deployment.endpoint if isinstance(deployment, MultiModelDeployment) else deployment
        cost = cost_range(endpoint)
        assert cost is not None, f"no price for {path.name}'s instance type"
        row = (
            f"| `{path.name}` | `{cost.instance_type}` | ${cost.hourly_usd:g} | {cost.min_instances}\N{EN DASH}{cost.max_instances} "
            f"| ${cost.min_monthly_usd:,.0f} | ${cost.max_monthly_usd:,.0f} |"
        )
        assert row in readme, row
    vllm = cost_range(load_config({"config": str(ROOT / "deployments" / "llama-2-7b-vllm.yaml")}))
    assert vllm is not None and (vllm.min_instances, vllm.max_instances) == (1, 3)
    assert "1-3 x ml.g5.2xlarge at ~$1.515/h" in vllm.describe() and "$1,106-$3,318 a month" in vllm.describe()


def test_synth_report_prints_the_cost() -> None:
    from lmi_deploy.report import report_lines

    lines = report_lines(
        load_config({"inference_mode": "async", "autoscaling_max_instances": "2", "autoscaling_min_instances": "0"})
    )
    assert any(
        "cost: about 0-2 x ml.g5.12xlarge at ~$7.09/h" in line and "$0-$10,351 a month" in line for line in lines
    )


def test_a_latency_alarm_past_the_request_deadline_is_a_warning() -> None:
    def warned(**settings: str) -> list[str]:
        config = load_config(settings)
        return [str(w) for w in config.resolved.warnings if w.rule == "LMI648"]

    assert warned() == []  # 30 s threshold, 60 s real-time deadline
    assert "requests stop there" in warned(alarm_model_latency_p99_ms="60000")[0]
    assert "use less than 20000" in warned(request_timeout="20", alarm_model_latency_p99_ms="25000")[0]
    assert warned(inference_mode="async", alarm_model_latency_p99_ms="90000") == []  # async: up to an hour
