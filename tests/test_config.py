"""The deployment config: seed defaults, precedence of sources, and one clear line for every bad input."""

from __future__ import annotations

import json

import pytest

from lmi_deploy import containers, instances
from lmi_deploy.config import DeploymentConfig, load_config
from lmi_deploy.containers import Engine
from lmi_deploy.errors import ConfigError


def test_defaults_reproduce_the_seed_deployment() -> None:
    config = load_config({})
    assert config.model_id == "google/flan-t5-xxl"
    assert config.engine is Engine.FASTER_TRANSFORMER
    assert config.lmi_version == "0.21.0"
    assert config.tensor_parallel_degree == 4
    assert config.dtype == "fp32"
    assert config.instance_type == "ml.g5.12xlarge"
    assert config.instance_count == 1
    assert config.model_data_download_timeout == 600
    assert config.container_startup_health_check_timeout == 600
    assert config.model_loading_timeout_s == 600
    assert config.handler == "custom"
    assert config.deployment == "flan-t5-xxl"
    assert config.artifacts_stack_name == "flan-t5-xxl-artifacts"
    assert config.endpoint_stack_name == "flan-t5-xxl-endpoint"
    assert config.resolved_model_type == "t5"
    assert config.volume_size_gb is None


def test_sources_in_order_environment_file_context(deployment_file) -> None:
    path = deployment_file("region: eu-west-1\ndtype: bf16\ntensor_parallel_degree: 2\nmodel_revision: abc123\n")
    config = load_config(
        {"config": str(path), "tensor_parallel_degree": "1", "@aws-cdk/core:foo": True, "aws:cdk:enable": "x"},
        environment_defaults={"account": "111122223333", "region": "us-west-2"},
    )
    assert config.region == "eu-west-1"  # file beats environment
    assert config.tensor_parallel_degree == 1  # context beats file (and arrives as a string)
    assert config.dtype == "bf16"
    assert config.account == "111122223333"
    assert config.bucket_name == "flan-t5-xxl-111122223333-eu-west-1"
    assert config.weights_s3_uri == "s3://flan-t5-xxl-111122223333-eu-west-1/models/google/flan-t5-xxl/abc123/"


def test_engine_names_are_case_insensitive_and_config_is_frozen() -> None:
    config = load_config({"engine": "fasterTRANSFORMER"})
    assert config.engine is Engine.FASTER_TRANSFORMER
    with pytest.raises(Exception, match="frozen"):
        config.dtype = "bf16"  # type: ignore[misc]


def test_weights_given_as_s3_prefix_are_used_as_is() -> None:
    config = load_config({"model_id": "s3://team-models/t5/flan-t5-xl", "deployment": "flan-xl"})
    assert config.weights_bucket_and_prefix == ("team-models", "t5/flan-t5-xl/")
    assert config.resolved_model_type == "t5"


BAD_INPUTS = [
    (
        {"tensor_parallel_degree": "8"},
        "tensor_parallel_degree=8 does not fit ml.g5.12xlarge, which has 4 GPUs; use one of 1, 2, 4",
    ),
    ({"tensor_parallel_degree": "3"}, "tensor_parallel_degree=3 does not fit ml.g5.12xlarge"),
    ({"tensor_parallel_degree": "0"}, "invalid tensor_parallel_degree='0': Input should be greater than or equal to 1"),
    (
        {"tensor_paralel_degree": "4"},
        "unknown setting 'tensor_paralel_degree' (did you mean 'tensor_parallel_degree'?)",
    ),
    ({"dtype": "fp16"}, "dtype='fp16' with FasterTransformer and T5 models gives garbage output"),
    ({"dtype": "int8"}, "use dtype=bf16 or dtype=fp32"),
    ({"dtype": "fp8"}, "invalid dtype='fp8': Input should be 'fp32', 'fp16', 'bf16' or 'int8'"),
    (
        {"engine": "vLLM"},
        "invalid engine='vLLM': not available in lmi-deploy yet; available engines: FasterTransformer",
    ),
    ({"engine": "tensorflow"}, "invalid engine='tensorflow': unknown engine"),
    (
        {"lmi_version": "0.25.0"},
        "lmi_version='0.25.0' has no FasterTransformer container; versions that ship it: 0.21.0, 0.22.1, 0.23.0, 0.24.0",
    ),
    (
        {"instance_type": "ml.g5.12xl"},
        "instance_type='ml.g5.12xl' is not a known accelerator instance; did you mean ml.g5.12xlarge",
    ),
    (
        {"instance_type": "ml.inf2.48xlarge", "tensor_parallel_degree": "4"},
        "needs NVIDIA GPUs, but ml.inf2.48xlarge has Inferentia2",
    ),
    ({"instance_count": "abc"}, "invalid instance_count='abc': Input should be a valid integer"),
    (
        {"model_data_download_timeout": "30"},
        "invalid model_data_download_timeout='30': Input should be greater than or equal to 60",
    ),
    ({"container_startup_health_check_timeout": "7200"}, "Input should be less than or equal to 3600"),
    ({"model_loading_timeout": "900"}, "model_loading_timeout=900 exceeds container_startup_health_check_timeout=600"),
    ({"volume_size_gb": "100"}, "volume_size_gb=100 is refused by SageMaker on ml.g5.12xlarge"),
    ({"model_id": "meta-llama/Llama-2-7b-hf"}, "cannot tell the architecture of model_id='meta-llama/Llama-2-7b-hf'"),
    ({"model_id": "x/llama", "model_type": "llama"}, "model_type='llama' is not supported by FasterTransformer"),
    ({"deployment": "My_Model"}, "invalid deployment='My_Model': must be 2-32 characters"),
    ({"region": "mars-north-1"}, "region='mars-north-1' has no FasterTransformer 0.21.0 image"),
    ({"handler": "script"}, "invalid handler='script': Input should be 'custom' or 'builtin'"),
    ({"account": "12345"}, "invalid account='12345'"),
]


@pytest.mark.parametrize(("context", "message"), BAD_INPUTS, ids=[str(c) for c, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line(context: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(context)
    text = str(raised.value)
    assert message in text
    assert "\n" not in text and "Traceback" not in text


def test_bad_file_value_names_the_file(deployment_file) -> None:
    path = deployment_file("instance_count: many\n")
    with pytest.raises(ConfigError, match=rf"invalid instance_count='many' in {path}"):
        load_config({"config": str(path)})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("engine: [FasterTransformer\n", "is not valid YAML at line 2, column 1"),
        ("- a\n- b\n", "must hold a mapping of settings, not a list"),
        ("dtyp: bf16\n", "unknown setting 'dtyp' in"),
    ],
)
def test_malformed_deployment_file(deployment_file, text: str, message: str) -> None:
    path = deployment_file(text)
    with pytest.raises(ConfigError, match=r"deployment file|unknown setting") as raised:
        load_config({"config": str(path)})
    assert message in str(raised.value)


def test_missing_deployment_file() -> None:
    with pytest.raises(ConfigError, match=r"deployment file nope\.yaml does not exist"):
        load_config({"config": "nope.yaml"})


def test_instance_catalog_agrees_with_sagemaker_core() -> None:
    from sagemaker.core.common_utils import volume_size_supported
    from sagemaker.core.image_uris import config_for_framework

    gpu_info = json.loads(
        (
            containers.metadata.distribution("sagemaker-core").locate_file(  # type: ignore[union-attr]
                "sagemaker/core/image_uri_config/instance_gpu_info.json"
            )
        ).read_text()
    )["us-east-1"]
    for name, instance in instances.catalog().items():
        assert instance.supports_volume_size == volume_size_supported(name), name
        if name in gpu_info:
            assert instance.accelerator_count == gpu_info[name]["Count"], name
    sdk_versions = set(config_for_framework("djl-fastertransformer")["versions"])
    assert set(containers.versions(Engine.FASTER_TRANSFORMER)) == sdk_versions
    assert instances.catalog()["ml.g5.12xlarge"].accelerator_count == 4
    assert instances.catalog()["ml.inf2.48xlarge"].accelerator_count == 24  # NeuronCores


@pytest.mark.parametrize(
    ("region", "uri"),
    [
        ("us-east-1", "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.21.0-fastertransformer5.3.0-cu117"),
        (
            "af-south-1",
            "626614931356.dkr.ecr.af-south-1.amazonaws.com/djl-inference:0.21.0-fastertransformer5.3.0-cu117",
        ),
        (
            "cn-north-1",
            "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/djl-inference:0.21.0-fastertransformer5.3.0-cu117",
        ),
    ],
)
def test_image_uri_per_region(region: str, uri: str) -> None:
    config = DeploymentConfig(region=region)
    assert config.image_uri == uri
    assert config.image_repository == "djl-inference"
    assert config.image_account == uri.split(".")[0]


def test_image_uris_match_sagemaker_core_everywhere() -> None:
    from sagemaker.core import image_uris

    for engine in Engine:
        for version in containers.versions(engine):
            # one region per distinct registry account, plus every region outside amazonaws.com
            by_account: dict[str, str] = {}
            for region in containers.regions(engine, version):
                account = containers.image_uri(engine, version, region).split(".")[0]
                if region.startswith(("cn-", "eusc-")) or account not in by_account:
                    by_account[account if not region.startswith(("cn-", "eusc-")) else region] = region
            for region in by_account.values():
                expected = image_uris.retrieve(
                    framework=containers.ENGINES[engine].sdk_framework, region=region, version=version
                )
                assert containers.image_uri(engine, version, region) == expected, (engine, version, region)
