"""The CDK app, synthesized in-process: what each resource means, cdk-nag clean, cfn-lint clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from lmi_deploy.config import DeploymentConfig, load_config
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from lmi_deploy.multi_render import render_multi
from lmi_deploy.render import render
from stacks.deployment import DeploymentStacks, add_checks, add_deployment
from stacks.multi_model_deployment import add_multi_model_deployment

ACCOUNT = "111122223333"
# What the CDK CLI passes to app.py from cdk.json (feature flags).
CDK_JSON_CONTEXT = json.loads((Path(__file__).resolve().parent.parent / "cdk.json").read_text())["context"]


def synth(tmp_path: Path, **context: Any) -> tuple[DeploymentConfig, DeploymentStacks, cdk.App]:
    config = load_config(context, environment_defaults={"account": ACCOUNT, "region": "us-east-1"})
    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context=CDK_JSON_CONTEXT)
    stacks = add_deployment(app, config, render(config, tmp_path / "model_code"))
    add_checks(app)
    app.synth()  # runs cdk-nag's AwsSolutions pack; an unacknowledged finding fails here
    return config, stacks, app


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[DeploymentConfig, Template, Template, Path]:
    tmp = tmp_path_factory.mktemp("seed")
    config, stacks, _ = synth(tmp)
    return config, Template.from_stack(stacks.artifacts), Template.from_stack(stacks.endpoint), tmp


def test_endpoint_config_instances_and_timeouts(seed) -> None:
    _, _, endpoint, _ = seed
    endpoint.resource_count_is("AWS::SageMaker::EndpointConfig", 1)
    endpoint.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "InstanceType": "ml.g5.12xlarge",
                    "InitialInstanceCount": 1,
                    "ModelDataDownloadTimeoutInSeconds": 600,
                    "ContainerStartupHealthCheckTimeoutInSeconds": 600,
                    "VolumeSizeInGB": Match.absent(),  # g5 uses instance storage; SageMaker refuses the field
                    "ModelName": {"Fn::GetAtt": [Match.any_value(), "ModelName"]},
                }
            ],
            "EndpointConfigName": Match.absent(),
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::Endpoint",
        {
            "EndpointName": "flan-t5-xxl",
            "EndpointConfigName": {"Fn::GetAtt": [Match.any_value(), "EndpointConfigName"]},
        },
    )


def test_model_runs_the_lmi_image_on_the_code_artifact(seed) -> None:
    _, _, endpoint, _ = seed
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "ModelName": Match.absent(),
            "PrimaryContainer": {
                "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.21.0-fastertransformer5.3.0-cu117",
                "ModelDataUrl": Match.string_like_regexp(
                    rf"^s3://cdk-hnb659fds-assets-{ACCOUNT}-us-east-1/[0-9a-f]{{64}}\.gz$"
                ),
            },
        },
    )
    model = next(iter(endpoint.find_resources("AWS::SageMaker::Model").values()))
    assert any("Policy" in dep for dep in model["DependsOn"])  # the role can read the artifact before CreateModel
    outputs = endpoint.find_outputs("*")
    assert {"EndpointName", "ImageUri", "WeightsS3Prefix", "CodeArtifactS3Uri"} <= set(outputs)
    assert outputs["WeightsS3Prefix"]["Value"] == (
        f"s3://flan-t5-xxl-{ACCOUNT}-us-east-1/models/google/flan-t5-xxl/main/"
    )


def _statements(template: Template) -> dict[str, dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    assert len(policies) == 1
    policy = next(iter(policies.values()))
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def _arn(value: Any) -> str:
    """Fn::Join of literal parts and the partition, as one string with ``aws`` as partition."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join("aws" if part == {"Ref": "AWS::Partition"} else part for part in parts)


def test_execution_role_is_least_privilege(seed) -> None:
    _, _, endpoint, _ = seed
    endpoint.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {"Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Effect": "Allow"}
                ]
            },
            "ManagedPolicyArns": Match.absent(),
        },
    )
    statements = _statements(endpoint)
    assert set(statements) == {
        "ReadCodeArtifact",
        "ReadWeights",
        "ListWeights",
        "PullImage",
        "EcrLogin",
        "WriteLogs",
        "PublishEndpointMetrics",
    }
    bucket = f"flan-t5-xxl-{ACCOUNT}-us-east-1"
    assert statements["ReadCodeArtifact"]["Action"] == "s3:GetObject"
    assert _arn(statements["ReadCodeArtifact"]["Resource"]).startswith(
        f"arn:aws:s3:::cdk-hnb659fds-assets-{ACCOUNT}-us-east-1/"
    )
    assert not _arn(statements["ReadCodeArtifact"]["Resource"]).endswith("*")
    assert statements["ReadWeights"]["Action"] == "s3:GetObject"
    assert _arn(statements["ReadWeights"]["Resource"]) == f"arn:aws:s3:::{bucket}/models/google/flan-t5-xxl/main/*"
    assert statements["ListWeights"]["Condition"] == {"StringLike": {"s3:prefix": ["models/google/flan-t5-xxl/main/*"]}}
    assert _arn(statements["ListWeights"]["Resource"]) == f"arn:aws:s3:::{bucket}"
    assert sorted(statements["PullImage"]["Action"]) == [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ]
    assert _arn(statements["PullImage"]["Resource"]) == "arn:aws:ecr:us-east-1:763104351884:repository/djl-inference"
    assert statements["EcrLogin"]["Action"] == "ecr:GetAuthorizationToken"
    log_group = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/flan-t5-xxl"
    assert [_arn(r) for r in statements["WriteLogs"]["Resource"]] == [log_group, f"{log_group}:log-stream:*"]
    assert statements["PublishEndpointMetrics"]["Condition"] == {
        "StringLike": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints*"}
    }
    actions = [a for s in statements.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert not [a for a in actions if a.endswith("*")]
    assert "AmazonSageMakerFullAccess" not in json.dumps(endpoint.to_json())


def test_bucket_and_repository_are_hardened_and_retained(seed) -> None:
    _, artifacts, _, _ = seed
    artifacts.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": {
                "BucketName": f"flan-t5-xxl-{ACCOUNT}-us-east-1",
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "artifacts/"},
                "LifecycleConfiguration": {
                    "Rules": [Match.object_like({"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}})]
                },
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    artifacts.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )
    artifacts.has_resource(
        "AWS::ECR::Repository",
        {
            "Properties": {
                "RepositoryName": "lmi-deploy/flan-t5-xxl",
                "ImageScanningConfiguration": {"ScanOnPush": True},
                "ImageTagMutability": "IMMUTABLE",
                "LifecyclePolicy": {"LifecyclePolicyText": Match.string_like_regexp("untagged")},
            },
            "DeletionPolicy": "Retain",
        },
    )
    assert {"BucketName", "WeightsPrefix", "RepositoryUri"} <= set(artifacts.find_outputs("*"))


def test_cfn_lint_is_clean(seed) -> None:
    _, _, _, tmp = seed
    templates = sorted(str(p) for p in (tmp / "cdk.out").glob("*.template.json"))
    assert len(templates) == 2
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *templates], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp / "cdk.out" / "validation-report.json").read_text())
    assert report.get("success") is not False, report


def test_volume_region_and_other_instance(tmp_path: Path) -> None:
    _, stacks, _ = synth(
        tmp_path,
        instance_type="ml.p3.16xlarge",
        tensor_parallel_degree="8",
        volume_size_gb="200",
        region="eu-west-1",
        dtype="fp32",
        instance_count="2",
        model_data_download_timeout="1800",
        container_startup_health_check_timeout="1800",
    )
    endpoint = Template.from_stack(stacks.endpoint)
    endpoint.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                Match.object_like(
                    {
                        "InstanceType": "ml.p3.16xlarge",
                        "InitialInstanceCount": 2,
                        "VolumeSizeInGB": 200,
                        "ModelDataDownloadTimeoutInSeconds": 1800,
                        "ContainerStartupHealthCheckTimeoutInSeconds": 1800,
                    }
                )
            ]
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "PrimaryContainer": Match.object_like(
                {
                    "Image": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/djl-inference:0.21.0-fastertransformer5.3.0-cu117"
                }
            )
        },
    )
    assert stacks.endpoint.region == "eu-west-1" and stacks.endpoint.account == ACCOUNT


def test_unacknowledged_nag_finding_fails_synth(tmp_path: Path) -> None:
    """The nag check is real: a wildcard grant nobody acknowledged stops synth."""
    from aws_cdk import aws_iam as iam

    config = load_config({}, environment_defaults={"account": ACCOUNT})
    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context=CDK_JSON_CONTEXT)
    stacks = add_deployment(app, config, render(config, tmp_path / "model_code"))
    add_checks(app)
    stacks.endpoint.execution_role.role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    with pytest.raises(Exception, match="AwsSolutions-IAM5"):
        app.synth()


def test_every_example_deployment_synthesizes(tmp_path: Path) -> None:
    """All of deployments/ in one app: each validates, renders, passes cdk-nag and cfn-lint."""
    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context=CDK_JSON_CONTEXT)
    files = sorted((Path(__file__).resolve().parent.parent / "deployments").glob("*.yaml"))
    assert len(files) >= 6
    expected: dict[str, str] = {}
    for path in files:
        config = load_deployment({"config": str(path)}, environment_defaults={"account": ACCOUNT})
        if isinstance(config, MultiModelDeployment):  # several models behind one endpoint
            add_multi_model_deployment(app, config, render_multi(config, tmp_path / "model_code"))
            expected[config.endpoint_stack_name] = config.endpoint.instance_type
            continue
        add_deployment(app, config, render(config, tmp_path / "model_code"))
        expected[config.endpoint_stack_name] = config.instance_type
    add_checks(app)
    app.synth()
    templates = sorted(str(p) for p in (tmp_path / "cdk.out").glob("*-endpoint.template.json"))
    assert len(templates) == len(files)
    for template in templates:
        body = json.loads(Path(template).read_text())
        variant = next(r for r in body["Resources"].values() if r["Type"] == "AWS::SageMaker::EndpointConfig")
        name = Path(template).name.removesuffix(".template.json")
        assert variant["Properties"]["ProductionVariants"][0]["InstanceType"] == expected[name]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *templates], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sagemaker_delivery_places_the_staged_prefix_and_reads_only_it(tmp_path: Path) -> None:
    config, stacks, _ = synth(
        tmp_path,
        engine="vllm",
        model_id="meta-llama/Llama-2-7b-hf",
        weights_delivery="sagemaker",
        instance_type="ml.g5.2xlarge",
        lmi_version="0.33.0",
    )
    endpoint = Template.from_stack(stacks.endpoint)
    prefix = f"s3://llama-2-7b-hf-{ACCOUNT}-us-east-1/models/meta-llama/Llama-2-7b-hf/main/"
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "PrimaryContainer": {
                "Image": config.image_uri,
                "Mode": "SingleModel",
                "ModelDataUrl": Match.absent(),
                "ModelDataSource": {
                    "S3DataSource": {"S3Uri": prefix, "S3DataType": "S3Prefix", "CompressionType": "None"}
                },
                "Environment": {
                    "HF_MODEL_ID": "/opt/ml/model",
                    "OPTION_ENGINE": "Python",
                    "OPTION_ROLLING_BATCH": "vllm",
                    "OPTION_TENSOR_PARALLEL_DEGREE": "1",
                    "OPTION_DTYPE": "bf16",
                    "OPTION_MODEL_LOADING_TIMEOUT": "600",
                    "OPTION_MAX_MODEL_LEN": "4096",
                },
            }
        },
    )
    statements = _statements(endpoint)
    assert "ReadCodeArtifact" not in statements  # no code tarball ships in this mode
    assert _arn(statements["ReadWeights"]["Resource"]) == (
        f"arn:aws:s3:::llama-2-7b-hf-{ACCOUNT}-us-east-1/models/meta-llama/Llama-2-7b-hf/main/*"
    )
    assert "CodeArtifactS3Uri" not in endpoint.find_outputs("*")


def test_sagemaker_delivery_needs_env_configurable_containers() -> None:
    from lmi_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match=r"set the engine only from LMI 0\.27\.0"):
        load_config({"weights_delivery": "sagemaker", "handler": "builtin"})
    with pytest.raises(ConfigError, match=r"custom model\.py cannot ship"):
        load_config({"engine": "accelerate", "weights_delivery": "sagemaker", "model_id": "meta-llama/Llama-2-7b-hf"})


def test_default_operations_alarms_dashboard_and_guarded_updates(seed) -> None:
    _, _, endpoint, _ = seed
    endpoint.resource_count_is("AWS::CloudWatch::Alarm", 8)
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)  # off unless asked
    endpoint.has_resource_properties("AWS::SNS::Topic", {"DisplayName": "lmi-deploy flan-t5-xxl alarms"})
    endpoint.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "flan-t5-xxl-5xx",
            "MetricName": "Invocation5XXErrors",
            "Namespace": "AWS/SageMaker",
            "Threshold": 1,
            "EvaluationPeriods": 2,
            "TreatMissingData": "notBreaching",
            "Dimensions": Match.array_with([{"Name": "EndpointName", "Value": "flan-t5-xxl"}]),
            "AlarmActions": [{"Ref": Match.string_like_regexp("MonitoringAlarms")}],
        },
    )
    endpoint.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"AlarmName": "flan-t5-xxl-model-latency-p99", "ExtendedStatistic": "p99", "Threshold": 30_000_000},
    )
    endpoint.has_resource_properties(  # GPU memory is summed over the g5.12xlarge's 4 GPUs
        "AWS::CloudWatch::Alarm",
        {"AlarmName": "flan-t5-xxl-gpu-memory", "Namespace": "/aws/sagemaker/Endpoints", "Threshold": 392},
    )
    endpoint.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "lmi-deploy-flan-t5-xxl"})
    # no instance reporting its CPU for 5 minutes (no datapoint at all counts): the endpoint serves nothing
    endpoint.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "flan-t5-xxl-no-healthy-instances",
            "Namespace": "/aws/sagemaker/Endpoints",
            "MetricName": "CPUUtilization",
            "Statistic": "SampleCount",
            "Period": 60,
            "Threshold": 1,
            "ComparisonOperator": "LessThanThreshold",
            "EvaluationPeriods": 5,
            "TreatMissingData": "breaching",
            "Dimensions": [
                {"Name": "EndpointName", "Value": "flan-t5-xxl"},
                {"Name": "VariantName", "Value": "AllTraffic"},
            ],
        },
    )
    unhealthy = next(
        r
        for r in endpoint.find_resources("AWS::CloudWatch::Alarm").values()
        if r["Properties"]["AlarmName"] == "flan-t5-xxl-no-healthy-instances"
    )
    assert any("Endpoint" in dep for dep in unhealthy["DependsOn"])  # created after the endpoint is in service
    dashboard = json.dumps(endpoint.find_resources("AWS::CloudWatch::Dashboard"))
    assert "Instances reporting" in dashboard and "no-healthy-instances" in dashboard
    endpoint.has_resource_properties(
        "AWS::SageMaker::Endpoint",
        {
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
                },
                "AutoRollbackConfiguration": {
                    "Alarms": [
                        {"AlarmName": {"Ref": Match.string_like_regexp("Monitoring5xx")}},
                        {"AlarmName": {"Ref": Match.string_like_regexp("Monitoringmodellatencyp99")}},
                    ]
                },
            }
        },
    )


def test_everything_enabled_autoscaling_email_canary(tmp_path: Path) -> None:
    _, stacks, _ = synth(
        tmp_path,
        instance_count="2",
        autoscaling_max_instances="6",
        autoscaling_target_invocations="8",
        alarm_email="oncall@example.com",
        update_strategy="canary",
        update_step_percent="25",
        update_wait_seconds="300",
    )
    endpoint = Template.from_stack(stacks.endpoint)
    endpoint.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "MinCapacity": 2,
            "MaxCapacity": 6,
            "ResourceId": "endpoint/flan-t5-xxl/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "ServiceNamespace": "sagemaker",
        },
    )
    endpoint.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 8,
                "ScaleInCooldown": 600,
                "ScaleOutCooldown": 120,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            },
        },
    )
    endpoint.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"})
    endpoint.has_resource_properties(
        "AWS::SageMaker::Endpoint",
        {
            "DeploymentConfig": Match.object_like(
                {
                    "BlueGreenUpdatePolicy": {
                        "TerminationWaitInSeconds": 300,
                        "TrafficRoutingConfiguration": {
                            "Type": "CANARY",
                            "WaitIntervalInSeconds": 300,
                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                        },
                    }
                }
            )
        },
    )


def test_invalid_operations_settings_are_refused() -> None:
    from lmi_deploy.errors import ConfigError

    with pytest.raises(ConfigError, match=r"autoscaling_max_instances=1 is below instance_count=2"):
        load_config({"instance_count": "2", "autoscaling_max_instances": "1"})
    with pytest.raises(ConfigError, match=r"invalid alarm_email='oncall'"):
        load_config({"alarm_email": "oncall"})
    with pytest.raises(ConfigError, match=r"invalid update_strategy='rolling'"):
        load_config({"update_strategy": "rolling"})


def test_defaults_have_no_isolation_async_capture_or_custom_image(seed) -> None:
    """The production-operations options are all off by default: the seed's endpoint, as before."""
    config, artifacts, endpoint, _ = seed
    endpoint.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "KmsKeyId": Match.absent(),
            "AsyncInferenceConfig": Match.absent(),
            "DataCaptureConfig": Match.absent(),
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "VpcConfig": Match.absent(),
            "EnableNetworkIsolation": Match.absent(),
            "PrimaryContainer": Match.object_like({"Image": config.image_uri, "Environment": Match.absent()}),
        },
    )
    endpoint.resource_count_is("AWS::EC2::SecurityGroup", 0)
    endpoint.resource_count_is("AWS::SNS::Topic", 1)  # the alarm topic only
    # ... encrypted all the same, under a key of its own that CloudWatch alarms may use (not alias/aws/sns, which
    # they cannot publish through)
    endpoint.resource_count_is("AWS::KMS::Key", 1)
    key_id = next(iter(endpoint.find_resources("AWS::KMS::Key")))
    endpoint.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    endpoint.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "AlarmsPublishToEncryptedTopic",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
                            }
                        )
                    ]
                )
            },
        },
    )
    endpoint.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.absent()})
    artifacts.resource_count_is("AWS::KMS::Key", 0)
    artifacts.resource_count_is("AWS::Lambda::Function", 0)
    assert config.inference_mode == "realtime" and not config.data_capture and config.image == "lmi"
    assert not config.autoscaling_schedules and config.kms_key is None and not config.vpc_subnet_ids
    assert {r["Type"] for r in endpoint.to_json()["Resources"].values()} == {
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::Logs::LogGroup",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::KMS::Key",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::SageMaker::Model",
        "AWS::SageMaker::EndpointConfig",
        "AWS::SageMaker::Endpoint",
    }


def test_every_alarm_row_names_a_metric_and_values_the_deployment_has() -> None:
    """The alarm table (stacks/components/alarm_specs.py) is read at synth: a row naming an unknown metric or value
    would fail there, for some deployments only; this fails for all at once."""
    from stacks.components.alarm_specs import ALARMS, METRICS, limits

    values = limits(load_config({}, environment_defaults={"account": ACCOUNT, "region": "us-east-1"}))
    assert len({spec.key for spec in ALARMS}) == len(ALARMS)
    for spec in ALARMS:
        assert (spec.metric or spec.key) in {metric.key for metric in METRICS}, spec.key
        assert all(field in values for field in (spec.threshold, spec.minutes) if isinstance(field, str)), spec.key
        assert "{" not in spec.description.format(**values), spec.key
