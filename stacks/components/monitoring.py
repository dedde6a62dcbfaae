"""Alarms, their SNS topic and a dashboard for one endpoint; the alarms also drive auto-rollback of updates."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.alarm_specs import ALARMS, METRICS, AlarmSpec, limits


def allow_alarms_to_publish(key: kms.Key) -> None:
    """Let CloudWatch alarms of this account use ``key`` to publish to a topic it encrypts."""
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AlarmsPublishToEncryptedTopic",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": Stack.of(key).account}},
        )
    )


def _alarm_topic_key(scope: Construct, deployment: str) -> kms.Key:
    """The alarm topic's own key (about 1 USD a month), for deployments without ``kms_key``; it encrypts nothing
    that outlives the endpoint stack, so it goes with it (after KMS's 7-day waiting period)."""
    key = kms.Key(
        scope,
        "AlarmTopicKey",
        description=f"lmi-deploy {deployment}: alarm topic",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.DESTROY,
        pending_window=Duration.days(7),
    )
    allow_alarms_to_publish(key)
    return key


class EndpointMonitoring(Construct):
    """Alarms on 5XX/4XX errors, p99 model and overhead latency, GPU memory/utilization and disk; a topic; a dashboard.

    ``rollback_alarms`` are the ones a bad update trips (errors and latency): the endpoint's deployment config rolls
    back when any of them fires during an update.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        log_group_name: str,
        key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        endpoint = config.deployment
        # Always encrypted, and with a customer-managed key: CloudWatch alarms cannot publish to a topic under the
        # AWS-managed SNS key (alias/aws/sns), whose policy cannot grant them. Without kms_key, a small key of its own.
        self.topic_key = key or _alarm_topic_key(self, config.deployment)
        self.topic = sns.Topic(
            self, "Alarms", display_name=f"lmi-deploy {endpoint} alarms", enforce_ssl=True, master_key=self.topic_key
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        self.metrics = {spec.key: spec.metric(endpoint) for spec in METRICS}
        self.alarms = {spec.key: self._alarm(spec, endpoint, limits(config)) for spec in ALARMS if spec.applies(config)}
        self.rollback_alarms = [self.alarms[spec.key] for spec in ALARMS if spec.rollback]
        self._dashboard(endpoint, log_group_name)

    def _alarm(self, spec: AlarmSpec, endpoint: str, values: Mapping[str, int]) -> cloudwatch.Alarm:
        name = spec.key.replace("_", "-")
        minutes = values[spec.minutes] if isinstance(spec.minutes, str) else spec.minutes
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_name=f"{endpoint}-{name}",
            metric=self.metrics[spec.metric or spec.key],
            threshold=values[spec.threshold] if isinstance(spec.threshold, str) else spec.threshold,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            comparison_operator=spec.comparison,
            treat_missing_data=spec.missing_data,
            alarm_description=spec.description.format(**values),
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        return alarm

    def _dashboard(self, endpoint: str, log_group_name: str) -> None:
        """Traffic, latency, GPUs, disk, instances reporting, the alarms' states and the endpoint's log."""
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"lmi-deploy-{endpoint}")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Invocations and errors",
                width=12,
                left=[self.metrics["invocations"], self.metrics["4xx"], self.metrics["5xx"]],
            ),
            cloudwatch.GraphWidget(
                title="p99 latency (us)",
                width=12,
                left=[self.metrics["model_latency_p99"], self.metrics["overhead_latency_p99"]],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="GPU memory / utilization (% summed over GPUs)",
                width=12,
                left=[self.metrics["gpu_memory"], self.metrics["gpu_utilization"]],
            ),
            cloudwatch.GraphWidget(title="Disk (%)", width=6, left=[self.metrics["disk"]]),
            cloudwatch.GraphWidget(title="Instances reporting", width=6, left=[self.metrics["instances_reporting"]]),
        )
        self.dashboard.add_widgets(
            # ARNs from the alarms' fixed names (no Fn::GetAtt: simpler template, and the local emulator lacks it)
            cloudwatch.AlarmStatusWidget(
                title="Alarms",
                width=24,
                alarms=[
                    cloudwatch.Alarm.from_alarm_arn(
                        self,
                        f"Status{key}",
                        Stack.of(self).format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name=f"{endpoint}-{key.replace('_', '-')}",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        ),
                    )
                    for key in self.alarms
                ],
            ),
            cloudwatch.LogQueryWidget(
                title="Endpoint log",
                width=24,
                log_group_names=[log_group_name],
                query_lines=["fields @timestamp, @message", "sort @timestamp desc", "limit 50"],
            ),
        )
