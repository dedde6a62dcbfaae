"""Several models behind one endpoint: inference components, or a multi-model endpoint (MME).

- :class:`InferenceComponentEndpoint`: an EndpointConfig with the execution role and the instance pool (no model in
  the variant), least-outstanding-requests routing and, when anything may scale, managed instance scaling; the
  Endpoint; and per model a Model plus an ``AWS::SageMaker::InferenceComponent`` with its accelerators, host
  memory, startup timeouts and copies, and one adapter inference component per LoRA adapter of the model.
- :class:`MultiModelEndpointResources`: one Model in ``MultiModel`` mode over the S3 prefix of per-model archives, its
  EndpointConfig and Endpoint (blue/green updates as a single-model endpoint's).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from lmi_deploy import adapters
from lmi_deploy.adapters import Adapter
from lmi_deploy.config import DeploymentConfig
from lmi_deploy.multi_model import ModelSpec, MultiModelDeployment
from lmi_deploy.render import container_environment
from stacks.components.model_endpoint import _deployment_config
from stacks.components.nag import acknowledge

VARIANT = "AllTraffic"
ROUTING_STRATEGY = "LEAST_OUTSTANDING_REQUESTS"  # a request goes to the copy with the fewest in flight


def construct_id(name: str) -> str:
    """``llama-3-8b`` -> ``Llama38b``: a model's entry name as part of a logical id (never its model id)."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def container_definition(
    config: DeploymentConfig, code_url: str | None
) -> sagemaker.CfnModel.ContainerDefinitionProperty:
    """A model's container: the LMI image on its code archive, or on its weights prefix (weights_delivery=sagemaker)."""
    if code_url is not None:
        return sagemaker.CfnModel.ContainerDefinitionProperty(
            image=config.image_uri, model_data_url=code_url, mode="SingleModel"
        )
    return sagemaker.CfnModel.ContainerDefinitionProperty(
        image=config.image_uri,
        mode="SingleModel",
        environment=container_environment(config),
        model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
            s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                s3_uri=config.weights_s3_uri, s3_data_type="S3Prefix", compression_type="None"
            )
        ),
    )


def _acknowledge_placement(model: sagemaker.CfnModel, endpoint_config: sagemaker.CfnEndpointConfig | None) -> None:
    acknowledge(
        model,
        "AwsSolutions-SM1",
        "The LMI container must reach S3 and ECR; VPC placement with endpoints is the isolation option of the "
        "production-operations work, off by default.",
    )
    if endpoint_config is not None:
        acknowledge(
            endpoint_config,
            "AwsSolutions-SM2",
            "Volumes use SageMaker's AWS-managed encryption; a customer-managed KMS key is the isolation option of "
            "the production-operations work, and g5/p4d/p5 instance storage does not take one.",
        )


class InferenceComponentEndpoint(Construct):
    """One endpoint as an instance pool, and one inference component (with its own Model) per model.

    ``components`` maps each model's entry name to its ``CfnInferenceComponent``; ``models`` to its ``CfnModel``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id_: str,
        *,
        multi: MultiModelDeployment,
        role_arn: str,
        code_urls: Mapping[str, str | None],
    ) -> None:
        super().__init__(scope, construct_id_)
        endpoint = multi.endpoint
        scaling = (
            sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
                status="ENABLED", min_instance_count=multi.min_instances, max_instance_count=multi.max_instances
            )
            if multi.min_instances != multi.max_instances
            else None
        )
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT,
            instance_type=endpoint.instance_type,
            initial_instance_count=endpoint.instance_count,
            routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(routing_strategy=ROUTING_STRATEGY),
            managed_instance_scaling=scaling,
            volume_size_in_gb=endpoint.volume_size_gb,
        )
        # No model in the variant: the endpoint is an instance pool; SageMaker assumes the role for the components.
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self, "EndpointConfig", execution_role_arn=role_arn, production_variants=[variant]
        )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            endpoint_name=multi.deployment,
        )
        self.models: dict[str, sagemaker.CfnModel] = {}
        self.components: dict[str, sagemaker.CfnInferenceComponent] = {}
        self.adapter_components: dict[str, dict[str, sagemaker.CfnInferenceComponent]] = {}
        for model in multi.models:
            self._add_model(multi, model, role_arn, code_urls[model.name])
        _acknowledge_placement(next(iter(self.models.values())), self.endpoint_config)

    def _add_model(self, multi: MultiModelDeployment, model: ModelSpec, role_arn: str, code_url: str | None) -> None:
        """One model's Model and its inference component: accelerators, host memory, startup timeouts, copies."""
        part = construct_id(model.name)
        cfn_model = sagemaker.CfnModel(
            self,
            f"Model{part}",
            execution_role_arn=role_arn,
            primary_container=container_definition(model.config, code_url),
        )
        resolved = model.config.resolved
        component = sagemaker.CfnInferenceComponent(
            self,
            f"Component{part}",
            endpoint_name=self.endpoint.attr_endpoint_name,
            variant_name=VARIANT,
            inference_component_name=multi.inference_component_name(model),
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=cfn_model.attr_model_name,
                compute_resource_requirements=(
                    sagemaker.CfnInferenceComponent.InferenceComponentComputeResourceRequirementsProperty(
                        number_of_accelerator_devices_required=model.accelerators,
                        min_memory_required_in_mb=model.memory_mib,
                    )
                ),
                startup_parameters=sagemaker.CfnInferenceComponent.InferenceComponentStartupParametersProperty(
                    model_data_download_timeout_in_seconds=resolved.model_data_download_timeout,
                    container_startup_health_check_timeout_in_seconds=resolved.container_startup_health_check_timeout,
                ),
            ),
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=model.copies
            ),
        )
        _acknowledge_placement(cfn_model, None)
        self.models[model.name] = cfn_model
        self.components[model.name] = component
        self.adapter_components[model.name] = {
            adapter.name: self._add_adapter(multi, model, adapter, component) for adapter in model.config.adapters
        }

    def _add_adapter(
        self,
        multi: MultiModelDeployment,
        model: ModelSpec,
        adapter: Adapter,
        base: sagemaker.CfnInferenceComponent,
    ) -> sagemaker.CfnInferenceComponent:
        """An adapter inference component: the adapter's archive on the base component's copies (no compute of its
        own); SageMaker registers it with the base container's adapters API and routes requests naming it there."""
        base_name = multi.inference_component_name(model)
        component = sagemaker.CfnInferenceComponent(
            self,
            f"Adapter{construct_id(model.name)}{construct_id(adapter.name)}",
            endpoint_name=self.endpoint.attr_endpoint_name,
            inference_component_name=adapters.component_name(base_name, adapter),
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                base_inference_component_name=base_name,
                container=sagemaker.CfnInferenceComponent.InferenceComponentContainerSpecificationProperty(
                    artifact_url=f"s3://{multi.bucket_name}/{adapters.archive_key(adapter)}"
                ),
            ),
        )
        component.add_dependency(base)  # the base component must exist (and be in service) first
        return component


class MultiModelEndpointResources(Construct):
    """One Model (``Mode: MultiModel``, ``ModelDataUrl`` = the archives' prefix), its EndpointConfig and Endpoint."""

    def __init__(
        self,
        scope: Construct,
        construct_id_: str,
        *,
        multi: MultiModelDeployment,
        role_arn: str,
        rollback_alarm_names: list[str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id_)
        endpoint = multi.endpoint
        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=endpoint.image_uri, mode="MultiModel", model_data_url=multi.mme_s3_uri
            ),
        )
        # No startup timeouts: the container starts without a model; each loads on its first request, bounded by its
        # own option.model_loading_timeout.
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT,
            model_name=self.model.attr_model_name,
            instance_type=endpoint.instance_type,
            initial_instance_count=endpoint.instance_count,
            initial_variant_weight=1.0,
            volume_size_in_gb=endpoint.volume_size_gb,
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(self, "EndpointConfig", production_variants=[variant])
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            endpoint_name=multi.deployment,
            deployment_config=_deployment_config(endpoint, rollback_alarm_names or []),
        )
        _acknowledge_placement(self.model, self.endpoint_config)
