"""Command-line plumbing shared by the scripts: the same ``--config FILE`` / ``-c key=value`` inputs as the CDK app."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from lmi_deploy.errors import ConfigError


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="deployment file, e.g. deployments/flan-t5-xxl.yaml")
    parser.add_argument(
        "-c",
        "--context",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="one setting, as with `cdk synth -c KEY=VALUE` (repeatable; wins over the file)",
    )


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; a pair without ``=`` is a ConfigError."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-c {pair!r} must look like KEY=VALUE, e.g. -c tensor_parallel_degree=4")
        result[key.strip()] = value
    return result


def context_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The CDK-context-like mapping these arguments stand for."""
    context: dict[str, Any] = {"config": args.config} if args.config else {}
    context.update(parse_pairs(args.context))
    return context


def cdk_context_arguments(context: Mapping[str, Any]) -> list[str]:
    """The same mapping as ``cdk`` command-line arguments."""
    return [arg for key, value in context.items() for arg in ("-c", f"{key}={value}")]


def environment_defaults(environ: Mapping[str, str]) -> dict[str, str | None]:
    """Account and region from the environment (the CDK CLI's, else the AWS SDK's region variables)."""
    return {
        "account": environ.get("CDK_DEFAULT_ACCOUNT"),
        "region": environ.get("CDK_DEFAULT_REGION") or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"),
    }


def stack_outputs(cloudformation: Any, stack_name: str, instead: str) -> dict[str, str]:
    """A deployed stack's outputs; a missing stack or unreadable account is a ConfigError saying what to do.

    ``instead`` names the argument that makes the lookup unnecessary (e.g. ``pass --bucket``).
    """
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as error:
        if "does not exist" in str(error):
            raise ConfigError(
                f"stack {stack_name} does not exist: deploy it first (npx cdk deploy {stack_name}) or {instead}"
            ) from None
        if type(error).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            raise ConfigError(
                "no AWS credentials found: configure a profile (aws configure / AWS_PROFILE) or an instance role, "
                f"or {instead}"
            ) from None
        raise ConfigError(f"cannot read stack {stack_name} ({type(error).__name__}: {error}); or {instead}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
