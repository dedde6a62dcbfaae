"""Autoscaling of one inference component's copies, down to zero where asked.

Target tracking on ``SageMakerInferenceComponentInvocationsPerCopy`` moves the copy count between ``min_copies`` and
``max_copies``. Target tracking cannot leave zero copies (there is no per-copy metric without a copy), so a component
with ``min_copies: 0`` also gets a step scaling policy that adds one copy, fired by an alarm on
``NoCapacityInvocationFailures`` (SageMaker counts the requests it had no copy for); the endpoint's managed instance
scaling then adds an instance for it. The first requests after zero fail while the copy starts (minutes).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from lmi_deploy.multi_model import ModelSpec

SCALE_FROM_ZERO_COOLDOWN_S = 60


class ComponentAutoscaling(Construct):
    """``inference-component/<name>`` scaled on ``sagemaker:inference-component:DesiredCopyCount``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        endpoint: DeploymentConfig,
        model: ModelSpec,
        component: sagemaker.CfnInferenceComponent,
        component_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"inference-component/{component_name}",
            scalable_dimension="sagemaker:inference-component:DesiredCopyCount",
            min_capacity=model.min_copies,
            max_capacity=model.max_copies,
        )
        self.target.node.add_dependency(component)
        self.target.scale_to_track_metric(
            "InvocationsPerCopy",
            target_value=endpoint.autoscaling_target_invocations,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_INFERENCE_COMPONENT_INVOCATIONS_PER_COPY,
            scale_in_cooldown=Duration.seconds(endpoint.autoscaling_scale_in_cooldown),
            scale_out_cooldown=Duration.seconds(endpoint.autoscaling_scale_out_cooldown),
        )
        self.scale_from_zero: cloudwatch.Alarm | None = None
        if model.scales_to_zero:
            step = appscaling.StepScalingAction(
                self,
                "ScaleOutFromZero",
                scaling_target=self.target,
                adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
                cooldown=Duration.seconds(SCALE_FROM_ZERO_COOLDOWN_S),
            )
            step.add_adjustment(adjustment=1, lower_bound=0)
            self.scale_from_zero = cloudwatch.Alarm(
                self,
                "NoCapacity",
                alarm_name=f"{component_name}-no-capacity",
                alarm_description=f"{component_name} was invoked with no copy running: add one",
                metric=cloudwatch.Metric(
                    namespace="AWS/SageMaker",
                    metric_name="NoCapacityInvocationFailures",
                    statistic="Sum",
                    period=Duration.minutes(1),
                    dimensions_map={"InferenceComponentName": component_name},
                ),
                threshold=1,
                evaluation_periods=1,
                datapoints_to_alarm=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            self.scale_from_zero.add_alarm_action(actions.ApplicationScalingAction(step))
