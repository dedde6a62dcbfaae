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
    assert config.resolved.model_data_download_timeout == 600  # derived (auto), the seed's value
    assert config.resolved.container_startup_health_check_timeout == 600
    assert config.resolved.model_loading_timeout == 600
    assert config.resolved.tensor_parallel_degree == 4 and config.resolved.dtype == "fp32"
    assert config.resolved.errors == [] and config.resolved.warnings == []
    assert config.facts is not None and config.facts.parameters == pytest.approx(11.13e9, rel=0.01)
    assert config.handler == "custom"
    assert config.deployment == "flan-t5-xxl"
    assert config.artifacts_stack_name == "flan-t5-xxl-artifacts"
    assert config.endpoint_stack_name == "flan-t5-xxl-endpoint"
    assert config.resolved_model_type == "t5"
    assert config.volume_size_gb is None


def test_sources_in_order_environment_file_context(deployment_file) -> None:
    path = deployment_file("region: eu-west-1\ndtype: bf16\ntensor_parallel_degree: 2\nmodel_revision: abc123\n")
    config = load_config(
        {"config": str(path), "tensor_parallel_degree": "4", "@aws-cdk/core:foo": True, "aws:cdk:enable": "x"},
        environment_defaults={"account": "111122223333", "region": "us-west-2"},
    )
    assert config.region == "eu-west-1"  # file beats environment
    assert config.tensor_parallel_degree == 4  # context beats file (and arrives as a string)
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


LLAMA = {"model_id": "meta-llama/Llama-2-7b-hf"}  # bundled config: 32 heads, 32 KV heads, 6.7B, 4096 positions
MISTRAL = {"model_id": "mistralai/Mistral-7B-Instruct-v0.2"}  # 32 heads, 8 KV heads
BAD_INPUTS = [
    # keys and types
    (
        {"tensor_paralel_degree": "4"},
        "unknown setting 'tensor_paralel_degree' (did you mean 'tensor_parallel_degree'?)",
    ),
    ({"instance_typ": "ml.g5.xlarge"}, "unknown setting 'instance_typ' (did you mean 'instance_type'?)"),
    ({"tensor_parallel_degree": "0"}, "invalid tensor_parallel_degree='0'"),
    ({"tensor_parallel_degree": "many"}, "invalid tensor_parallel_degree='many'"),
    ({"instance_count": "abc"}, "invalid instance_count='abc': Input should be a valid integer"),
    ({"dtype": "fp8"}, "invalid dtype='fp8': Input should be 'fp32', 'fp16', 'bf16', 'int8' or 'auto'"),
    ({"handler": "script"}, "invalid handler='script': Input should be 'custom' or 'builtin'"),
    ({"account": "12345"}, "invalid account='12345': must be a 12-digit AWS account id"),
    ({"deployment": "My_Model"}, "invalid deployment='My_Model': must be 2-32 characters"),
    (
        {"engine": "tensorflow"},
        "invalid engine='tensorflow': unknown engine; available engines: FasterTransformer, DeepSpeed",
    ),
    # engine x version x region x image
    (
        {"lmi_version": "0.25.0"},
        "lmi_version='0.25.0' has no FasterTransformer container; versions that ship it: 0.21.0, 0.22.1, 0.23.0, 0.24.0",
    ),
    (
        {"engine": "DeepSpeed", "lmi_version": "0.28.0", **LLAMA},
        "lmi_version='0.28.0' has no DeepSpeed container; versions that ship it: 0.19.0",
    ),
    (
        {"engine": "tensorrt-llm", "lmi_version": "0.31.0", **LLAMA},
        "lmi_version='0.31.0' has no TensorRT-LLM container",
    ),
    ({"engine": "lmi-dist", "lmi_version": "0.33.0", **LLAMA}, "lmi_version='0.33.0' has no lmi-dist container"),
    ({"engine": "vllm", "lmi_version": "0.22.1", **LLAMA}, "lmi_version='0.22.1' has no vLLM container"),
    ({"region": "xx-north-9"}, "region='xx-north-9' has no FasterTransformer 0.21.0 image"),
    # instance and tensor parallelism
    (
        {"instance_type": "ml.g5.12xl"},
        "instance_type='ml.g5.12xl' is not a known accelerator instance; did you mean ml.g5.12xlarge",
    ),
    (
        {"tensor_parallel_degree": "8"},
        "tensor_parallel_degree=8 does not fit ml.g5.12xlarge, which has 4 GPUs; use one of 1, 2, 4",
    ),
    ({"tensor_parallel_degree": "3"}, "tensor_parallel_degree=3 does not fit ml.g5.12xlarge"),
    (
        {
            "engine": "neuronx",
            "instance_type": "ml.inf2.48xlarge",
            "tensor_parallel_degree": "32",
            "dtype": "bf16",
            **LLAMA,
        },
        "does not fit ml.inf2.48xlarge, which has 24 NeuronCores",
    ),
    (
        {
            "engine": "vllm",
            "instance_type": "ml.p4d.24xlarge",
            "tensor_parallel_degree": "8",
            "model_config": "HEADS12",
        },
        "tensor_parallel_degree=8 does not divide its 12 attention heads of",
    ),
    (
        {
            "engine": "accelerate",
            "instance_type": "ml.g5.48xlarge",
            "tensor_parallel_degree": "8",
            "model_config": "KV4",
        },
        "does not divide its 4 key/value heads",
    ),
    (
        {"engine": "vllm", "tensor_parallel_degree": "max", "lmi_version": "0.23.0", **LLAMA},
        "tensor_parallel_degree=max is read only from LMI 0.24.0",
    ),
    # memory
    (
        {
            "engine": "vllm",
            "instance_type": "ml.g4dn.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp16",
            "model_id": "meta-llama/Meta-Llama-3-8B-Instruct",
        },
        "does not fit ml.g4dn.xlarge at TP1: needs 17.0 GiB per GPU, has 14.4 GiB",
    ),
    ({"tensor_parallel_degree": "1"}, "google/flan-t5-xxl in fp32 does not fit ml.g5.12xlarge at TP1"),
    (
        {
            "engine": "accelerate",
            "instance_type": "ml.g4dn.xlarge",
            "tensor_parallel_degree": "auto",
            "dtype": "fp16",
            **LLAMA,
        },
        "no tensor_parallel_degree on ml.g4dn.xlarge fits meta-llama/Llama-2-7b-hf in fp16",
    ),
    # engine vs model family, hardware, dtype
    ({"engine": "vllm"}, "google/flan-t5-xxl is an encoder-decoder (T5) model, which vLLM does not serve"),
    # without a config.json (only a warning about it), the name still tells the family
    (
        {"engine": "vllm", "model_id": "acme/flan-t5-custom"},
        "acme/flan-t5-custom is an encoder-decoder (T5) model, which vLLM does not serve",
    ),
    ({"engine": "DeepSpeed", "lmi_version": "0.27.0"}, "model_type='t5' is not supported by DeepSpeed"),
    ({"model_id": "x/mixtral", "model_type": "mixtral"}, "model_type='mixtral' is not supported by FasterTransformer"),
    (
        {"engine": "neuronx", "dtype": "bf16", **LLAMA},
        "engine NeuronX runs on AWS Inferentia2/Trainium, but ml.g5.12xlarge has A10G GPUs",
    ),
    (
        {"instance_type": "ml.inf2.48xlarge"},
        "engine FasterTransformer needs NVIDIA GPUs, but ml.inf2.48xlarge has Inferentia2 NeuronCores",
    ),
    (
        {
            "engine": "neuronx",
            "lmi_version": "0.23.0",
            "instance_type": "ml.inf2.24xlarge",
            "tensor_parallel_degree": "4",
            "dtype": "fp16",
            **LLAMA,
        },
        "model_type='llama' needs NeuronX from 0.24.0",
    ),
    ({"dtype": "fp16"}, "dtype='fp16' with T5 models gives garbage output"),
    ({"engine": "accelerate", "dtype": "fp16"}, "dtype='fp16' with T5 models gives garbage output"),
    ({"dtype": "int8"}, "dtype='int8' is refused by FasterTransformer for T5 models"),
    (
        {"instance_type": "ml.p3.8xlarge", "dtype": "bf16"},
        "dtype='bf16' needs an Ampere or newer GPU, but ml.p3.8xlarge has V100s",
    ),
    ({"engine": "vllm", "dtype": "fp32", **LLAMA}, "dtype='fp32' is not supported by vLLM"),
    ({"engine": "vllm", "handler": "custom", **LLAMA}, "handler=custom is not offered for vLLM"),
    # timeouts, volume, sequence length
    ({"model_data_download_timeout": "30"}, "invalid model_data_download_timeout='30'"),
    ({"container_startup_health_check_timeout": "7200"}, "invalid container_startup_health_check_timeout='7200'"),
    ({"model_loading_timeout": "900"}, "model_loading_timeout=900 exceeds container_startup_health_check_timeout=600"),
    (
        {
            "model_id": "google/flan-ul2",
            "tensor_parallel_degree": "4",
            "dtype": "bf16",
            "instance_type": "ml.g5.24xlarge",
            "model_data_download_timeout": "60",
        },
        "model_data_download_timeout=60 is shorter than the",
    ),
    (
        {
            "engine": "neuronx",
            "instance_type": "ml.inf2.24xlarge",
            "tensor_parallel_degree": "4",
            "dtype": "bf16",
            "container_startup_health_check_timeout": "600",
            **LLAMA,
        },
        "container_startup_health_check_timeout=600 is shorter than the",
    ),
    ({"volume_size_gb": "100"}, "volume_size_gb=100 is refused by SageMaker on ml.g5.12xlarge"),
    (
        {
            "engine": "accelerate",
            "instance_type": "ml.p3.8xlarge",
            "tensor_parallel_degree": "4",
            "dtype": "fp16",
            "volume_size_gb": "5",
            **LLAMA,
        },
        "volume_size_gb=5 cannot hold the weights: needs at least",
    ),
    (
        {"engine": "vllm", "max_sequence_length": "8192", **LLAMA},
        "max_sequence_length=8192 exceeds the model's 4096 positions",
    ),
    (
        {"model_id": "meta-llama/Llama-2-7b-chat-hf"},
        "cannot tell the architecture of model_id='meta-llama/Llama-2-7b-chat-hf'",
    ),
]


def _with_model_configs(context: dict[str, str], tmp_path) -> dict[str, str]:
    """Model configs the corpus refers to by name, written by the test."""
    configs = {
        "HEADS12": {
            "model_type": "gpt_neox",
            "hidden_size": 768,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "vocab_size": 50304,
            "max_position_embeddings": 2048,
        },
        "KV4": {
            "model_type": "llama",
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "num_hidden_layers": 32,
            "intermediate_size": 11008,
            "vocab_size": 32000,
            "max_position_embeddings": 4096,
        },
    }
    if context.get("model_config") in configs:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(configs[context["model_config"]]))
        context = {**context, "model_config": str(path), "model_id": "test/model"}
    return context


@pytest.mark.parametrize(("context", "message"), BAD_INPUTS, ids=[str(c) for c, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line(context: dict[str, str], message: str, tmp_path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(_with_model_configs(context, tmp_path))
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


def test_image_uris_match_sagemaker_core_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every engine x version x region resolves to the URI sagemaker-core gives."""
    import functools

    from sagemaker.core import image_uris

    # retrieve() re-reads botocore's endpoint data on every call (~35 ms); the data does not change within a run
    monkeypatch.setattr(image_uris.utils, "_botocore_resolver", functools.cache(image_uris.utils._botocore_resolver))

    for engine in Engine:
        for version in containers.versions(engine):
            framework = containers.framework(engine, version)
            for region in containers.regions(engine, version):
                expected = image_uris.retrieve(framework=framework, region=region, version=version)
                assert containers.image_uri(engine, version, region) == expected, (engine, version, region)


def test_every_version_that_lacks_an_engine_is_refused_with_the_versions_that_ship_it() -> None:
    for engine in Engine:
        shipped = containers.versions(engine)
        for version in containers.all_versions():
            if version in shipped:
                continue
            with pytest.raises(ConfigError) as raised:
                load_config({"engine": engine.value, "lmi_version": version, "model_id": "meta-llama/Llama-2-7b-hf"})
            assert str(raised.value) == (
                f"LMI005 lmi_version={version!r} has no {engine.value} container; versions that ship it: "
                f"{', '.join(shipped)}"
            )
