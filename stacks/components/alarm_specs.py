"""The endpoint's alarms as a table: which metric (namespace, statistic), which threshold (a constant or a value of
the deployment), how many minutes, which comparison, what it means. ``EndpointMonitoring`` creates one alarm per row
that applies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

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


def limits(config: DeploymentConfig) -> dict[str, int]:
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
    """One alarm on a metric of ``METRICS`` (the one of the same key unless ``metric`` names another): it fires
    when the metric compares to ``threshold`` for ``minutes`` minutes in a row. A threshold or period given as a
    string is that value of ``limits``; so are the ``{fields}`` of the description. ``rollback`` alarms roll back an
    update that trips them; ``applies`` says whether the deployment gets the alarm."""

    key: str
    threshold: float | str
    minutes: int | str
    description: str
    metric: str = ""  # the metric's key when it is not the alarm's
    comparison: cloudwatch.ComparisonOperator = AT_LEAST
    missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING
    rollback: bool = False
    applies: Callable[[DeploymentConfig], bool] = lambda config: True


ALARMS = (
    AlarmSpec("5xx", 1, 2, "The model server answered 5XX (or the handler failed) two minutes in a row", rollback=True),
    AlarmSpec("4xx", 10, 3, "Ten or more client errors a minute for three minutes"),
    AlarmSpec("model_latency_p99", "latency_us", 3, "p99 model latency above {latency_ms} ms", rollback=True),
    AlarmSpec("overhead_latency_p99", 1_000_000, 3, "p99 SageMaker overhead above 1 s"),
    AlarmSpec("gpu_memory", "gpus_full", 5, "GPU memory above 98% on all {gpus} accelerator(s)"),
    AlarmSpec("gpu_utilization", "gpus_full", 15, "GPUs saturated for 15 minutes: scale out"),
    AlarmSpec("disk", 90, 5, "Instance storage above 90%"),
    # SageMaker publishes no healthy-host count. Every running instance reports its CPUUtilization to
    # /aws/sagemaker/Endpoints once a minute, so the per-variant SampleCount is the number of instances alive, and no
    # datapoint at all means none is: missing data is breaching. (Invocations with missing data as breaching would
    # also fire on an idle but healthy endpoint.) An instance whose container fails its /ping checks is replaced by
    # SageMaker and stops reporting, so a replaced fleet shows as a gap. Only where instances must run; not a
    # rollback alarm: a failing new fleet already fails the update, and an endpoint that is down must still accept
    # the update that fixes it.
    AlarmSpec(
        "no_healthy_instances",
        1,
        "silent_minutes",
        "No instance of the endpoint has reported for {silent_minutes} minute(s): it serves nothing",
        metric="instances_reporting",
        comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        missing_data=cloudwatch.TreatMissingData.BREACHING,
        applies=lambda config: config.minimum_instances > 0,
    ),
)
