"""Long-lived storage for a deployment: the weights/code bucket and the ECR repository for custom LMI images."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.execution_role import ExecutionRole
from stacks.components.log_group import log_group_arn
from stacks.components.monitoring import allow_alarms_to_publish
from stacks.components.nag import acknowledge


class ArtifactStore(Construct):
    """Hardened S3 bucket (retained on destroy) plus a scan-on-push, immutable-tag ECR repository, and the
    customer-managed KMS key when the deployment uses one (``key``: created with rotation, or the given one)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self.key: kms.IKey | None = None
        if config.kms_key_created:
            self.key = _create_key(self, config)
        elif config.kms_key_arn:
            self.key = kms.Key.from_key_arn(self, "Key", config.kms_key_arn)
        self.access_logs = _access_log_bucket(self)
        # The name is fixed from deployment, account and region so that serving.properties, rendered at synth
        # time, can point at the weights (a CloudFormation token cannot be written into a file).
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=config.bucket_name,
            # SSE-KMS with the deployment's key when it has one (a bucket key keeps the KMS requests few);
            # the access-log bucket above stays SSE-S3, the only encryption S3 server access logging writes to.
            encryption=s3.BucketEncryption.KMS if self.key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.key,
            bucket_key_enabled=True if self.key else None,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(30),
                    # parts of an interrupted staging run that is never resumed
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.repository = ecr.Repository(
            self,
            "Images",
            repository_name=config.repository_name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description="Drop untagged layers of superseded custom images",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(14),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )


def _access_log_bucket(scope: Construct) -> s3.Bucket:
    """Where S3 writes the artifacts bucket's server access logs, kept a year."""
    bucket = s3.Bucket(
        scope,
        "AccessLogs",
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
        lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
        removal_policy=RemovalPolicy.RETAIN,
    )
    acknowledge(
        bucket,
        "AwsSolutions-S1",
        "This is the server access log bucket; logging it to itself would loop.",
    )
    return bucket


def _create_key(scope: Construct, config: DeploymentConfig) -> kms.Key:
    """A key with yearly rotation that also lets CloudWatch Logs (this endpoint's log group only) and CloudWatch
    alarms (publishing to the encrypted alarm topic) use it; everything else goes through IAM policies."""
    stack = Stack.of(scope)
    key = kms.Key(
        scope,
        "Key",
        description=f"lmi-deploy {config.deployment}: weights bucket, endpoint volume, logs, topics, outputs",
        alias=f"alias/lmi-deploy/{config.deployment}",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.RETAIN,  # what it encrypted outlives the stack (the retained bucket)
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="EndpointLogGroup",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={
                "ArnEquals": {"kms:EncryptionContext:aws:logs:arn": log_group_arn(scope, config.log_group_name)}
            },
        )
    )
    allow_alarms_to_publish(key)
    return key


def grant_key_use(key: kms.IKey, role: ExecutionRole) -> None:
    """What the execution role does with the deployment's key: read SSE-KMS weights and code, encrypt async
    outputs and captured data, publish to encrypted topics. Granted in the role's policy: the key may live in
    another stack (or account), whose key policy this stack cannot change."""
    role.allow("UseDeploymentKey", ["kms:Decrypt", "kms:GenerateDataKey"], [key.key_arn])
