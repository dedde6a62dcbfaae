"""Compose a multi-model deployment's stacks on an app (app.py and the tests use it), as ``deployment.py`` does for one
model."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk

from lmi_deploy.multi_model import MultiModelDeployment
from lmi_deploy.multi_render import RenderedMultiModel
from stacks.deployment import stack_settings, tag_deployment
from stacks.multi_model_stacks import MultiModelArtifactsStack, MultiModelEndpointStack


@dataclass(frozen=True)
class MultiModelStacks:
    artifacts: MultiModelArtifactsStack
    endpoint: MultiModelEndpointStack


def add_multi_model_deployment(app: cdk.App, multi: MultiModelDeployment, code: RenderedMultiModel) -> MultiModelStacks:
    """Add ``<deployment>-artifacts`` and ``<deployment>-endpoint`` for several models to ``app``."""
    config = multi.endpoint
    artifacts = MultiModelArtifactsStack(
        app,
        multi.artifacts_stack_name,
        multi=multi,
        **stack_settings(config),
        description=f"lmi-deploy {multi.deployment}: weights/code bucket and image repository (retained)",
    )
    kind = "inference components" if multi.mode == "inference_components" else "multi-model endpoint"
    endpoint = MultiModelEndpointStack(
        app,
        multi.endpoint_stack_name,
        multi=multi,
        bucket=artifacts.bucket,
        code=code,
        **stack_settings(config),
        description=f"lmi-deploy {multi.deployment}: {len(multi.models)} models as {kind} "
        f"({', '.join(m.name for m in multi.models)}), {config.instance_type} x{config.instance_count}",
    )
    tag_deployment(multi.deployment, artifacts, endpoint)
    return MultiModelStacks(artifacts, endpoint)
