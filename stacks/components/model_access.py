"""What the execution role needs for one model, the same for a single-model endpoint and for each model of several:
its code object, its weights prefix, its image. Each resource grants for itself; this only names the statements."""

from __future__ import annotations

from lmi_deploy.config import DeploymentConfig
from stacks.components.bucket_prefix import grant_read_weights
from stacks.components.code_artifact import CodeArtifact
from stacks.components.execution_role import ExecutionRole
from stacks.components.image import ImageSource


def grant_model(
    role: ExecutionRole,
    config: DeploymentConfig,
    *,
    code: CodeArtifact | None,
    image: ImageSource,
    name: str = "",
    suffix: str = "",
) -> None:
    """Grant ``role`` one model's code (when it ships a tarball), weights and image. The first (or only) model's
    statements carry plain ids; another model's carry ``suffix``, and ``name`` names it in the acknowledgement.
    A prefix or image the role already has is not granted twice."""
    if code is not None:
        code.bind(role, sid=f"ReadCode{suffix}" if suffix else "ReadCodeArtifact")
    grant_read_weights(role, config, suffix=suffix, whose=name)
    image.bind(role, suffix=suffix)
