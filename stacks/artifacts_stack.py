"""``<deployment>-artifacts``: state that outlives endpoints (weights/code bucket, image repository)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.artifact_store import ArtifactStore
from stacks.components.image import MirroredImage


class ArtifactsStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.store = ArtifactStore(self, "Store", config=config)
        self.bucket = self.store.bucket
        self.repository = self.store.repository
        self.key = self.store.key
        self.mirror = None
        if config.image == "mirror":
            self.mirror = MirroredImage(self, "Mirror", config=config, repository=self.repository)
        CfnOutput(self, "BucketName", value=self.bucket.bucket_name, description="Weights and code bucket")
        CfnOutput(self, "WeightsPrefix", value=config.staged_weights[1], description="Stage weights here")
        CfnOutput(self, "RepositoryUri", value=self.repository.repository_uri, description="Custom LMI images")
        if config.kms_key_created and self.key is not None:
            CfnOutput(self, "KmsKeyArn", value=self.key.key_arn, description="The deployment's KMS key")
