"""The endpoint's CloudWatch log group, owned by the stack, and the role's grant to write its telemetry: logs into
this group, metrics into the namespace of the same name."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.components.execution_role import ExecutionRole
from stacks.components.nag import NAG_PARTITION


def log_group_arn(scope: Construct, name: str) -> str:
    """The ARN of the log group ``name`` in ``scope``'s stack, from the name alone (known at synth time)."""
    return Stack.of(scope).format_arn(
        service="logs", resource="log-group", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )


class EndpointLogGroup(logs.LogGroup):
    """``/aws/sagemaker/Endpoints/<endpoint>``, where SageMaker writes the endpoint's logs: owning it sets its
    retention (a month) and lets the role write only there. Encrypted with the deployment's key when it has one."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, key: kms.IKey | None = None) -> None:
        super().__init__(
            scope,
            construct_id,
            log_group_name=name,
            encryption_key=key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.fixed_name = name

    def bind(self, role: ExecutionRole) -> None:
        """Streams and events in this group only (the ARN from its fixed name, so the acknowledged wildcard names
        it), and metrics in the ``/aws/sagemaker/Endpoints`` namespace the container's agent publishes to."""
        stack = Stack.of(self)
        arn = log_group_arn(self, self.fixed_name)
        role.allow(
            "WriteLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            [arn, f"{arn}:log-stream:*"],
        )
        role.acknowledge_wildcard(
            f"arn:{NAG_PARTITION}:logs:{stack.region}:{stack.account}:log-group:{self.fixed_name}:log-stream:*",
            "SageMaker writes one log stream per instance and container into this endpoint's own log group.",
        )
        role.allow(
            "PublishEndpointMetrics",
            ["cloudwatch:PutMetricData"],
            ["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints*"}},
        )
        role.acknowledge_wildcard(
            "*", "cloudwatch:PutMetricData is limited by a namespace condition instead; it requires Resource '*'."
        )
