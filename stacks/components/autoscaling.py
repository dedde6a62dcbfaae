"""Autoscaling of the endpoint's instance count: target tracking, plus scheduled changes of its bounds."""

from __future__ import annotations

from aws_cdk import Duration, TimeZone
from aws_cdk import aws_applicationautoscaling as appscaling
from constructs import Construct

from lmi_deploy.config import DeploymentConfig


class EndpointAutoscaling(Construct):
    """Scale ``AllTraffic`` between the autoscaling floor (``autoscaling_min_instances``, default
    ``instance_count``) and ``autoscaling_max_instances`` to keep ``SageMakerVariantInvocationsPerInstance`` near the
    target; each of ``autoscaling_schedules`` becomes a scheduled action that moves those bounds."""

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
        self.target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=config.autoscaling_target_invocations,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=Duration.seconds(config.autoscaling_scale_in_cooldown),
            scale_out_cooldown=Duration.seconds(config.autoscaling_scale_out_cooldown),
        )
        for schedule in config.autoscaling_schedules:
            # the construct id becomes the scheduled action's name
            self.target.scale_on_schedule(
                schedule.name,
                schedule=appscaling.Schedule.expression(schedule.schedule),
                min_capacity=schedule.min_instances,
                max_capacity=schedule.max_instances,
                time_zone=TimeZone.of(schedule.timezone),
            )
