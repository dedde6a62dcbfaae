"""Compose one deployment's stacks on an app: the single place the CDK app is shaped (app.py and tests use it)."""

from __future__ import annotations

from dataclasses import dataclass

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


def add_deployment(app: cdk.App, config: DeploymentConfig, code: RenderedCode) -> DeploymentStacks:
    """Add ``<deployment>-artifacts`` and ``<deployment>-endpoint`` to ``app``."""
    env = cdk.Environment(account=config.account, region=config.region)

    def synthesizer() -> cdk.DefaultStackSynthesizer:
        return cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=config.bootstrap_version_rule)

    artifacts = ArtifactsStack(
        app,
        config.artifacts_stack_name,
        config=config,
        env=env,
        synthesizer=synthesizer(),
        description=f"lmi-deploy {config.deployment}: weights/code bucket and image repository (retained)",
    )
    endpoint = EndpointStack(
        app,
        config.endpoint_stack_name,
        config=config,
        bucket=artifacts.bucket,
        key=artifacts.key,
        code=code,
        env=env,
        synthesizer=synthesizer(),
        description=f"lmi-deploy {config.deployment}: {config.model_id} on {config.engine.value} "
        f"{config.lmi_version}, {config.instance_type} x{config.instance_count}",
    )
    for stack in (artifacts, endpoint):
        cdk.Tags.of(stack).add("lmi-deploy:deployment", config.deployment)
    return DeploymentStacks(artifacts, endpoint)
