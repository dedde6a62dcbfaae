"""Alarms, their SNS topic and a dashboard for one endpoint; the alarms also drive auto-rollback of updates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from lmi_deploy.config import DeploymentConfig

VARIANT = "AllTraffic"
INVOCATIONS = "AWS/SageMaker"  # per-request metrics SageMaker publishes
INSTANCES = "/aws/sagemaker/Endpoints"  # per-instance metrics the instances' agent publishes
AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the endpoint's variant, per minute."""

    key: str
    namespace: str
    name: str
    statistic: str

    def metric(self, endpoint: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self.namespace,
            metric_name=self.name,
            statistic=self.statistic,
            period=Duration.minutes(1),
            dimensions_map={"EndpointName": endpoint, "VariantName": VARIANT},
        )


METRICS = (
    # One CPUUtilization datapoint per instance and minute: the count says how many instances report.
    MetricSpec("instances_reporting", INSTANCES, "CPUUtilization", "SampleCount"),
    MetricSpec("invocations", INVOCATIONS, "Invocations", "Sum"),
    MetricSpec("5xx", INVOCATIONS, "Invocation5XXErrors", "Sum"),
    MetricSpec("4xx", INVOCATIONS, "Invocation4XXErrors", "Sum"),
    MetricSpec("model_latency_p99", INVOCATIONS, "ModelLatency", "p99"),  # microseconds
    MetricSpec("overhead_latency_p99", INVOCATIONS, "OverheadLatency", "p99"),
    MetricSpec("gpu_memory", INSTANCES, "GPUMemoryUtilization", "Maximum"),  # percent summed over the GPUs
    MetricSpec("gpu_utilization", INSTANCES, "GPUUtilization", "Maximum"),
    MetricSpec("disk", INSTANCES, "DiskUtilization", "Maximum"),
)


def _limits(config: DeploymentConfig) -> dict[str, int]:
    """The deployment's values that alarm thresholds, periods and descriptions name (``AlarmSpec`` strings)."""
    gpus = config.instance.accelerator_count
    return {
        "gpus": gpus,
        "gpus_full": 98 * gpus,  # percent, summed over the GPUs
        "latency_ms": config.alarm_model_latency_p99_ms,
        "latency_us": config.alarm_model_latency_p99_ms * 1000,
        "silent_minutes": config.alarm_no_healthy_instances_minutes,
    }


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm on a metric of ``METRICS``: it fires when the metric compares to ``threshold`` for ``minutes``
    minutes in a row. A threshold or period given as a string is that value of ``_limits``; so are the
    ``{fields}`` of the description. ``rollback`` alarms roll back an update that trips them."""

    key: str
    metric: str
    threshold: float | str
    minutes: int | str
    description: str
    comparison: cloudwatch.ComparisonOperator = AT_LEAST
    missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING
    rollback: bool = False
    applies: Callable[[DeploymentConfig], bool] = lambda config: True


ALARMS = (
    AlarmSpec(
        "5xx", "5xx", 1, 2, "The model server answered 5XX (or the handler failed) two minutes in a row", rollback=True
    ),
    AlarmSpec("4xx", "4xx", 10, 3, "Ten or more client errors a minute for three minutes"),
    AlarmSpec(
        "model_latency_p99",
        "model_latency_p99",
        "latency_us",
        3,
        "p99 model latency above {latency_ms} ms",
        rollback=True,
    ),
    AlarmSpec("overhead_latency_p99", "overhead_latency_p99", 1_000_000, 3, "p99 SageMaker overhead above 1 s"),
    AlarmSpec("gpu_memory", "gpu_memory", "gpus_full", 5, "GPU memory above 98% on all {gpus} accelerator(s)"),
    AlarmSpec("gpu_utilization", "gpu_utilization", "gpus_full", 15, "GPUs saturated for 15 minutes: scale out"),
    AlarmSpec("disk", "disk", 90, 5, "Instance storage above 90%"),
    # SageMaker publishes no healthy-host count. Every running instance reports its CPUUtilization to
    # /aws/sagemaker/Endpoints once a minute, so the per-variant SampleCount is the number of instances alive, and no
    # datapoint at all means none is: missing data is breaching. (Invocations with missing data as breaching would
    # also fire on an idle but healthy endpoint.) An instance whose container fails its /ping checks is replaced by
    # SageMaker and stops reporting, so a replaced fleet shows as a gap. Only where instances must run; not a
    # rollback alarm: a failing new fleet already fails the update, and an endpoint that is down must still accept
    # the update that fixes it.
    AlarmSpec(
        "no_healthy_instances",
        "instances_reporting",
        1,
        "silent_minutes",
        "No instance of the endpoint has reported for {silent_minutes} minute(s): it serves nothing",
        comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        missing_data=cloudwatch.TreatMissingData.BREACHING,
        applies=lambda config: config.minimum_instances > 0,
    ),
)


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
        # Encrypted only with a customer-managed key: CloudWatch alarms cannot publish to a topic under the
        # AWS-managed SNS key, whose policy cannot grant them.
        self.topic = sns.Topic(
            self, "Alarms", display_name=f"lmi-deploy {endpoint} alarms", enforce_ssl=True, master_key=key
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        self.metrics = {spec.key: spec.metric(endpoint) for spec in METRICS}
        self.alarms = {
            spec.key: self._alarm(spec, endpoint, _limits(config)) for spec in ALARMS if spec.applies(config)
        }
        self.rollback_alarms = [self.alarms[spec.key] for spec in ALARMS if spec.rollback]
        self._dashboard(endpoint, log_group_name)

    def _alarm(self, spec: AlarmSpec, endpoint: str, limits: Mapping[str, int]) -> cloudwatch.Alarm:
        name = spec.key.replace("_", "-")
        minutes = limits[spec.minutes] if isinstance(spec.minutes, str) else spec.minutes
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_name=f"{endpoint}-{name}",
            metric=self.metrics[spec.metric],
            threshold=limits[spec.threshold] if isinstance(spec.threshold, str) else spec.threshold,
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
            comparison_operator=spec.comparison,
            treat_missing_data=spec.missing_data,
            alarm_description=spec.description.format(**limits),
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
