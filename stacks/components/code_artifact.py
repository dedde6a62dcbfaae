"""The rendered code tarball of a model as a CDK file asset, and the read grant on exactly its object."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.components.execution_role import ExecutionRole


class CodeArtifact(s3_assets.Asset):
    """The deterministic tarball (``serving.properties``, ``model.py``): an unchanged render keeps its hash, so a
    re-deploy replaces nothing. SageMaker downloads it as the execution role (``ModelDataUrl``)."""

    def __init__(self, scope: Construct, construct_id: str, *, tarball: Path) -> None:
        super().__init__(scope, construct_id, path=str(tarball))

    def bind(self, role: ExecutionRole, *, sid: str = "ReadCodeArtifact") -> None:
        """s3:GetObject on this one object (not the asset's grant_read, which reads and lists the whole bucket)."""
        role.allow(sid, ["s3:GetObject"], [self.bucket.arn_for_objects(self.s3_object_key)])
