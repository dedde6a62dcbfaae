"""Compose one deployment's stacks on an app: the single place the CDK app is shaped (app.py and tests use it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from lmi_deploy.config import DeploymentConfig
from lmi_deploy.render import RenderedCode
from stacks.artifacts_stack import ArtifactsStack
from stacks.endpoint_stack import EndpointStack


@dataclass(frozen=True)
class DeploymentStacks:
    artifacts: ArtifactsStack
    endpoint: EndpointStack


def add_checks(app: cdk.App) -> None:
    """cdk-nag's AwsSolutions pack, run on every synth: an unacknowledged finding stops it."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


# What a synth writes that `cdk deploy` would act on: removed when the synth fails.
_ASSEMBLY_FILES = ("*.template.json", "*.assets.json", "manifest.json", "tree.json", "cdk.out")


def synthesize(app: cdk.App) -> None:
    """``app.synth()``, leaving no templates behind when it fails: CDK writes the cloud assembly before its
    validation plugins (cdk-nag) run, and a refused assembly must not be deployable from ``cdk.out``."""
    try:
        app.synth()
    except BaseException:
        outdir = Path(app.outdir)
        for pattern in _ASSEMBLY_FILES:
            for path in outdir.glob(pattern):
                path.unlink(missing_ok=True)
        raise


def add_deployment(app: cdk.App, config: DeploymentConfig, code: RenderedCode) -> DeploymentStacks:
    """Add ``<deployment>-artifacts`` and ``<deployment>-endpoint`` to ``app``."""
    artifacts = ArtifactsStack(
        app,
        config.artifacts_stack_name,
        config=config,
        **stack_settings(config),
        description=f"lmi-deploy {config.deployment}: weights/code bucket and image repository (retained)",
    )
    endpoint = EndpointStack(
        app,
        config.endpoint_stack_name,
        config=config,
        bucket=artifacts.bucket,
        key=artifacts.key,
        code=code,
        **stack_settings(config),
        description=f"lmi-deploy {config.deployment}: {_shortened(config.model_id)} on {config.engine.value} "
        f"{config.lmi_version}, {config.instance_type} x{config.instance_count}",
    )
    tag_deployment(config.deployment, artifacts, endpoint)
    return DeploymentStacks(artifacts, endpoint)


def _shortened(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters: a stack description holds at most 1024 bytes, an s3:// model id 1029."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stack_settings(config: DeploymentConfig) -> dict[str, Any]:
    """A deployment stack's account/region and its own synthesizer (one per stack, as CDK requires)."""
    return {
        "env": cdk.Environment(account=config.account, region=config.region),
        "synthesizer": cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=config.bootstrap_version_rule),
    }


def tag_deployment(deployment: str, *stacks: cdk.Stack) -> None:
    for stack in stacks:
        cdk.Tags.of(stack).add("lmi-deploy:deployment", deployment)
