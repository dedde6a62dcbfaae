"""The SageMaker Model, EndpointConfig and Endpoint for one LMI deployment."""

from __future__ import annotations

from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.async_inference import AsyncNotifications, async_inference_config, data_capture_config


class ModelEndpoint(Construct):
    """Model (LMI image + code tarball), EndpointConfig (instances, timeouts, volume) and the Endpoint.

    Model and EndpointConfig get no physical names, so CloudFormation can replace them when the model, image or
    instance type changes; the Endpoint keeps the deployment's name and is updated in place.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        role_arn: str,
        image_uri: str,
        model_data_url: str | None,
        environment: dict[str, str],
        rollback_alarm_names: list[str] | None = None,
        subnet_ids: list[str] | None = None,
        security_group_ids: list[str] | None = None,
        volume_kms_key_id: str | None = None,
        output_kms_key_id: str | None = None,
        notifications: AsyncNotifications | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        container = _container(config, image_uri, model_data_url, environment)
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role_arn,
            primary_container=container,
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(subnets=subnet_ids, security_group_ids=security_group_ids)
            if subnet_ids and security_group_ids
            else None,
            enable_network_isolation=True if config.network_isolation else None,
        )
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name="AllTraffic",
            model_name=self.model.attr_model_name,
            instance_type=config.instance_type,
            initial_instance_count=config.instance_count,
            initial_variant_weight=1.0,
            model_data_download_timeout_in_seconds=config.resolved.model_data_download_timeout,
            container_startup_health_check_timeout_in_seconds=config.resolved.container_startup_health_check_timeout,
            volume_size_in_gb=config.volume_size_gb,
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[variant],
            kms_key_id=volume_kms_key_id,  # storage volume; never on NVMe-only types (config.volume_kms_key)
            async_inference_config=async_inference_config(config, notifications, output_kms_key_id)
            if config.asynchronous
            else None,
            data_capture_config=data_capture_config(config, output_kms_key_id) if config.data_capture else None,
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            endpoint_name=config.deployment,
            deployment_config=_deployment_config(config, rollback_alarm_names or []),
        )


def _container(
    config: DeploymentConfig, image_uri: str, model_data_url: str | None, environment: dict[str, str]
) -> sagemaker.CfnModel.ContainerDefinitionProperty:
    """The LMI image on the code tarball (the container downloads the weights itself), or on the staged weights
    prefix that SageMaker copies, uncompressed, to /opt/ml/model before the container starts."""
    if model_data_url is not None:
        return sagemaker.CfnModel.ContainerDefinitionProperty(
            image=image_uri, model_data_url=model_data_url, mode="SingleModel", environment=environment or None
        )
    return sagemaker.CfnModel.ContainerDefinitionProperty(
        image=image_uri,
        mode="SingleModel",
        environment=environment,
        model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
            s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                s3_uri=config.weights_s3_uri, s3_data_type="S3Prefix", compression_type="None"
            )
        ),
    )


def _deployment_config(
    config: DeploymentConfig, alarm_names: list[str]
) -> sagemaker.CfnEndpoint.DeploymentConfigProperty:
    """Blue/green update: a changed model, image or instance type shifts traffic as chosen, and rolls back when an
    error or latency alarm fires while it bakes."""
    size = sagemaker.CfnEndpoint.CapacitySizeProperty(type="CAPACITY_PERCENT", value=config.update_step_percent)
    kind = {"all-at-once": "ALL_AT_ONCE", "canary": "CANARY", "linear": "LINEAR"}[config.update_strategy]
    routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
        type=kind,
        wait_interval_in_seconds=config.update_wait_seconds,
        canary_size=size if kind == "CANARY" else None,
        linear_step_size=size if kind == "LINEAR" else None,
    )
    return sagemaker.CfnEndpoint.DeploymentConfigProperty(
        blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
            traffic_routing_configuration=routing, termination_wait_in_seconds=300
        ),
        auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
            alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=name) for name in alarm_names]
        )
        if alarm_names
        else None,
    )
