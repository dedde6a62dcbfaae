"""An S3 prefix the endpoint reads or writes as its execution role (weights, MME archives, async requests and
responses, captured data), named by bucket and prefix, both known at synth time: each grant names exactly it."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack

from lmi_deploy.config import DeploymentConfig
from stacks.components.execution_role import ExecutionRole
from stacks.components.nag import NAG_PARTITION


@dataclass(frozen=True)
class BucketPrefix:
    bucket: str
    prefix: str

    def _objects(self, role: ExecutionRole, partition: str | None = None) -> str:
        return f"arn:{partition or Stack.of(role).partition}:s3:::{self.bucket}/{self.prefix}*"

    def grant_read(self, role: ExecutionRole, sid: str, why: str) -> bool:
        """s3:GetObject on the objects under the prefix (whose names vary: ``why`` says how)."""
        return self._grant(role, sid, "s3:GetObject", why)

    def grant_write(self, role: ExecutionRole, sid: str, why: str) -> bool:
        """s3:PutObject on the objects under the prefix (whose names vary: ``why`` says how)."""
        return self._grant(role, sid, "s3:PutObject", why)

    def grant_list(self, role: ExecutionRole, sid: str) -> bool:
        """s3:ListBucket on the bucket, for keys under the prefix only."""
        return role.allow(
            sid,
            ["s3:ListBucket"],
            [f"arn:{Stack.of(role).partition}:s3:::{self.bucket}"],
            conditions={"StringLike": {"s3:prefix": [f"{self.prefix}*"]}},
        )

    def _grant(self, role: ExecutionRole, sid: str, action: str, why: str) -> bool:
        added = role.allow(sid, [action], [self._objects(role)])
        if added:
            role.acknowledge_wildcard(self._objects(role, NAG_PARTITION), why)
        return added


def grant_read_weights(role: ExecutionRole, config: DeploymentConfig, *, suffix: str = "", whose: str = "") -> None:
    """Read-only access to what the endpoint loads (the staged weights, or their partitioned copy), and listing of
    exactly that prefix. ``suffix`` tells the statements of one model of several apart; ``whose`` names it."""
    weights = BucketPrefix(*config.weights_bucket_and_prefix)
    owner = f"the weights prefix of model {whose}" if whose else "this deployment's weights prefix"
    if weights.grant_read(
        role,
        f"ReadWeights{suffix}",
        f"Read-only access to exactly {owner}; the file names under it vary.",
    ):
        weights.grant_list(role, f"ListWeights{suffix}")
