"""Autoscaling of the endpoint's instance count: target tracking, plus scheduled changes of its bounds."""

from __future__ import annotations

from aws_cdk import Duration, TimeZone
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from lmi_deploy.config import DeploymentConfig


class EndpointAutoscaling(Construct):
    """Scale ``AllTraffic`` between the autoscaling floor (``autoscaling_min_instances``, default
    ``instance_count``) and ``autoscaling_max_instances`` to keep ``SageMakerVariantInvocationsPerInstance`` (real-time)
    or ``ApproximateBacklogSizePerInstance`` (async) near its target; each of ``autoscaling_schedules`` becomes a
    scheduled action that moves those bounds."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        assert config.autoscaling_max_instances is not None
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{config.deployment}/variant/AllTraffic",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=config.autoscaling_floor,
            max_capacity=config.autoscaling_max_instances,
        )
        if not config.asynchronous:
            self.target.scale_to_track_metric(
                "InvocationsPerInstance",
                target_value=config.autoscaling_target_invocations,
                predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
                scale_in_cooldown=Duration.seconds(config.autoscaling_scale_in_cooldown),
                scale_out_cooldown=Duration.seconds(config.autoscaling_scale_out_cooldown),
            )
        else:
            self._scale_on_backlog(config)
        for schedule in config.autoscaling_schedules:
            # the construct id becomes the scheduled action's name
            self.target.scale_on_schedule(
                schedule.name,
                schedule=appscaling.Schedule.expression(schedule.schedule),
                min_capacity=schedule.min_instances,
                max_capacity=schedule.max_instances,
                time_zone=TimeZone.of(schedule.timezone),
            )

    def _scale_on_backlog(self, config: DeploymentConfig) -> None:
        """Async endpoints scale on their queue (SageMaker's recommendation): requests waiting per instance."""

        def backlog(name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=name,
                dimensions_map={"EndpointName": config.deployment},
                statistic="Average",
                period=Duration.minutes(1),
            )

        self.target.scale_to_track_metric(
            "BacklogPerInstance",
            target_value=config.autoscaling_target_backlog_per_instance,
            custom_metric=backlog("ApproximateBacklogSizePerInstance"),
            scale_in_cooldown=Duration.seconds(config.autoscaling_scale_in_cooldown),
            scale_out_cooldown=Duration.seconds(config.autoscaling_scale_out_cooldown),
        )
        if config.minimum_instances == 0:
            # At zero instances there is no backlog per instance to track: one instance as soon as a request
            # waits (HasBacklogWithoutCapacity), as SageMaker's scale-to-zero guidance does.
            self.target.scale_on_metric(
                "ScaleOutFromZero",
                metric=backlog("HasBacklogWithoutCapacity"),
                scaling_steps=[
                    appscaling.ScalingInterval(upper=0, change=0),
                    appscaling.ScalingInterval(lower=1, change=1),
                ],
                adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                cooldown=Duration.seconds(config.autoscaling_scale_out_cooldown),
                evaluation_periods=1,
            )
