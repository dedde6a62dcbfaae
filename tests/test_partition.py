"""Ahead-of-time partitioning: the rendered script, the Processing job (moto), and deploying the partitioned copy."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from lmi_deploy import partition
from lmi_deploy.commands import partition_model
from lmi_deploy.config import load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.render import serving_properties
from tests.conftest import ruff_py39

DEEPSPEED = {
    "engine": "deepspeed",
    "model_id": "EleutherAI/gpt-j-6b",
    "lmi_version": "0.27.0",
    "tensor_parallel_degree": "2",
    "dtype": "fp16",
    "account": "111122223333",
}
ROLE = "arn:aws:iam::111122223333:role/partition"


@pytest.mark.parametrize("context", [DEEPSPEED, {"account": "111122223333"}], ids=["deepspeed", "fastertransformer"])
def test_partition_script_compiles_and_lints(tmp_path: Path, context: dict[str, str]) -> None:
    config = load_config(context)
    script = partition.partition_script(config)
    ast.parse(script, feature_version=(3, 9))
    assert "{{" not in script and "{%" not in script
    (tmp_path / "partition.py").write_text(script)
    result = ruff_py39(str(tmp_path / "partition.py"))
    assert result.returncode == 0, result.stdout
    call = (
        "save_mp_checkpoint_path=OUTPUT_DIR"
        if config.engine.value == "DeepSpeed"
        else "fastertransformer.save_checkpoint(INPUT_DIR, TENSOR_PARALLEL_DEGREE, 1, OUTPUT_DIR"
    )
    assert call in script


def test_job_request_runs_the_deployments_image_on_the_staged_prefix() -> None:
    config = load_config(DEEPSPEED)
    request = partition.job_request(config, ROLE, "s3://b/partition-code/x/", now=0)
    staged = "s3://gpt-j-6b-111122223333-us-east-1/models/EleutherAI/gpt-j-6b/main/"
    assert request["ProcessingJobName"] == "gpt-j-6b-partition-tp2-19700101-000000"
    assert request["AppSpecification"] == {
        "ImageUri": config.image_uri,
        "ContainerEntrypoint": ["deepspeed", "--num_gpus", "2", "/opt/ml/processing/input/code/partition.py"],
    }
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == "s3://b/partition-code/x/" + partition.INPUT_MANIFEST  # lists staged files
    assert inputs["model"]["S3DataType"] == "ManifestFile" and inputs["model"]["LocalPath"] == partition.INPUT_DIR
    assert request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == staged + "partitioned/tp2/"
    cluster = request["ProcessingResources"]["ClusterConfig"]
    assert cluster["InstanceType"] == config.instance_type and cluster["VolumeSizeInGB"] >= 50


def test_partitioned_deployment_loads_the_partitioned_prefix() -> None:
    config = load_config({**DEEPSPEED, "partitioned": "true", "handler": "builtin"})
    properties = dict(serving_properties(config))
    assert properties["option.model_id"] == (
        "s3://gpt-j-6b-111122223333-us-east-1/models/EleutherAI/gpt-j-6b/main/partitioned/tp2/"
    )
    assert properties["option.checkpoint"] == "ds_inference_config.json"
    with pytest.raises(ConfigError, match="for FasterTransformer, DeepSpeed and TensorRT-LLM only"):
        load_config({"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "partitioned": "true"})
    with pytest.raises(ConfigError, match="builds its engine when the container starts"):
        partition.partition_files(load_config({"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf"}))


def test_tensorrt_llm_compiles_ahead_of_time_with_the_containers_own_script() -> None:
    context = {
        "engine": "tensorrt-llm",
        "model_id": "meta-llama/Llama-2-7b-hf",
        "lmi_version": "0.30.0",
        "tensor_parallel_degree": "4",
        "account": "111122223333",
    }
    config = load_config(context)
    files = partition.partition_files(config)
    properties = dict(line.split("=", 1) for line in files["serving.properties"].splitlines())
    assert properties["option.model_id"] == partition.INPUT_DIR  # the job's copy of the staged weights
    assert properties["option.rolling_batch"] == "trtllm" and properties["option.tensor_parallel_degree"] == "4"
    request = partition.job_request(config, ROLE, "s3://b/code/", now=0)
    assert request["AppSpecification"]["ContainerEntrypoint"] == [
        "python3",
        "/opt/djl/partition/trt_llm_partition.py",
        "--properties_dir",
        partition.CODE_DIR,
        "--trt_llm_model_repo",
        partition.OUTPUT_DIR,
        "--tensor_parallel_degree",
        "4",
    ]
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceType"] == config.instance_type  # same GPU arch
    compiled = load_config({**context, "partitioned": "true"})
    assert compiled.weights_s3_uri.endswith("/models/meta-llama/Llama-2-7b-hf/main/partitioned/tp4/")
    # no compile at startup any more: the startup timeout drops accordingly
    assert (
        compiled.resolved.container_startup_health_check_timeout
        < config.resolved.container_startup_health_check_timeout
    )
    with pytest.raises(ConfigError, match=r"needs lmi_version 0\.26\.0 or later"):
        partition.partition_files(load_config({**context, "lmi_version": "0.25.0"}))


def test_partition_script_starts_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    args = [arg for key, value in DEEPSPEED.items() for arg in ("-c", f"{key}={value}")]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        bucket, staged = "gpt-j-6b-111122223333-us-east-1", "models/EleutherAI/gpt-j-6b/main/"
        s3.create_bucket(Bucket=bucket)
        assert partition_model.main([*args, "--role-arn", ROLE], s3=s3, sagemaker=sagemaker) == 2
        assert f"s3://{bucket}/{staged} holds no staged files: stage the model first" in capsys.readouterr().err
        for name in ("config.json", "model.safetensors", "manifest.json", "partitioned/tp4/ds_inference_config.json"):
            s3.put_object(Bucket=bucket, Key=staged + name, Body=b"{}")
        assert partition_model.main([*args, "--role-arn", ROLE], s3=s3, sagemaker=sagemaker) == 0
        out = capsys.readouterr().out
        name = out.split()[1].rstrip(":")
        job = sagemaker.describe_processing_job(ProcessingJobName=name)
        assert job["RoleArn"] == ROLE
        assert job["AppSpecification"]["ImageUri"].endswith("djl-inference:0.27.0-deepspeed0.12.6-cu121")
        code_uri = next(i for i in job["ProcessingInputs"] if i["InputName"] == "code")["S3Input"]["S3Uri"]
        bucket, _, key = code_uri.removeprefix("s3://").partition("/")
        script = s3.get_object(Bucket=bucket, Key=key + "partition.py")["Body"].read().decode()
        assert {"partition.py": script} == partition.partition_files(load_config(DEEPSPEED))
        # the model input lists the staged files only: an earlier TP degree's checkpoint is not downloaded again
        model_input = next(i for i in job["ProcessingInputs"] if i["InputName"] == "model")["S3Input"]
        manifest_key = model_input["S3Uri"].removeprefix(f"s3://{bucket}/")
        listed = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
        assert listed == [{"prefix": f"s3://{bucket}/{staged}"}, "config.json", "manifest.json", "model.safetensors"]
        assert "partitioned/tp2/" in out

    assert partition_model.main([*args]) == 2
    assert "--role-arn is required" in capsys.readouterr().err
    assert partition_model.main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[: printed.index("\n}\n") + 2])["RoleArn"] == "<role-arn>"
