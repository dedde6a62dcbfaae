"""Ahead-of-time partitioning: render the partition script and the SageMaker Processing job that runs it.

The job runs the deployment's own LMI image on the staged weights and writes the result to
``<weights prefix>/partitioned/tp<N>/``; a deployment with ``partitioned=true`` then loads from there and skips the
conversion or compilation at startup: FasterTransformer ``save_checkpoint`` and DeepSpeed ``save_mp_checkpoint_path``
through our rendered ``partition.py``; TensorRT-LLM through the container's own
``/opt/djl/partition/trt_llm_partition.py`` on our rendered ``serving.properties`` (LMI 0.26.0 onward, per the LMI
TensorRT-LLM ahead-of-time tutorial). The compiled engine only runs on the GPU architecture it was built on, so the job
runs on the deployment's instance type.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

from lmi_deploy import render
from lmi_deploy.config import DeploymentConfig
from lmi_deploy.containers import ENGINES, PARTITIONABLE
from lmi_deploy.errors import ConfigError
from lmi_deploy.model_facts import DTYPE_BYTES
from lmi_deploy.rules.delivery import partition_problems
from lmi_deploy.rules.registry import tagged

SUPPORTED = PARTITIONABLE
INPUT_DIR = "/opt/ml/processing/input/model"
CODE_DIR = "/opt/ml/processing/input/code"
OUTPUT_DIR = "/opt/ml/processing/output"
SUPPORT_FILES = (
    "config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "added_tokens.json",
)
MAX_RUNTIME_S = 4 * 3600
# where the Accelerate handler looks for its compile cache, under the weights (lmi_deploy/handlers/compile_cache.py)
COMPILE_CACHE_FOLDER = "partitioned/compile-cache"


def makes_compile_cache(config: DeploymentConfig) -> bool:
    """Accelerate with lmi-deploy's handler: the job runs that handler once and stages its compile cache."""
    return bool(ENGINES[config.engine].handler_options) and config.handler == "custom"


def check_supported(config: DeploymentConfig) -> None:
    """The registry's partition rules (LMI901, LMI902), also for a deployment that does not set partitioned yet;
    Accelerate's job makes a compile cache, which needs the handler to compile."""
    if makes_compile_cache(config):
        if render.handler_options(config).get("compile") != "true":
            raise ConfigError(
                "partition for engine=Accelerate stages the handler's compile cache, and compile is off here: "
                "set compile=true (and kv_cache=static), or skip partitioning"
            )
        return
    problems = partition_problems(config.engine, config.lmi_version)
    if problems:
        raise ConfigError("\n".join(tagged(rule_id, message) for rule_id, message in problems))


def partition_files(config: DeploymentConfig) -> dict[str, str]:
    """The files the job's code input holds: our partition.py, or (TensorRT-LLM) the serving.properties it reads."""
    check_supported(config)
    if ENGINES[config.engine].partition_reads_properties:
        entries = [
            (INPUT_DIR if key in ("option.model_id", "option.s3url") else value, key)[::-1]
            for key, value in render.serving_properties(config)
        ]
        return {"serving.properties": "".join(f"{key}={value}\n" for key, value in entries)}
    if makes_compile_cache(config):  # the handler it runs, as the endpoint gets it
        return {"partition.py": partition_script(config), **render.render_files(config)}
    return {"partition.py": partition_script(config)}


def partition_script(config: DeploymentConfig) -> str:
    check_supported(config)
    return render.partition_script(
        config,
        model_id=config.model_id,
        engine=config.engine.value,
        image_tag=config.image_uri.rsplit(":", 1)[-1],
        tensor_parallel_degree=config.resolved.tensor_parallel_degree,
        dtype=config.resolved.dtype,
        input_dir=INPUT_DIR,
        output_dir=OUTPUT_DIR,
        code_dir=CODE_DIR,
        support_files=list(SUPPORT_FILES),
    )


def source_and_target(config: DeploymentConfig) -> tuple[str, str]:
    """(staged weights, partitioned output) S3 prefixes (Accelerate: where its compile cache goes)."""
    bucket, staged = config.staged_weights
    if makes_compile_cache(config):
        return f"s3://{bucket}/{staged}", f"s3://{bucket}/{staged}{COMPILE_CACHE_FOLDER}/"
    return f"s3://{bucket}/{staged}", f"s3://{bucket}/{config.partitioned_prefix}"


INPUT_MANIFEST = "model-files.manifest"  # beside the job's code: the staged files it reads


def input_manifest(source: str, names: list[str]) -> str:
    """SageMaker's ManifestFile for the job's model input: the files under the staged prefix, without the
    ``partitioned/`` outputs of earlier jobs (an S3Prefix input would download every earlier TP degree's checkpoint
    and compile cache too, onto a volume sized for one)."""
    kept = sorted(name for name in names if name and not name.endswith("/") and not name.startswith("partitioned/"))
    if not kept:
        raise ConfigError(f"{source} holds no staged files: stage the model first (lmi-deploy stage)")
    return json.dumps([{"prefix": source}, *kept], indent=0) + "\n"


def job_request(
    config: DeploymentConfig, role_arn: str, code_s3_uri: str, *, now: float | None = None
) -> dict[str, Any]:
    """The CreateProcessingJob request that partitions this deployment's weights."""
    check_supported(config)
    _, target = source_and_target(config)
    tp = config.resolved.tensor_parallel_degree
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    name = f"{config.deployment}-partition-tp{tp}-{stamp}"[:63]
    script = f"{CODE_DIR}/partition.py"
    entrypoint = ENGINES[config.engine].partition_command(tp, script, CODE_DIR, OUTPUT_DIR)
    facts = config.facts
    served_dtype = config.resolved.dtype if config.resolved.dtype in DTYPE_BYTES else "fp32"
    weights_gb = facts.weight_bytes(facts.native_dtype or "fp32") / 1e9 if facts else 100.0
    out_gb = facts.weight_bytes(served_dtype) / 1e9 if facts else 100.0
    volume = min(16384, max(50, math.ceil((weights_gb + out_gb) * 1.2)))
    return {
        "ProcessingJobName": name,
        "RoleArn": role_arn,
        "AppSpecification": {"ImageUri": config.image_uri, "ContainerEntrypoint": entrypoint},
        "ProcessingInputs": [
            {
                "InputName": "model",
                "S3Input": {  # the staged files (input_manifest) under `source`, at their relative paths
                    "S3Uri": code_s3_uri + INPUT_MANIFEST,
                    "LocalPath": INPUT_DIR,
                    "S3DataType": "ManifestFile",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            },
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": code_s3_uri,
                    "LocalPath": CODE_DIR,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "partitioned",
                    "S3Output": {"S3Uri": target, "LocalPath": OUTPUT_DIR, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": config.instance_type, "VolumeSizeInGB": volume}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
        "Tags": [{"Key": "lmi-deploy:deployment", "Value": config.deployment}],
    }


def code_key(config: DeploymentConfig, files: dict[str, str]) -> str:
    """Content-addressed location of the job's code input in the artifacts bucket."""
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    return f"partition-code/{config.deployment}/{digest}/"
