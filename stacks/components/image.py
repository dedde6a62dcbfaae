"""The container image of the endpoint when it is not the AWS-published LMI image: built from it, or mirrored."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.nag import acknowledge


class CustomImage(Construct):
    """``image=custom``: ``dockerfile_dir`` built FROM the LMI image (the ``BASE_IMAGE`` build argument) as a CDK
    image asset, which ``cdk deploy`` builds and pushes to the bootstrap's asset repository (synth builds nothing)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        assert config.dockerfile_dir is not None
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Asset",
            directory=config.dockerfile_dir,
            build_args={"BASE_IMAGE": config.image_uri},
            platform=ecr_assets.Platform.LINUX_AMD64,  # SageMaker's GPU instances
        )
        self.image_uri = self.asset.image_uri
        self.repository_arn = self.asset.repository.repository_arn


class MirroredImage(Construct):
    """``image=mirror``: the LMI image copied, same tag, into the deployment's own ECR repository by
    cdk-ecr-deployment's custom resource (a Lambda function that ships inside the package; no Docker needed).

    Its role may pull only the LMI image's repository and push only to the deployment's; the construct's own
    broader grants are dropped (the role is handed over without policy updates).
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, repository: ecr.IRepository
    ) -> None:
        super().__init__(scope, construct_id)
        from cdk_ecr_deployment import DockerImageName, ECRDeployment  # only this option needs the package

        stack = Stack.of(self)
        source = stack.format_arn(
            service="ecr", account=config.image_account, resource="repository", resource_name=config.image_repository
        )
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/lambda/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.role = iam.Role(
            self,
            "CopyRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"lmi-deploy {config.deployment}: copy the LMI image into {config.repository_name}",
        )
        self.policy = iam.Policy(
            self,
            "CopyPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
                iam.PolicyStatement(
                    sid="PullLmiImage",
                    actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                    resources=[source],
                ),
                iam.PolicyStatement(
                    sid="PushToDeploymentRepository",
                    actions=[
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:DescribeImages",
                        "ecr:InitiateLayerUpload",
                        "ecr:UploadLayerPart",
                        "ecr:CompleteLayerUpload",
                        "ecr:PutImage",
                    ],
                    resources=[repository.repository_arn],
                ),
                iam.PolicyStatement(
                    sid="FunctionLogs",
                    actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_groups, f"{log_groups}:log-stream:*"],
                ),
            ],
        )
        self.deployment = ECRDeployment(
            self,
            "Copy",
            src=DockerImageName(config.image_uri),
            dest=DockerImageName(f"{repository.repository_uri}:{config.image_tag}"),
            role=self.role.without_policy_updates(),
            memory_limit=3008,  # more memory, more network: LMI images are over 10 GB
        )
        self.deployment.node.add_dependency(self.policy)
        # The construct's function also names the role in DependsOn, which its Role GetAtt already implies.
        for child in stack.node.find_all():
            if isinstance(child, lambda_.CfnFunction) and child.node.path.startswith(
                f"{stack.node.path}/Custom::CDKECRDeployment"
            ):
                child.add_metadata(
                    "cfn-lint",
                    {"config": {"ignore_checks": ["W3005"]}},
                )
        partition = "<AWS::Partition>"
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions.",
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::arn:{partition}:logs:{stack.region}:{stack.account}:log-group:/aws/lambda/*]",
            "The copy function's name, and so its log group, is generated by the construct; Lambda writes there.",
        )
        acknowledge(
            self.policy,
            f"AwsSolutions-IAM5[Resource::arn:{partition}:logs:{stack.region}:{stack.account}:log-group:/aws/lambda/*"
            ":log-stream:*]",
            "Lambda writes one log stream per execution environment of the copy function.",
        )
        self.image_uri = config.mirror_image_uri
