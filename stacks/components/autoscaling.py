"""Target-tracking autoscaling of the endpoint's instance count on invocations per instance (real-time endpoints)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from constructs import Construct

from lmi_deploy.config import DeploymentConfig


class EndpointAutoscaling(Construct):
    """Scale ``AllTraffic`` between ``instance_count`` and ``autoscaling_max_instances`` to keep
    ``SageMakerVariantInvocationsPerInstance`` near the target (the right metric for real-time endpoints; async
    endpoints scale on backlog instead)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        assert config.autoscaling_max_instances is not None
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{config.deployment}/variant/AllTraffic",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=config.instance_count,
            max_capacity=config.autoscaling_max_instances,
        )
        self.target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=config.autoscaling_target_invocations,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=Duration.seconds(config.autoscaling_scale_in_cooldown),
            scale_out_cooldown=Duration.seconds(config.autoscaling_scale_out_cooldown),
        )
