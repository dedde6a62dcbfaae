"""``<deployment>-endpoint``: the execution role, the code artifact and the SageMaker endpoint resources."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from lmi_deploy.render import RenderedCode, container_environment
from stacks.components.artifact_store import grant_key_use
from stacks.components.async_inference import AsyncNotifications, grant_async_locations, grant_data_capture
from stacks.components.autoscaling import EndpointAutoscaling
from stacks.components.code_artifact import CodeArtifact
from stacks.components.execution_role import ExecutionRole
from stacks.components.hub_token import HubTokenSecret
from stacks.components.image import image_source
from stacks.components.log_group import EndpointLogGroup
from stacks.components.model_access import grant_model
from stacks.components.model_endpoint import ModelEndpoint
from stacks.components.monitoring import EndpointMonitoring
from stacks.components.network import EndpointNetwork


class EndpointStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        bucket: s3.IBucket,
        code: RenderedCode,
        key: kms.IKey | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # With weights_delivery=sagemaker no code ships: the settings travel as environment variables.
        self.code = CodeArtifact(self, "Code", tarball=code.tarball) if config.weights_delivery == "container" else None
        self.log_group_name = config.log_group_name
        self.log_group = EndpointLogGroup(self, "Logs", name=self.log_group_name, key=key)
        # The role names the bucket by its synth-time name; the stack still must come after the bucket's.
        self.add_stack_dependency(Stack.of(bucket))
        # Instances in the deployment's subnets when it names any (cdk-nag's AwsSolutions SM rules check notebook
        # instances only; VPC placement and volume keys of endpoints are this project's own settings).
        self.network = EndpointNetwork(self, "Network", config=config) if config.vpc_subnet_ids else None
        self.image = image_source(self, config)
        self.image_uri = self.image.image_uri
        self.notifications = (
            AsyncNotifications(self, "AsyncNotifications", config=config, key=key)
            if config.asynchronous and config.async_notifications
            else None
        )
        self.execution_role = ExecutionRole(self, "ExecutionRole")
        self._grant(config, key)
        self.monitoring = EndpointMonitoring(
            self, "Monitoring", config=config, log_group_name=self.log_group_name, key=key
        )
        self.endpoint = ModelEndpoint(
            self,
            "Endpoint",
            config=config,
            role_arn=self.execution_role.role.role_arn,
            image_uri=self.image_uri,
            model_data_url=self.code.s3_object_url if self.code else None,
            environment=container_environment(config),
            rollback_alarm_names=[alarm.alarm_name for alarm in self.monitoring.rollback_alarms],
            subnet_ids=self.network.subnet_ids if self.network else None,
            security_group_ids=self.network.security_group_ids if self.network else None,
            volume_kms_key_id=key.key_arn if key is not None and config.volume_kms_key else None,
            output_kms_key_id=key.key_arn if key is not None else None,
            notifications=self.notifications,
        )
        self.autoscaling = (
            EndpointAutoscaling(self, "Autoscaling", config=config) if config.autoscaling_max_instances else None
        )
        if self.autoscaling is not None:
            self.autoscaling.node.add_dependency(self.endpoint.endpoint)
        if "no_healthy_instances" in self.monitoring.alarms:
            # created once the endpoint is in service, or it would fire while the first fleet starts
            self.monitoring.alarms["no_healthy_instances"].node.add_dependency(self.endpoint.endpoint)
        # CreateModel checks that the role can read the artifact: attach the policy first.
        self.endpoint.model.node.add_dependency(self.execution_role.policy)
        self._outputs(config)

    def _grant(self, config: DeploymentConfig, key: kms.IKey | None) -> None:
        """Each resource the endpoint uses grants the role what it needs, and nothing else is granted."""
        role = self.execution_role
        grant_model(role, config, code=self.code, image=self.image)
        self.log_group.bind(role)
        if key is not None:
            grant_key_use(key, role)
        if config.endpoint_reads_hub_token and config.hf_token_secret:
            HubTokenSecret(config.hf_token_secret).bind(role)
        if config.asynchronous:
            grant_async_locations(role, config)
        if config.data_capture:
            grant_data_capture(role, config)
        if self.notifications is not None:
            self.notifications.grant_publish(role)
        if self.network is not None:
            self.network.bind(role)

    def _outputs(self, config: DeploymentConfig) -> None:
        CfnOutput(self, "EndpointName", value=self.endpoint.endpoint.attr_endpoint_name)
        CfnOutput(self, "ImageUri", value=self.image_uri)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=f"lmi-deploy-{config.deployment}")
        CfnOutput(self, "WeightsS3Prefix", value=config.weights_s3_uri)
        if self.code is not None:
            CfnOutput(self, "CodeArtifactS3Uri", value=self.code.s3_object_url)
        if config.asynchronous:
            CfnOutput(self, "AsyncInputS3Uri", value=config.async_input_s3_uri, description="Put requests here")
            CfnOutput(self, "AsyncOutputS3Uri", value=config.async_output_s3_uri, description="Responses appear here")
        if self.notifications is not None:
            CfnOutput(self, "AsyncSuccessTopicArn", value=self.notifications.success.topic_arn)
            CfnOutput(self, "AsyncErrorTopicArn", value=self.notifications.error.topic_arn)
        if config.data_capture:
            CfnOutput(self, "DataCaptureS3Uri", value=config.data_capture_s3_uri)
