"""The container image of the endpoint: the AWS-published LMI image, a copy of it in the deployment's repository
(mirrored), or an image built from it (custom); each grants the execution role the pull of its one repository."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.execution_role import ExecutionRole
from stacks.components.log_group import log_group_arn
from stacks.components.nag import NAG_PARTITION, acknowledge_wildcard

PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
PUSH_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:DescribeImages",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
]


class ImageSource(Protocol):
    """Where the endpoint's container image comes from, and the grant to pull it."""

    @property
    def image_uri(self) -> str: ...

    def bind(self, role: ExecutionRole, *, suffix: str = "") -> None: ...


def grant_pull(role: ExecutionRole, repository_arn: str, *, suffix: str = "") -> None:
    """Pulling from exactly one repository, and the ECR login every pull needs (granted once per role)."""
    role.allow(f"PullImage{suffix}", PULL_ACTIONS, [repository_arn])
    if role.allow("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]):
        role.acknowledge_wildcard("*", "ecr:GetAuthorizationToken has no resource-level permissions.")


@dataclass(frozen=True)
class RepositoryImage:
    """An image in a repository named at synth time: the published LMI image (``account`` is AWS's), or its mirror
    in the deployment's own repository (``account`` None: the stack's)."""

    image_uri: str
    repository: str
    account: str | None = None

    def bind(self, role: ExecutionRole, *, suffix: str = "") -> None:
        arn = Stack.of(role).format_arn(
            service="ecr", account=self.account, resource="repository", resource_name=self.repository
        )
        grant_pull(role, arn, suffix=suffix)


def published_image(config: DeploymentConfig) -> RepositoryImage:
    """The LMI image as AWS publishes it for the deployment's engine, version and region."""
    return RepositoryImage(config.image_uri, config.image_repository, config.image_account)


def image_source(scope: Construct, config: DeploymentConfig) -> ImageSource:
    """The deployment's image: built (``image=custom``, a construct under ``scope``), mirrored, or published."""
    if config.image == "custom":
        return CustomImage(scope, "Image", config=config)
    if config.image == "mirror":
        return RepositoryImage(config.mirror_image_uri, config.repository_name)
    return published_image(config)


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

    def bind(self, role: ExecutionRole, *, suffix: str = "") -> None:
        """Pulling only from the bootstrap's asset repository that ``cdk deploy`` pushes the build to."""
        grant_pull(role, self.repository_arn, suffix=suffix)


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

        self.role = iam.Role(
            self,
            "CopyRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"lmi-deploy {config.deployment}: copy the LMI image into {config.repository_name}",
        )
        self.policy = self._copy_policy(config, repository)
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
        stack = Stack.of(self)
        for child in stack.node.find_all():
            if isinstance(child, lambda_.CfnFunction) and child.node.path.startswith(
                f"{stack.node.path}/Custom::CDKECRDeployment"
            ):
                child.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        self.image_uri = config.mirror_image_uri

    def _copy_policy(self, config: DeploymentConfig, repository: ecr.IRepository) -> iam.Policy:
        """The copy function's only permissions: pull the LMI image, push to the deployment's repository, log."""
        stack = Stack.of(self)
        source = stack.format_arn(
            service="ecr", account=config.image_account, resource="repository", resource_name=config.image_repository
        )
        log_groups = log_group_arn(self, "/aws/lambda/*")
        policy = iam.Policy(
            self,
            "CopyPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
                iam.PolicyStatement(sid="PullLmiImage", actions=PULL_ACTIONS, resources=[source]),
                iam.PolicyStatement(
                    sid="PushToDeploymentRepository", actions=PUSH_ACTIONS, resources=[repository.repository_arn]
                ),
                iam.PolicyStatement(
                    sid="FunctionLogs",
                    actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_groups, f"{log_groups}:log-stream:*"],
                ),
            ],
        )
        acknowledge_wildcard(policy, "*", "ecr:GetAuthorizationToken has no resource-level permissions.")
        nag_log_groups = f"arn:{NAG_PARTITION}:logs:{stack.region}:{stack.account}:log-group:/aws/lambda/*"
        acknowledge_wildcard(
            policy,
            nag_log_groups,
            "The copy function's name, and so its log group, is generated by the construct; Lambda writes there.",
        )
        acknowledge_wildcard(
            policy,
            f"{nag_log_groups}:log-stream:*",
            "Lambda writes one log stream per execution environment of the copy function.",
        )
        return policy
