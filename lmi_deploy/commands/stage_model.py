#!/usr/bin/env python3
"""Stage a model's weights in the artifacts bucket: resumable, verified, with a manifest.

    python scripts/stage_model.py [--config FILE] [-c key=value ...]          # the deployment's model and bucket
    python scripts/stage_model.py --model <hub id or local dir> [--revision REV] [--bucket NAME] [--prefix P]
        [--endpoint-url URL] [--convert] [--token-secret NAME] [--concurrency N] [--dry-run]

Bucket and prefix default to the ``<deployment>-artifacts`` stack's outputs (``BucketName``, ``WeightsPrefix``).
A re-run uploads nothing that is already there and intact; an interrupted run resumes; a corrupted or missing object
is found and sent again; objects of an earlier staging that this one does not hold are deleted (and printed);
``manifest.json`` (size and CRC64NVME of every file) is deleted first and written last. Every object carries the
CRC64NVME S3 checked and stored for it (full object, under SSE-KMS too): that is what "intact" means.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmi_deploy import adapter_staging, model_folder, s3_prefix, staging
from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults, stack_outputs
from lmi_deploy.config import DeploymentConfig
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from lmi_deploy.multi_render import render_multi, stage_mme_archives


def main(
    argv: Sequence[str] | None = None,
    *,
    s3: Any = None,
    cloudformation: Any = None,
    secrets: Any = None,
) -> int:
    """Stage and print what was sent, skipped and repaired; exit 2 with one line on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--model", help="Hub model id or local folder (default: the deployment's model_id)")
    parser.add_argument("--revision", help="Hub revision: commit or branch (default: the deployment's)")
    parser.add_argument("--bucket", help="default: the artifacts stack's BucketName output")
    parser.add_argument("--prefix", help="default: the artifacts stack's WeightsPrefix output")
    parser.add_argument("--endpoint-url", help="S3/CloudFormation endpoint (a local emulator)")
    parser.add_argument("--region", help="AWS region (default: the deployment's)")
    parser.add_argument("--convert", action="store_true", help="convert pytorch_model*.bin shards to safetensors")
    parser.add_argument(
        "--token-secret",
        help="Secrets Manager secret holding the Hub token (default: the deployment's hf_token_secret, else HF_TOKEN)",
    )
    parser.add_argument("--concurrency", type=positive_int, default=10, help="parallel part uploads (default 10)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="hash and compare with the bucket; print what would be uploaded and removed; change nothing",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--model-name", help="multi-model deployment: stage only this model (default: every model)")
    args = parser.parse_args(argv)
    try:
        return _stage(args, s3, cloudformation, secrets)
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2


def _stage(args: argparse.Namespace, s3: Any, cloudformation: Any, secrets: Any) -> int:
    config: DeploymentConfig | MultiModelDeployment | None = None
    if not (args.model and args.bucket and args.prefix is not None and args.region) or args.config:
        config = load_deployment(context_from_args(args), environment_defaults=environment_defaults(os.environ))
    region = args.region or (config.region if config else None)
    session = aws_session(region)
    s3 = s3 or session.client("s3", endpoint_url=args.endpoint_url)
    if isinstance(config, MultiModelDeployment):
        cloudformation = cloudformation or session.client("cloudformation", endpoint_url=args.endpoint_url)
        return _stage_several(args, config, session, s3, cloudformation, secrets)
    if args.model_name:
        raise ConfigError("--model-name picks a model of a multi-model deployment; this deployment has one model")
    model = args.model or (config.model_id if config else "")
    revision = args.revision or (config.model_revision if config else "main")
    bucket, prefix = args.bucket, args.prefix
    if bucket is None and config is not None:
        cloudformation = cloudformation or session.client("cloudformation", endpoint_url=args.endpoint_url)
        outputs = stack_outputs(cloudformation, config.artifacts_stack_name, "pass --bucket")
        bucket = outputs["BucketName"]
        prefix = prefix if prefix is not None else outputs["WeightsPrefix"]
    if prefix is None:
        name = model if not Path(model).is_dir() else Path(model).resolve().name
        prefix = f"models/{name}/{revision}/"
    secret = args.token_secret or (config.hf_token_secret if config else None)
    _stage_weights(args, session, s3, secrets, secret, model, revision, bucket, prefix)
    if config is not None and config.adapters and not args.model:
        token = _token(session, secrets, secret)
        for adapter in config.adapters:
            with adapter_staging.local_folder(adapter, s3, token) as folder:
                staged = adapter_staging.stage_folder(s3, adapter, folder, bucket, prefix, **_options(args))
            _report_adapter(staged)
        removed = [] if args.dry_run else adapter_staging.remove_unnamed(s3, bucket, prefix, list(config.adapters))
        if removed:
            print(f"  removed adapters the deployment no longer names: {', '.join(removed)}")
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"concurrency": args.concurrency, "show_progress": not args.no_progress, "dry_run": args.dry_run}


def _token(session: Any, secrets: Any, secret: str | None) -> str | None:
    return staging.token_from(
        dict(os.environ), secrets or (session.client("secretsmanager") if secret else None), secret
    )


def _report_adapter(staged: adapter_staging.StagedAdapter) -> None:
    result = staged.result
    state = "dry run: nothing changed at" if result.dry_run else "staged at"
    print(
        f"adapter {staged.name}: {state} {staged.location} (uploaded {len(result.uploaded)}, already intact "
        f"{len(result.skipped)}, repaired {len(result.repaired)})"
    )


def _stage_weights(
    args: argparse.Namespace,
    session: Any,
    s3: Any,
    secrets: Any,
    secret: str | None,
    model: str,
    revision: str,
    bucket: str,
    prefix: str,
) -> None:
    local = Path(model).expanduser()
    if local.is_dir():
        folder, source, within = local, str(local.resolve()), model_folder.hub_cache_root(local)
    else:
        if model.startswith("s3://"):
            raise staging.StagingError(f"{model} is already in S3: nothing to stage")
        if local.exists() or looks_like_path(model):
            what = "is not a folder" if local.exists() else "does not exist"
            raise staging.StagingError(
                f"--model {model} {what}: pass a model folder (config.json, tokenizer, weights) or a Hub id (org/name)"
            )
        token = _token(session, secrets, secret)
        print(f"downloading {model}@{revision} from the Hugging Face Hub ...", file=sys.stderr)
        folder, source = staging.download_from_hub(model, revision, token), f"hub:{model}@{revision}"
        within = model_folder.hub_cache_root(folder)

    with tempfile.TemporaryDirectory(prefix="lmi-convert-") as scratch:
        files = staging.select_files(folder, within)
        if args.convert and any(f.endswith(".bin") for f in files):
            print("converting .bin shards to safetensors ...", file=sys.stderr)
            files = staging.convert_bin_to_safetensors(folder, Path(scratch), within)
            folder = within = Path(scratch)
        result = staging.stage(
            s3,
            folder,
            bucket,
            prefix,
            files=files,
            concurrency=args.concurrency,
            show_progress=not args.no_progress,
            description={"model": model, "revision": revision, "source": source, "created_by": "lmi-deploy"},
            dry_run=args.dry_run,
        )
    report(result, len(files), bucket, prefix)


def report(result: staging.StageResult, count: int, bucket: str, prefix: str) -> None:
    """What staging sent, skipped, repaired and removed (or, with --dry-run, would)."""
    would = "would be " if result.dry_run else ""
    where = f"s3://{bucket}/{prefix}"
    if result.dry_run:
        print(f"dry run: nothing changed at {where} ({count} files, {result.total_bytes / 1024**2:.1f} MiB)")
    else:
        print(f"staged {count} files ({result.total_bytes / 1024**2:.1f} MiB) at {where}")
    print(
        f"  {would}uploaded {len(result.uploaded)}, already intact {len(result.skipped)}, "
        f"{would}repaired {len(result.repaired)}"
    )
    if result.removed:
        print(f"  {would}removed {len(result.removed)} objects not in this model: {s3_prefix.summary(result.removed)}")
    if any(name.startswith(s3_prefix.PARTITIONED) for name in result.removed):
        print("  the partitioned checkpoint was built from other weights: run scripts/partition_model.py again")
    for kept in result.kept:
        why = "built from these same weights" if kept == s3_prefix.PARTITIONED else "another staging (own manifest)"
        print(f"  kept {where}{kept} ({why})")
    if not result.dry_run:
        print(f"  manifest s3://{bucket}/{result.manifest_key}")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1; give 1 or more (default 10)")
    return value


def looks_like_path(model: str) -> bool:
    """A --model that can only be a local path (a Hub id is ``name`` or ``org/name``)."""
    return model.startswith(("/", ".", "~")) or model.endswith("/") or model.count("/") > 1 or "\\" in model


def aws_session(region: str | None) -> Any:
    """A boto3 session; an AWS_PROFILE that names no profile is one line saying what to do."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.session.Session(region_name=region)
    except ProfileNotFound as error:
        raise ConfigError(
            f"AWS profile {error.kwargs.get('profile')!r} (AWS_PROFILE) is not in ~/.aws/config or "
            "~/.aws/credentials: create it (aws configure --profile NAME), or unset AWS_PROFILE"
        ) from None


def _stage_several(
    args: argparse.Namespace,
    multi: MultiModelDeployment,
    session: Any,
    s3: Any,
    cloudformation: Any,
    secrets: Any,
) -> int:
    """Every model's weights (or the one ``--model-name`` names), and a multi-model endpoint's code archives."""
    if args.model or args.prefix is not None:
        raise ConfigError(
            "--model/--prefix stage one folder; with a multi-model deployment each model's weights go to its own "
            "prefix: pick one with --model-name NAME, or stage them all"
        )
    bucket = args.bucket or stack_outputs(cloudformation, multi.artifacts_stack_name, "pass --bucket")["BucketName"]
    multi = for_bucket(multi, bucket)
    models = [multi.model(args.model_name)] if args.model_name else list(multi.models)
    for model in models:
        config = model.config
        if config.model_id.startswith("s3://"):
            print(f"{model.name}: weights already in S3 at {config.model_id}: nothing to stage")
            continue
        print(f"{model.name}: {config.model_id}", file=sys.stderr)
        secret = args.token_secret or config.hf_token_secret
        _stage_weights(
            args, session, s3, secrets, secret, config.model_id, config.model_revision, bucket, config.staged_weights[1]
        )
        token = _token(session, secrets, secret) if config.adapters else None
        for adapter in config.adapters:  # each an adapter inference component's archive
            with adapter_staging.local_folder(adapter, s3, token) as folder:
                _report_adapter(adapter_staging.stage_archive(s3, adapter, folder, bucket, **_options(args)))
    if multi.mode == "mme":
        with tempfile.TemporaryDirectory(prefix="lmi-mme-") as scratch:
            rendered = render_multi(multi, scratch)
            for archive in stage_mme_archives(s3, multi, rendered, bucket):
                state = "uploaded" if archive.uploaded else "already there"
                print(f"{archive.name}: code archive s3://{bucket}/{archive.key} ({state})")
    return 0


def for_bucket(multi: MultiModelDeployment, bucket: str) -> MultiModelDeployment:
    """The deployment as synthesized for the account in its bucket's name (``<deployment>-<account>-<region>``).

    The rendered serving.properties name the weights bucket, so the archives staged for an MME must be rendered for
    the account the stacks are in, which these scripts otherwise only know from -c account=... .
    """
    if bucket == multi.bucket_name:
        return multi
    account = bucket.removeprefix(f"{multi.deployment}-").split("-", 1)[0]
    if not (account.isdigit() and len(account) == 12 and bucket == f"{multi.deployment}-{account}-{multi.region}"):
        expected = f"{multi.deployment}-<account>-{multi.region}"
        raise ConfigError(f"bucket {bucket} is not {multi.deployment}'s artifacts bucket ({expected})")
    return multi.with_account(account)


if __name__ == "__main__":
    sys.exit(main())
