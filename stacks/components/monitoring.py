"""Alarms, their SNS topic and a dashboard for one endpoint; the alarms also drive auto-rollback of updates."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from lmi_deploy.config import DeploymentConfig

VARIANT = "AllTraffic"


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
        gpus = config.instance.accelerator_count
        # Encrypted only with a customer-managed key: CloudWatch alarms cannot publish to a topic under the
        # AWS-managed SNS key, whose policy cannot grant them.
        self.topic = sns.Topic(
            self, "Alarms", display_name=f"lmi-deploy {endpoint} alarms", enforce_ssl=True, master_key=key
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        def invocation_metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                statistic=statistic,
                period=Duration.minutes(1),
                dimensions_map={"EndpointName": endpoint, "VariantName": VARIANT},
            )

        def instance_metric(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="/aws/sagemaker/Endpoints",
                metric_name=name,
                statistic="Maximum",
                period=Duration.minutes(1),
                dimensions_map={"EndpointName": endpoint, "VariantName": VARIANT},
            )

        self.metrics = {
            # One CPUUtilization datapoint per instance and minute: the count says how many instances report.
            "instances_reporting": cloudwatch.Metric(
                namespace="/aws/sagemaker/Endpoints",
                metric_name="CPUUtilization",
                statistic="SampleCount",
                period=Duration.minutes(1),
                dimensions_map={"EndpointName": endpoint, "VariantName": VARIANT},
            ),
            "invocations": invocation_metric("Invocations", "Sum"),
            "5xx": invocation_metric("Invocation5XXErrors", "Sum"),
            "4xx": invocation_metric("Invocation4XXErrors", "Sum"),
            "model_latency_p99": invocation_metric("ModelLatency", "p99"),  # microseconds
            "overhead_latency_p99": invocation_metric("OverheadLatency", "p99"),
            "gpu_memory": instance_metric("GPUMemoryUtilization"),  # percent summed over the GPUs
            "gpu_utilization": instance_metric("GPUUtilization"),
            "disk": instance_metric("DiskUtilization"),
        }
        latency_us = config.alarm_model_latency_p99_ms * 1000

        def alarm(key: str, threshold: float, evaluation: int, description: str) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(
                self,
                key.replace("_", "-"),
                alarm_name=f"{endpoint}-{key.replace('_', '-')}",
                metric=self.metrics[key],
                threshold=threshold,
                evaluation_periods=evaluation,
                datapoints_to_alarm=evaluation,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(actions.SnsAction(self.topic))
            return created

        self.alarms = {
            "5xx": alarm("5xx", 1, 2, "The model server answered 5XX (or the handler failed) two minutes in a row"),
            "4xx": alarm("4xx", 10, 3, "Ten or more client errors a minute for three minutes"),
            "model_latency_p99": alarm(
                "model_latency_p99", latency_us, 3, f"p99 model latency above {config.alarm_model_latency_p99_ms} ms"
            ),
            "overhead_latency_p99": alarm("overhead_latency_p99", 1_000_000, 3, "p99 SageMaker overhead above 1 s"),
            "gpu_memory": alarm("gpu_memory", 98 * gpus, 5, f"GPU memory above 98% on all {gpus} accelerator(s)"),
            "gpu_utilization": alarm("gpu_utilization", 98 * gpus, 15, "GPUs saturated for 15 minutes: scale out"),
            "disk": alarm("disk", 90, 5, "Instance storage above 90%"),
        }
        if config.minimum_instances > 0:
            # SageMaker publishes no healthy-host count. Every running instance reports its CPUUtilization to
            # /aws/sagemaker/Endpoints once a minute, so the per-variant SampleCount is the number of instances
            # alive, and no datapoint at all means none is: missing data is breaching. (Invocations with missing
            # data as breaching would also fire on an idle but healthy endpoint.) An instance whose container fails
            # its /ping checks is replaced by SageMaker and stops reporting, so a replaced fleet shows as a gap.
            # Not a rollback alarm: a failing new fleet already fails the update, and an endpoint that is down
            # must still accept the update that fixes it.
            self.alarms["no_healthy_instances"] = created = cloudwatch.Alarm(
                self,
                "no-healthy-instances",
                alarm_name=f"{endpoint}-no-healthy-instances",
                metric=self.metrics["instances_reporting"],
                threshold=1,
                evaluation_periods=config.alarm_no_healthy_instances_minutes,
                datapoints_to_alarm=config.alarm_no_healthy_instances_minutes,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
                alarm_description=f"No instance of the endpoint has reported for "
                f"{config.alarm_no_healthy_instances_minutes} minute(s): it serves nothing",
            )
            created.add_alarm_action(actions.SnsAction(self.topic))
        self.rollback_alarms = [self.alarms[k] for k in ("5xx", "model_latency_p99")]

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
