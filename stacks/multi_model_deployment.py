"""Compose a multi-model deployment's stacks on an app (app.py and the tests use it), as ``deployment.py`` does for one
model."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk

from lmi_deploy.multi_model import MultiModelDeployment
from lmi_deploy.multi_render import RenderedMultiModel
from stacks.multi_model_stacks import MultiModelArtifactsStack, MultiModelEndpointStack


@dataclass(frozen=True)
class MultiModelStacks:
    artifacts: MultiModelArtifactsStack
    endpoint: MultiModelEndpointStack


def add_multi_model_deployment(app: cdk.App, multi: MultiModelDeployment, code: RenderedMultiModel) -> MultiModelStacks:
    """Add ``<deployment>-artifacts`` and ``<deployment>-endpoint`` for several models to ``app``."""
    config = multi.endpoint
    env = cdk.Environment(account=config.account, region=config.region)

    def synthesizer() -> cdk.DefaultStackSynthesizer:
        return cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=config.bootstrap_version_rule)

    artifacts = MultiModelArtifactsStack(
        app,
        multi.artifacts_stack_name,
        multi=multi,
        env=env,
        synthesizer=synthesizer(),
        description=f"lmi-deploy {multi.deployment}: weights/code bucket and image repository (retained)",
    )
    kind = "inference components" if multi.mode == "inference_components" else "multi-model endpoint"
    endpoint = MultiModelEndpointStack(
        app,
        multi.endpoint_stack_name,
        multi=multi,
        bucket=artifacts.bucket,
        code=code,
        env=env,
        synthesizer=synthesizer(),
        description=f"lmi-deploy {multi.deployment}: {len(multi.models)} models as {kind} "
        f"({', '.join(m.name for m in multi.models)}), {config.instance_type} x{config.instance_count}",
    )
    for stack in (artifacts, endpoint):
        cdk.Tags.of(stack).add("lmi-deploy:deployment", multi.deployment)
    return MultiModelStacks(artifacts, endpoint)
