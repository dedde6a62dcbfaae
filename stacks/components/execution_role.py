"""The SageMaker execution role, with least privilege: its code object, its weights prefix, its image, its logs."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.nag import acknowledge


class ExecutionRole(Construct):
    """Role SageMaker assumes to pull the image, read the code tarball and weights, and write logs/metrics; and, only
    where the deployment enables them, use its KMS key, read its Hub token secret, attach to its subnets, read async
    requests, write async responses and captured data to their prefixes, and notify its async topics.

    Never AmazonSageMakerFullAccess: every statement names the one resource it needs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        code_bucket: s3.IBucket | None,
        code_object_key: str | None,
        log_group_name: str,
        image_repository_arn: str,
        subnet_ids: list[str] | None = None,
        security_group_ids: list[str] | None = None,
        key: kms.IKey | None = None,
        hub_token_secret: str | None = None,
        notification_topic_arns: list[str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
        self.policy = iam.Policy(self, "Policy", roles=[self.role])
        weights_bucket_name, weights_prefix = config.weights_bucket_and_prefix
        # ARNs from names known at synth time (the bucket's name is fixed; see ArtifactStore), so that each
        # acknowledged wildcard below names exactly the resource it allows.
        weights_objects = f"arn:{stack.partition}:s3:::{weights_bucket_name}/{weights_prefix}*"
        log_group_arn = stack.format_arn(
            service="logs", resource="log-group", resource_name=log_group_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        if code_bucket is not None and code_object_key is not None:
            self.policy.add_statements(
                iam.PolicyStatement(
                    sid="ReadCodeArtifact",
                    actions=["s3:GetObject"],
                    resources=[code_bucket.arn_for_objects(code_object_key)],
                )
            )
        self.policy.add_statements(
            iam.PolicyStatement(
                sid="ReadWeights",
                actions=["s3:GetObject"],
                resources=[weights_objects],
            ),
            iam.PolicyStatement(
                sid="ListWeights",
                actions=["s3:ListBucket"],
                resources=[f"arn:{stack.partition}:s3:::{weights_bucket_name}"],
                conditions={"StringLike": {"s3:prefix": [f"{weights_prefix}*"]}},
            ),
            iam.PolicyStatement(
                sid="PullImage",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[image_repository_arn],
            ),
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="WriteLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[log_group_arn, f"{log_group_arn}:log-stream:*"],
            ),
            iam.PolicyStatement(
                sid="PublishEndpointMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints*"}},
            ),
        )
        if key is not None:
            # SSE-KMS weights and code, encrypted outputs and data capture, publishing to encrypted topics.
            self.policy.add_statements(
                iam.PolicyStatement(
                    sid="UseDeploymentKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]
                )
            )
        if hub_token_secret:
            # A name stands for its ARN plus the six characters Secrets Manager appends (IAM's documented pattern).
            secret_arn = (
                hub_token_secret
                if hub_token_secret.startswith("arn:")
                else stack.format_arn(
                    service="secretsmanager",
                    resource="secret",
                    resource_name=f"{hub_token_secret}-??????",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            )
            self.policy.add_statements(
                iam.PolicyStatement(
                    sid="ReadHubTokenSecret", actions=["secretsmanager:GetSecretValue"], resources=[secret_arn]
                )
            )
        # Where SageMaker reads or writes for the endpoint as this role: (sid, action, (bucket, prefix), why).
        prefixes: list[tuple[str, str, tuple[str, str], str]] = []
        if config.asynchronous:
            prefixes += [
                (
                    "ReadAsyncRequests",
                    "s3:GetObject",
                    config.async_locations["input"],
                    "SageMaker reads each async request from this prefix as the execution role; request names vary.",
                ),
                (
                    "WriteAsyncResponses",
                    "s3:PutObject",
                    config.async_locations["output"],
                    "SageMaker writes each async response (and, under failures/, each error) to this prefix; the "
                    "object names are generated per request.",
                ),
            ]
        if config.data_capture:
            prefixes.append(
                (
                    "WriteDataCapture",
                    "s3:PutObject",
                    config.data_capture_location,
                    "SageMaker writes captured requests and responses to this prefix, in files named by endpoint, "
                    "variant and time.",
                )
            )
        for sid, action, (bucket, prefix), why in prefixes:
            self.policy.add_statements(
                iam.PolicyStatement(
                    sid=sid, actions=[action], resources=[f"arn:{stack.partition}:s3:::{bucket}/{prefix}*"]
                )
            )
            acknowledge(self.policy, f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{bucket}/{prefix}*]", why)
        if notification_topic_arns:
            self.policy.add_statements(
                iam.PolicyStatement(
                    sid="NotifyAsyncResults", actions=["sns:Publish"], resources=list(notification_topic_arns)
                )
            )
        unscoped = [
            "ecr:GetAuthorizationToken has no resource-level permissions, and cloudwatch:PutMetricData is limited by "
            "a namespace condition instead; both require Resource '*'."
        ]
        partition = "<AWS::Partition>"  # how cdk-nag prints the partition pseudo-parameter in finding ids
        if subnet_ids:
            # What SageMaker needs to attach the instances to the subnets (its VPC documentation's list), each as
            # narrow as EC2 allows: interfaces only in these subnets, with these groups.
            subnets = [stack.format_arn(service="ec2", resource="subnet", resource_name=i) for i in subnet_ids]
            groups = [
                stack.format_arn(service="ec2", resource="security-group", resource_name=i)
                for i in security_group_ids or []
            ]
            interfaces = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
            self.policy.add_statements(
                iam.PolicyStatement(
                    sid="DescribeNetwork",
                    actions=[
                        "ec2:DescribeVpcs",
                        "ec2:DescribeDhcpOptions",
                        "ec2:DescribeSubnets",
                        "ec2:DescribeSecurityGroups",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DeleteNetworkInterfacePermission",
                    ],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="UseSubnetsAndGroups",
                    actions=["ec2:CreateNetworkInterface"],
                    resources=[*subnets, *groups],
                ),
                iam.PolicyStatement(
                    sid="ManageInterfacesInSubnets",
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:CreateNetworkInterfacePermission",
                        "ec2:DeleteNetworkInterface",
                    ],
                    resources=[interfaces],
                    conditions={"ArnEquals": {"ec2:Subnet": subnets}},
                ),
            )
            unscoped.append(
                "The ec2:Describe* calls SageMaker makes to place the instances in the VPC and "
                "ec2:DeleteNetworkInterfacePermission have no resource-level permissions."
            )
            acknowledge(
                self.policy,
                f"AwsSolutions-IAM5[Resource::arn:{partition}:ec2:{stack.region}:{stack.account}:network-interface/*]",
                "SageMaker creates and deletes the instances' network interfaces, whose ids are not known before; "
                "the statement is limited to interfaces in this deployment's subnets (ec2:Subnet condition).",
            )
        acknowledge(self.policy, "AwsSolutions-IAM5[Resource::*]", " ".join(unscoped))
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::arn:{partition}:s3:::{weights_bucket_name}/{weights_prefix}*]",
            "Read-only access to exactly this deployment's weights prefix; the file names under it vary.",
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::arn:{partition}:logs:{stack.region}:{stack.account}:log-group:"
            f"{log_group_name}:log-stream:*]",
            "SageMaker writes one log stream per instance and container into this endpoint's own log group.",
        )
