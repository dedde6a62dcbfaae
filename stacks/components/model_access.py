"""What the execution role needs for one model, the same for a single-model endpoint and for each model of several:
its code object, its weights prefix, its image. Each resource grants for itself; this only names the statements."""

from __future__ import annotations

from lmi_deploy.config import DeploymentConfig
from stacks.components.bucket_prefix import grant_read_weights
from stacks.components.code_artifact import CodeArtifact
from stacks.components.execution_role import ExecutionRole
from stacks.components.image import ImageSource
from stacks.components.multi_model_endpoint import construct_id


def grant_model(
    role: ExecutionRole,
    config: DeploymentConfig,
    *,
    code: CodeArtifact | None,
    image: ImageSource,
    name: str = "",
) -> None:
    """Grant ``role`` one model's code (when it ships a tarball), weights and image. The first (or only) model's
    statements carry plain ids; another model's carry its ``name`` (``llama-3`` -> ``ReadWeightsLlama3``).
    A prefix or image the role already has is not granted twice."""
    suffix = construct_id(name)
    if code is not None:
        code.bind(role, sid=f"ReadCode{suffix}" if suffix else "ReadCodeArtifact")
    grant_read_weights(role, config, suffix=suffix, whose=name)
    image.bind(role, suffix=suffix)
