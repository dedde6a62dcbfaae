"""Several models behind one endpoint: the models: list, its fit checks, both stacks, and the clients' model names."""

from __future__ import annotations

import io
import json
import tarfile
import types
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from lmi_deploy.commands import invoke, stage_model
from lmi_deploy.config import DeploymentConfig
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment, load_multi_model, report_lines
from lmi_deploy.multi_render import render_multi, target_model
from stacks.deployment import add_checks
from stacks.multi_model_deployment import MultiModelStacks, add_multi_model_deployment
from tests.test_stacks import ACCOUNT, CDK_JSON_CONTEXT

ROOT = Path(__file__).resolve().parent.parent
IC_EXAMPLE = ROOT / "deployments" / "chat-llms-inference-components.yaml"
MME_EXAMPLE = ROOT / "deployments" / "small-models-mme.yaml"
GPT_J = [{"name": "gpt-j", "model_id": "EleutherAI/gpt-j-6b"}]  # 0.20.0's transformers 4.23 knows gptj (LMI106)
SEVEN_B = [
    {"name": "llama-2", "model_id": "meta-llama/Llama-2-7b-hf"},
    {"name": "mistral", "model_id": "mistralai/Mistral-7B-Instruct-v0.2"},
    {"name": "llama-3", "model_id": "meta-llama/Meta-Llama-3-8B-Instruct"},
]


def multi(mode: str = "inference_components", models: list[dict[str, Any]] | None = None, **top: Any) -> Any:
    """A multi-model deployment from in-memory settings (as a deployment file would give them)."""
    values = {"deployment": "several", "multi_model": mode, "models": models or SEVEN_B, **top}
    return load_multi_model({}, values, {"account": ACCOUNT})


def refused(mode: str = "inference_components", models: list[dict[str, Any]] | None = None, **top: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        multi(mode, models, **top)
    return str(raised.value)


# ---- validation: fits and misfits --------------------------------------------------------------------------------


def test_three_7b_models_in_bf16_do_not_fit_one_g5_2xlarge_together() -> None:
    ic = dict(instance_type="ml.g5.2xlarge", engine="vllm", lmi_version="0.33.0", dtype="bf16")
    message = refused(**ic)
    # each fits alone (validated as a single deployment); the second one has no GPU left
    assert message.startswith("LMI919 models[1] (mistral) does not fit ml.g5.2xlarge x1: its copy 1 of 1 needs 1 GPU")
    assert "the copies need 3 GPUs and 86.4 GiB in all, 1 x ml.g5.2xlarge give 1 GPU and 28.8 GiB usable" in message
    assert "\n" not in message
    # the same three fit a g5.12xlarge: one GPU each
    fits = multi(**{**ic, "instance_type": "ml.g5.12xlarge"})
    assert [(m.accelerators, m.memory_mib, m.copies) for m in fits.models] == [(1, 44236, 1)] * 3
    assert "inference components on ml.g5.12xlarge x1: 3 copies use 3 of 4 GPUs and 129.6 of 172.8 GiB" in "\n".join(
        report_lines(fits)
    )
    # as a multi-model endpoint they share the GPU: GPU memory is summed over the models
    message = refused("mme", instance_type="ml.g5.2xlarge", engine="accelerate", dtype="bf16", max_batch_size="1")
    assert message.startswith(
        "LMI918 models[1] (mistral) does not fit ml.g5.2xlarge beside llama-2: a multi-model endpoint"
    )
    assert "all 3 need 48.5 GiB per GPU, 24.0 GiB usable (16.1 GiB taken before mistral)" in message


def test_host_memory_and_max_copies_are_checked_over_copies() -> None:
    models = [
        {"name": "llama-3", "model_id": "meta-llama/Meta-Llama-3-8B-Instruct", "memory_mib": 100_000, "copies": 1},
        {"name": "mistral", "model_id": "mistralai/Mistral-7B-Instruct-v0.2", "memory_mib": 100_000},
    ]
    ic = dict(instance_type="ml.g5.12xlarge", engine="vllm", lmi_version="0.33.0")
    message = refused(models=models, **ic)
    assert message.startswith(
        "LMI919 models[1] (mistral) does not fit ml.g5.12xlarge x1: its copy 1 of 1 needs 1 GPU and"
    )
    assert "97.7 GiB of host memory" in message and "195.3 GiB in all" in message
    assert "raise instance_count" in message
    assert multi(models=models, instance_count="2", **ic).endpoint.instance_count == 2  # one per instance
    # max_copies must fit the instances managed instance scaling may reach
    scaled = [{**models[0], "memory_mib": 1024, "max_copies": 5}, {**models[1], "memory_mib": 1024}]
    message = refused(models=scaled, **ic)
    assert "models[0] (llama-3) does not fit ml.g5.12xlarge x1 at max_copies: its copy 5 of 5" in message
    assert "raise autoscaling_max_instances" in message
    assert multi(models=scaled, autoscaling_max_instances="2", **ic).max_instances == 2


def test_every_model_is_validated_as_a_single_deployment() -> None:
    models = [
        {"name": "llama", "model_id": "meta-llama/Llama-2-7b-hf"},
        {"name": "flan", "model_id": "google/flan-t5-large", "dtype": "fp16"},
    ]
    message = refused("mme", models=models, engine="accelerate", instance_type="ml.g5.12xlarge")
    assert message == (
        "LMI402 models[1] (flan): dtype='fp16' with T5 models gives garbage output (fp16 activations overflow into NaN): "
        "use dtype=bf16 or dtype=fp32"
    )
    # a bad endpoint setting is one problem, not one per model
    message = refused("mme", models=[*models[:1], {**models[1], "dtype": "bf16"}], instance_type="ml.g5.2xlargee")
    assert message.count("\n") == 0 and message.startswith("LMI007 instance_type='ml.g5.2xlargee' is not a known")
    # the entry wins over the top level, a -c value over both
    both = load_multi_model(
        {"max_batch_size": "2"},
        {"deployment": "dd", "multi_model": "mme", "engine": "accelerate", "dtype": "fp32", "max_batch_size": 8,
         "models": [{"name": "a", "model_id": "google/flan-t5-large", "dtype": "bf16"},
                    {"name": "b", "model_id": "TinyLlama/TinyLlama-1.1B-Chat-v1.0"}]},
        {"account": ACCOUNT},
    )  # fmt: skip
    assert [m.config.resolved.dtype for m in both.models] == ["bf16", "fp32"]
    assert [m.config.max_batch_size for m in both.models] == [2, 2]
    assert all(m.config.deployment == "dd" and m.config.bucket_name == f"dd-{ACCOUNT}-us-east-1" for m in both.models)


@pytest.mark.parametrize(
    ("mode", "models", "top", "expected"),
    [
        ("mme", SEVEN_B, {"engine": "vllm"}, "models[0] (llama-2): engine=vLLM cannot share a multi-model endpoint"),
        ("mme", [{**SEVEN_B[0], "copies": 2}], {"engine": "accelerate"}, "copies sizes an inference component"),
        ("mme", GPT_J, {"engine": "accelerate", "lmi_version": "0.20.0"}, "predates DJL Serving's support"),
        (
            "mme",
            [{**SEVEN_B[0], "lmi_version": "0.27.0"}, {**SEVEN_B[1], "lmi_version": "0.28.0"}],
            {"engine": "accelerate", "max_batch_size": "1", "instance_type": "ml.g5.12xlarge"},
            "share one container, but they ask for lmi_version 0.27.0 and 0.28.0",
        ),
        (
            "mme",
            SEVEN_B[:1],
            {"engine": "vllm", "weights_delivery": "sagemaker", "lmi_version": "0.33.0"},
            "weights_delivery=sagemaker (ModelDataSource) is not supported by SageMaker multi-model endpoints",
        ),
        (None, SEVEN_B, {}, "needs multi_model: inference_components or mme"),
        (
            "inference_components",
            SEVEN_B,
            {"kms_key": "create"},
            "kms_key='create': lmi-deploy builds this for single-model endpoints only",
        ),
        (
            "mme",
            SEVEN_B,
            {"inference_mode": "async"},
            "inference_mode='async': lmi-deploy builds this for single-model",
        ),
        ("inference_components", [{**SEVEN_B[0], "copeis": 2}], {}, "unknown setting 'copeis' in models[0] (llama-2)"),
        ("inference_components", [{**SEVEN_B[0], "instance_count": 2}], {}, "instance_count is an endpoint setting"),
        ("inference_components", [SEVEN_B[0], SEVEN_B[0]], {}, "name='llama-2' is used twice"),
        ("inference_components", [{"name": "Llama_2", "model_id": "x"}], {}, "name='Llama_2' must be 1-30"),
        ("inference_components", [{**SEVEN_B[0], "name": "llama-2\n"}], {}, "name='llama-2\\n' must be 1-30"),
        ("inference_components", SEVEN_B, {"modles": []}, "unknown setting 'modles' (did you mean 'models'?)"),
        ("inference_components", [{**SEVEN_B[0], "copies": 0}], {}, "invalid copies=0"),
        (
            "inference_components",
            [{**SEVEN_B[0], "copies": 2, "max_copies": 1}],
            {"instance_type": "ml.g5.12xlarge", "engine": "vllm"},
            "copies must lie within min_copies..max_copies, but min_copies=2, copies=2, max_copies=1",
        ),
        (
            "inference_components",
            [{**SEVEN_B[0], "tensor_parallel_degree": 2, "accelerators": 3}],
            {"instance_type": "ml.g5.12xlarge", "engine": "vllm"},
            "accelerators=3 is not a multiple of its tensor_parallel_degree=2",
        ),
        (
            "inference_components",
            [{**SEVEN_B[0], "accelerators": 8}],
            {"instance_type": "ml.g5.12xlarge", "engine": "vllm"},
            "accelerators=8 is more than ml.g5.12xlarge's 4 GPUs",
        ),
        (
            "inference_components",
            [{"name": "neuron", "model_id": "meta-llama/Llama-2-7b-hf", "engine": "neuronx", "lmi_version": "0.29.0"}],
            {"instance_type": "ml.inf2.xlarge"},
            "would count Neuron devices",
        ),
    ],
)
def test_refusals_name_the_model_and_the_fix(mode: str | None, models: list, top: dict, expected: str) -> None:
    values = {"deployment": "several", "models": models, **top, **({"multi_model": mode} if mode else {})}
    with pytest.raises(ConfigError, match=None) as raised:
        load_multi_model({}, values, {"account": ACCOUNT})
    assert expected in str(raised.value)


def test_a_single_model_file_is_loaded_exactly_as_before(deployment_file) -> None:
    single = load_deployment({"config": str(ROOT / "deployments" / "flan-t5-xxl.yaml")})
    assert isinstance(single, DeploymentConfig) and single.deployment == "flan-t5-xxl"
    path = deployment_file("deployment: x\nmodels: []\n")
    with pytest.raises(ConfigError, match=r"needs multi_model"):
        load_deployment({"config": str(path)})
    with pytest.raises(ConfigError, match=r"a multi-model deployment in .* needs deployment: NAME"):
        load_deployment({"config": str(deployment_file("multi_model: mme\nmodels: [{name: a, model_id: x}]\n"))})


def test_example_deployments_validate() -> None:
    ic = load_deployment({"config": str(IC_EXAMPLE)}, environment_defaults={"account": ACCOUNT})
    assert isinstance(ic, MultiModelDeployment) and ic.mode == "inference_components"
    assert [(m.name, m.copies, m.min_copies, m.max_copies) for m in ic.models] == [
        ("llama-3-8b", 1, 1, 2),
        ("mistral-7b", 1, 0, 1),
        ("llama-2-7b", 1, 1, 1),
    ]
    assert (ic.min_instances, ic.max_instances) == (0, 2)  # a component may scale to zero
    assert ic.model("mistral-7b") is ic.model("chat-llms-ic-mistral-7b")
    mme = load_deployment({"config": str(MME_EXAMPLE)}, environment_defaults={"account": ACCOUNT})
    assert isinstance(mme, MultiModelDeployment) and mme.mode == "mme"
    assert mme.mme_s3_uri == f"s3://small-models-mme-{ACCOUNT}-us-east-1/mme/small-models-mme/"
    assert any("AWS does not list LMI for GPU MME" in w for w in mme.warnings)


# ---- rendering --------------------------------------------------------------------------------------------------


def test_render_multi_writes_a_folder_and_a_deterministic_archive_per_model(tmp_path: Path) -> None:
    mme = load_deployment({"config": str(MME_EXAMPLE)}, environment_defaults={"account": ACCOUNT})
    assert isinstance(mme, MultiModelDeployment)
    first = render_multi(mme, tmp_path / "a")
    again = render_multi(mme, tmp_path / "b")
    for one, two in zip(first.models, again.models, strict=True):
        assert one.tarball.read_bytes() == two.tarball.read_bytes()
        assert one.target_model == target_model(mme, one.name) == f"{one.name}-{one.sha256[:12]}.tar.gz"
    flan = first.model("flan-t5-large")
    properties = (flan.directory / "serving.properties").read_text()
    assert (
        f"option.model_id=s3://small-models-mme-{ACCOUNT}-us-east-1/models/google/flan-t5-large/main/\n" in properties
    )
    with tarfile.open(fileobj=io.BytesIO(flan.tarball.read_bytes())) as tar:
        names = sorted(name for name in tar.getnames() if not name.startswith("./lmi_handlers/"))
        assert names == ["./model.py", "./serving.properties"]  # MME: at the archive root
        assert "./lmi_handlers/request.py" in tar.getnames()  # the handler package beside model.py
    assert sorted(p.name for p in first.directory.iterdir()) == [
        "flan-t5-large",
        "flan-t5-large.tar.gz",
        "tinyllama-chat",
        "tinyllama-chat.tar.gz",
    ]
    # the archive names the account's bucket: another account, another archive
    other = mme.with_account("444455556666")
    assert target_model(other, "flan-t5-large") != flan.target_model


# ---- stacks: both modes ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[MultiModelDeployment, MultiModelStacks]]:
    tmp = tmp_path_factory.mktemp("multi")
    app = cdk.App(outdir=str(tmp / "cdk.out"), context=CDK_JSON_CONTEXT)
    result = {}
    for mode, path in (("inference_components", IC_EXAMPLE), ("mme", MME_EXAMPLE)):
        config = load_deployment({"config": str(path)}, environment_defaults={"account": ACCOUNT})
        assert isinstance(config, MultiModelDeployment)
        result[mode] = (config, add_multi_model_deployment(app, config, render_multi(config, tmp / "model_code")))
    add_checks(app)
    app.synth()  # cdk-nag's AwsSolutions pack: an unacknowledged finding fails here
    return result


def _statements(template: Template) -> dict[str, dict[str, Any]]:
    policy = next(
        iter(template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": Match.any_value()}}).values())
    )
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"] if "Sid" in s}


def _arn(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "".join("aws" if part == {"Ref": "AWS::Partition"} else part for part in value["Fn::Join"][1])


def test_inference_components_template(examples) -> None:
    multi_, stacks = examples["inference_components"]
    endpoint = Template.from_stack(stacks.endpoint)
    endpoint.resource_count_is("AWS::SageMaker::EndpointConfig", 1)
    endpoint.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ExecutionRoleArn": {"Fn::GetAtt": [Match.string_like_regexp("ExecutionRole"), "Arn"]},
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "InstanceType": "ml.g5.12xlarge",
                    "InitialInstanceCount": 1,
                    "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
                    "ManagedInstanceScaling": {"Status": "ENABLED", "MinInstanceCount": 0, "MaxInstanceCount": 2},
                    "ModelName": Match.absent(),  # the endpoint is an instance pool
                }
            ],
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::Endpoint", {"EndpointName": "chat-llms-ic", "DeploymentConfig": Match.absent()}
    )
    endpoint.resource_count_is("AWS::SageMaker::Model", 3)
    endpoint.resource_count_is("AWS::SageMaker::InferenceComponent", 3)
    endpoint.has_resource_properties(
        "AWS::SageMaker::InferenceComponent",
        {
            "EndpointName": {"Fn::GetAtt": [Match.string_like_regexp("Endpoint"), "EndpointName"]},
            "VariantName": "AllTraffic",
            "InferenceComponentName": "chat-llms-ic-llama-2-7b",
            "Specification": {
                "ModelName": {"Fn::GetAtt": [Match.string_like_regexp("ModelLlama27b"), "ModelName"]},
                "ComputeResourceRequirements": {
                    "NumberOfAcceleratorDevicesRequired": 1,
                    "MinMemoryRequiredInMb": 32768,
                },
                "StartupParameters": {
                    "ModelDataDownloadTimeoutInSeconds": 600,
                    "ContainerStartupHealthCheckTimeoutInSeconds": 600,
                },
            },
            "RuntimeConfig": {"CopyCount": 1},
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "PrimaryContainer": {
                "Image": multi_.models[0].config.image_uri,
                "Mode": "SingleModel",
                "ModelDataUrl": Match.string_like_regexp(
                    rf"^s3://cdk-hnb659fds-assets-{ACCOUNT}-us-east-1/[0-9a-f]{{64}}\.gz$"
                ),
            }
        },
    )
    # autoscaling per component: llama-3-8b 1..2, mistral-7b 0..1 (+ scale out from zero); llama-2-7b fixed
    targets = endpoint.find_resources("AWS::ApplicationAutoScaling::ScalableTarget")
    assert sorted(
        (t["Properties"]["ResourceId"], t["Properties"]["MinCapacity"], t["Properties"]["MaxCapacity"])
        for t in targets.values()
    ) == [
        ("inference-component/chat-llms-ic-llama-3-8b", 1, 2),
        ("inference-component/chat-llms-ic-mistral-7b", 0, 1),
    ]
    assert all(
        t["Properties"]["ScalableDimension"] == "sagemaker:inference-component:DesiredCopyCount"
        and any("Component" in d for d in t["DependsOn"])
        for t in targets.values()
    )
    endpoint.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
                    }
                }
            ),
        },
    )
    steps = endpoint.find_resources(
        "AWS::ApplicationAutoScaling::ScalingPolicy", {"Properties": {"PolicyType": "StepScaling"}}
    )
    assert len(steps) == 1
    step = next(iter(steps.values()))["Properties"]["StepScalingPolicyConfiguration"]
    assert step == {
        "AdjustmentType": "ChangeInCapacity",
        "Cooldown": 60,
        "MetricAggregationType": "Maximum",
        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
    }
    endpoint.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "chat-llms-ic-mistral-7b-no-capacity",
            "MetricName": "NoCapacityInvocationFailures",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "InferenceComponentName", "Value": "chat-llms-ic-mistral-7b"}],
            "Threshold": 1,
            "AlarmActions": [{"Ref": Match.string_like_regexp("ScaleOutFromZero")}],
        },
    )
    # the role reads every model's weights and code, nothing else
    statements = _statements(endpoint)
    weights = {sid: _arn(s["Resource"]) for sid, s in statements.items() if sid.startswith("ReadWeights")}
    assert sorted(weights.values()) == sorted(
        f"arn:aws:s3:::chat-llms-ic-{ACCOUNT}-us-east-1/{m.config.staged_weights[1]}*" for m in multi_.models
    )
    assert sorted(sid for sid in statements if sid.startswith("ReadCode")) == [
        "ReadCodeArtifact",
        "ReadCodeLlama27b",
        "ReadCodeMistral7b",
    ]
    outputs = endpoint.find_outputs("*")
    assert json.loads(outputs["InferenceComponents"]["Value"]) == {
        "llama-2-7b": "chat-llms-ic-llama-2-7b",
        "llama-3-8b": "chat-llms-ic-llama-3-8b",
        "mistral-7b": "chat-llms-ic-mistral-7b",
    }
    artifacts = Template.from_stack(stacks.artifacts)
    assert json.loads(artifacts.find_outputs("WeightsPrefixes")["WeightsPrefixes"]["Value"])["mistral-7b"] == (
        "models/mistralai/Mistral-7B-Instruct-v0.2/main/"
    )


def test_multi_model_endpoint_template(examples, tmp_path: Path) -> None:
    multi_, stacks = examples["mme"]
    endpoint = Template.from_stack(stacks.endpoint)
    endpoint.resource_count_is("AWS::SageMaker::Model", 1)
    endpoint.resource_count_is("AWS::SageMaker::InferenceComponent", 0)
    prefix = f"s3://small-models-mme-{ACCOUNT}-us-east-1/mme/small-models-mme/"
    endpoint.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "ExecutionRoleArn": Match.any_value(),
            "PrimaryContainer": {
                "Image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.27.0-deepspeed0.12.6-cu121",
                "Mode": "MultiModel",
                "ModelDataUrl": prefix,
            },
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": {"Fn::GetAtt": [Match.any_value(), "ModelName"]},
                    "InstanceType": "ml.g5.2xlarge",
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": 1,
                    "ContainerStartupHealthCheckTimeoutInSeconds": Match.absent(),
                }
            ],
            "ExecutionRoleArn": Match.absent(),
        },
    )
    endpoint.has_resource_properties(
        "AWS::SageMaker::Endpoint",
        {"DeploymentConfig": Match.object_like({"BlueGreenUpdatePolicy": Match.any_value()})},
    )
    endpoint.resource_count_is("AWS::ApplicationAutoScaling::ScalableTarget", 0)
    statements = _statements(endpoint)
    assert (
        _arn(statements["ReadModelArchives"]["Resource"])
        == f"arn:aws:s3:::small-models-mme-{ACCOUNT}-us-east-1/mme/small-models-mme/*"
    )
    assert statements["ReadModelArchives"]["Action"] == "s3:GetObject"
    assert "ReadCode" not in statements  # no code asset: the archives are staged under the prefix
    assert {"ReadWeights", "ReadWeightsTinyllamaChat"} <= set(statements)
    outputs = endpoint.find_outputs("*")
    assert outputs["ModelArchivesS3Prefix"]["Value"] == prefix
    assert json.loads(outputs["TargetModels"]["Value"]) == {m.name: target_model(multi_, m.name) for m in multi_.models}


# ---- clients: a model's name becomes TargetModel / InferenceComponentName --------------------------------------


class Runtime:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Body": types.SimpleNamespace(read=lambda: b'{"outputs": ["ok"]}')}


class CloudFormation:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        return {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]}


def test_invoke_names_the_model_as_sagemaker_expects(capsys: pytest.CaptureFixture[str]) -> None:
    runtime = Runtime()
    assert (
        invoke.main(["--endpoint", "ep", "--target-model", "a-0123456789ab.tar.gz", "--prompt", "hi"], runtime=runtime)
        == 0
    )
    assert invoke.main(["--endpoint", "ep", "--inference-component", "ep-b", "--prompt", "hi"], runtime=runtime) == 0
    assert (
        runtime.calls[0]["TargetModel"] == "a-0123456789ab.tar.gz" and "InferenceComponentName" not in runtime.calls[0]
    )
    assert runtime.calls[1]["InferenceComponentName"] == "ep-b" and "TargetModel" not in runtime.calls[1]
    # with the deployment file: the model's name there, and the deployed stack's outputs
    targets = {"flan-t5-large": "flan-t5-large-aaaaaaaaaaaa.tar.gz"}
    cloudformation = CloudFormation({"EndpointName": "small-models-mme", "TargetModels": json.dumps(targets)})
    argv = ["--config", str(MME_EXAMPLE), "--target-model", "flan-t5-large", "--prompt", "hi"]
    assert invoke.main(argv, runtime=runtime, cloudformation=cloudformation) == 0
    assert (runtime.calls[2]["EndpointName"], runtime.calls[2]["TargetModel"]) == (
        "small-models-mme",
        targets["flan-t5-large"],
    )
    argv = ["--config", str(IC_EXAMPLE), "--inference-component", "mistral-7b", "--prompt", "hi"]
    assert invoke.main(argv, runtime=runtime, cloudformation=CloudFormation({"EndpointName": "chat-llms-ic"})) == 0
    assert runtime.calls[3]["InferenceComponentName"] == "chat-llms-ic-mistral-7b"
    capsys.readouterr()
    assert invoke.main(["--config", str(IC_EXAMPLE), "--prompt", "hi"], runtime=runtime) == 2
    assert "pass --inference-component NAME, one of llama-3-8b, mistral-7b, llama-2-7b" in capsys.readouterr().err
    assert (
        invoke.main(["--config", str(MME_EXAMPLE), "--inference-component", "x", "--prompt", "hi"], runtime=runtime)
        == 2
    )
    assert "is a multi-model endpoint: name the model with --target-model" in capsys.readouterr().err
    argv = ["--endpoint", "ep", "--target-model", "a.tar.gz", "--prompt", "hi", "--stream"]
    assert invoke.main(argv, runtime=runtime) == 2
    assert "a multi-model endpoint does not stream" in capsys.readouterr().err


def test_invoke_and_benchmark_through_moto_with_a_target_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    from moto import mock_aws

    from lmi_deploy.commands import benchmark

    with mock_aws():
        runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
        argv = ["--endpoint", "several", "--target-model", "a-0123456789ab.tar.gz", "--prompt", "hi"]
        assert invoke.main(argv, runtime=runtime) == 0
        argv = ["--endpoint", "several", "--inference-component", "several-b", "--prompt", "hi"]
        assert invoke.main(argv, runtime=runtime) == 0
        argv = ["--endpoint", "several", "--inference-component", "several-b", "--requests", "3", "--concurrency", "1",
                "--out-dir", str(tmp_path)]  # fmt: skip
        assert benchmark.main(argv, runtime=runtime) == 0
    out = capsys.readouterr().out
    assert "to several (model several-b)" in out
    assert (tmp_path / "benchmark.csv").exists()


# ---- staging the MME archives ------------------------------------------------------------------------------------


def test_stage_model_stages_each_models_weights_and_the_mme_archives(
    tiny_models: dict[str, Path], tmp_path: Path, deployment_file, capsys
) -> None:
    import boto3
    from moto import mock_aws

    path = deployment_file(
        "deployment: tiny-mme\nmulti_model: mme\nengine: accelerate\ninstance_type: ml.g5.xlarge\n"
        "tensor_parallel_degree: 1\ndtype: fp32\nmodels:\n"
        f"  - {{name: t5, model_id: {tiny_models['t5']}}}\n  - {{name: llama, model_id: {tiny_models['llama']}}}\n"
    )
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        bucket = "tiny-mme-123456789012-us-east-1"  # the stacks' account, not the scripts' default
        s3.create_bucket(Bucket=bucket)
        argv = ["--config", str(path), "--bucket", bucket, "--no-progress"]
        assert stage_model.main(argv, s3=s3) == 0
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
        archives = [k for k in keys if k.startswith("mme/tiny-mme/")]
        assert [k.rsplit("-", 1)[0] for k in archives] == ["mme/tiny-mme/llama", "mme/tiny-mme/t5"]
        assert any(k.endswith("/manifest.json") and "t5" in k for k in keys)  # each model's weights, with a manifest
        archive = s3.get_object(Bucket=bucket, Key=archives[1])["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = tar.extractfile("./serving.properties")
            assert member is not None
            assert f"s3://{bucket}/models/" in member.read().decode()  # rendered for the bucket's account
        assert stage_model.main([*argv, "--model-name", "t5"], s3=s3) == 0
    out = capsys.readouterr().out
    assert out.count("(uploaded)") == 2 and out.count("(already there)") == 2


def test_validate_and_render_scripts_take_a_multi_model_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmi_deploy.commands import render, validate

    assert validate.main(["--config", str(IC_EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "chat-llms-ic: 3 models as inference components on ml.g5.12xlarge" in out and out.rstrip().endswith("ok")
    assert validate.main(["--config", str(MME_EXAMPLE), "-c", "instance_type=ml.g5.xlarge", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [w["rule"] for w in report["warnings"]] == ["LMI920"]
    assert validate.main(["--config", str(IC_EXAMPLE), "-c", "instance_type=ml.g5.2xlarge"]) == 2
    assert "models[1] (mistral-7b) does not fit ml.g5.2xlarge x1" in capsys.readouterr().err
    assert render.main(["--config", str(MME_EXAMPLE), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "staged as s3://small-models-mme-" in out
    assert (tmp_path / "small-models-mme" / "tinyllama-chat" / "serving.properties").exists()


def test_partition_model_picks_one_model_of_several(capsys: pytest.CaptureFixture[str]) -> None:
    from lmi_deploy.commands import partition_model

    assert partition_model.main(["--config", str(IC_EXAMPLE), "--dry-run"]) == 2
    assert "pick one with --model-name (llama-3-8b, mistral-7b, llama-2-7b)" in capsys.readouterr().err
    assert partition_model.main(["--config", str(IC_EXAMPLE), "--dry-run", "--model-name", "mistral-7b"]) == 2
    assert "vLLM builds its engine when the container starts" in capsys.readouterr().err


def test_every_catalogued_instance_has_its_host_memory_and_sagemaker_delivery_is_kept_per_component() -> None:
    from lmi_deploy import instances
    from stacks.components.multi_model_endpoint import construct_id, container_definition

    assert [n for n in instances.catalog() if not instances.host_memory_gib(n)] == []
    assert (instances.host_memory_gib("ml.g5.12xlarge"), instances.host_memory_gib("ml.g6e.xlarge")) == (192, 32)
    models = [{"name": "llama", "model_id": "meta-llama/Llama-2-7b-hf", "weights_delivery": "sagemaker"}]
    config = multi(models=models, engine="vllm", lmi_version="0.33.0", instance_type="ml.g5.2xlarge").models[0].config
    container = container_definition(config, None)
    assert container.model_data_url is None and container.environment["HF_MODEL_ID"] == "/opt/ml/model"
    assert container.model_data_source.s3_data_source.s3_uri == config.weights_s3_uri
    assert construct_id("llama-3-8b") == "Llama38b"
