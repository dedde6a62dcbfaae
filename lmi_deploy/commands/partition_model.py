#!/usr/bin/env python3
"""Partition a deployment's staged weights ahead of time, as a SageMaker Processing job on the same LMI image.

    python scripts/partition_model.py [--config FILE] [-c key=value ...] --role-arn ARN [--wait] [--dry-run]

Renders the partition step (FasterTransformer ``save_checkpoint``, DeepSpeed ``save_mp_checkpoint_path``, or
TensorRT-LLM's own ``trt_llm_partition.py`` on the rendered ``serving.properties``), uploads it to the artifacts
bucket, and starts a Processing job that reads ``<weights prefix>`` and writes ``<weights prefix>/partitioned/tp<N>/``.
Deploy with ``-c partitioned=true`` afterwards. The role must read the staged prefix, write the partitioned one, pull
the LMI image and write logs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from lmi_deploy import partition, s3_prefix
from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from lmi_deploy.staging import explain


def main(argv: Sequence[str] | None = None, *, s3: Any = None, sagemaker: Any = None) -> int:
    """Start (and optionally wait for) the partition job; exit 2 with one line on a problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--role-arn", help="execution role for the Processing job (required unless --dry-run)")
    parser.add_argument("--endpoint-url", help="S3/SageMaker endpoint (a local emulator)")
    parser.add_argument("--wait", action="store_true", help="wait until the job ends")
    parser.add_argument("--dry-run", action="store_true", help="print the job request and the script; start nothing")
    parser.add_argument("--model-name", help="the model to partition, of a deployment file with several models")
    args = parser.parse_args(argv)
    try:
        config = _model_config(args)
        files = partition.partition_files(config)
        bucket, _ = config.staged_weights
        code_prefix = partition.code_key(config, files)
        request = partition.job_request(config, args.role_arn or "<role-arn>", f"s3://{bucket}/{code_prefix}")
        if args.dry_run:
            print(json.dumps(request, indent=2))
            for name, text in files.items():
                print(f"--- {name}\n{text}")
            print(
                f"--- {partition.INPUT_MANIFEST}\n"
                "(written at start: the files under the staged prefix, partitioned/ left out)"
            )
            return 0
        if not args.role_arn:
            raise ConfigError("--role-arn is required to start the job (or use --dry-run)")
        import boto3

        session = boto3.session.Session(region_name=config.region)
        s3 = s3 or session.client("s3", endpoint_url=args.endpoint_url)
        sagemaker = sagemaker or session.client("sagemaker", endpoint_url=args.endpoint_url)
        _start(config, files, code_prefix, request, s3, sagemaker)
        _, target = partition.source_and_target(config)
        print(
            f"started {request['ProcessingJobName']}: {config.engine.value} TP{config.resolved.tensor_parallel_degree}"
            f" -> {target}"
        )
        if args.wait:
            status = _wait(sagemaker, request["ProcessingJobName"])
            print(f"{request['ProcessingJobName']}: {status}")
            if status != "Completed":
                return 1
        if partition.makes_compile_cache(config):
            print("when it completes, the handler loads the compile cache at startup (deploy as usual)")
        else:
            print("when it completes, deploy with -c partitioned=true (same settings otherwise)")
        return 0
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2


def _start(
    config: Any, files: dict[str, str], code_prefix: str, request: dict[str, Any], s3: Any, sagemaker: Any
) -> None:
    """Upload the job's code and the manifest of the staged files it reads under ``code_prefix`` (the prefix the
    request names), then start it (one line on a fault)."""
    bucket, _ = config.staged_weights
    source, _ = partition.source_and_target(config)
    try:
        staged = s3_prefix.list_names(s3, bucket, source.removeprefix(f"s3://{bucket}/"))
        files = {**files, partition.INPUT_MANIFEST: partition.input_manifest(source, staged)}
        for name, text in files.items():
            s3.put_object(Bucket=bucket, Key=code_prefix + name, Body=text.encode())
        sagemaker.create_processing_job(**request)
    except ConfigError:
        raise
    except Exception as error:
        raise explain(error, bucket, code_prefix) from None


def _model_config(args: argparse.Namespace) -> Any:
    """The config of the model to partition: the deployment's, or the one --model-name picks of several."""
    context = {**context_from_args(args), "partitioned": "false"}
    loaded = load_deployment(context, environment_defaults=environment_defaults(os.environ))
    if isinstance(loaded, MultiModelDeployment):
        if not args.model_name:
            names = ", ".join(m.name for m in loaded.models)
            raise ConfigError(f"{loaded.deployment} has several models: pick one with --model-name ({names})")
        return loaded.model(args.model_name).config
    if args.model_name:
        raise ConfigError("--model-name picks a model of a multi-model deployment; this deployment has one model")
    return loaded


def _wait(sagemaker: Any, name: str, poll_s: float = 30.0) -> str:
    while True:
        job = sagemaker.describe_processing_job(ProcessingJobName=name)
        status = str(job["ProcessingJobStatus"])
        if status in ("Completed", "Failed", "Stopped"):
            if status == "Failed":
                print(f"  failure: {job.get('FailureReason', 'see the job logs')}", file=sys.stderr)
            return status
        time.sleep(poll_s)


if __name__ == "__main__":
    sys.exit(main())
