"""The two stacks of a multi-model deployment (composition only): shared artifacts, and the one endpoint.

``<deployment>-artifacts``: the bucket and repository every model shares (each model's weights under its own
``models/<model_id>/<revision>/``, MME archives under ``mme/<deployment>/``). ``<deployment>-endpoint``: the execution
role (each model's weights and code, nothing else), the log group, alarms and dashboard, and either inference
components (with autoscaling per component) or a multi-model endpoint (with the variant's autoscaling).
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lmi_deploy.adapters import ADAPTERS_FOLDER, component_name
from lmi_deploy.multi_model import MultiModelDeployment
from lmi_deploy.multi_render import RenderedMultiModel
from stacks.components.artifact_store import ArtifactStore
from stacks.components.autoscaling import EndpointAutoscaling
from stacks.components.bucket_prefix import BucketPrefix
from stacks.components.code_artifact import CodeArtifact
from stacks.components.component_autoscaling import ComponentAutoscaling
from stacks.components.execution_role import ExecutionRole
from stacks.components.image import published_image
from stacks.components.log_group import EndpointLogGroup
from stacks.components.model_access import grant_model
from stacks.components.monitoring import EndpointMonitoring
from stacks.components.multi_model_endpoint import (
    InferenceComponentEndpoint,
    MultiModelEndpointResources,
    construct_id,
)


class MultiModelArtifactsStack(Stack):
    def __init__(self, scope: Construct, construct_id_: str, *, multi: MultiModelDeployment, **kwargs: Any) -> None:
        super().__init__(scope, construct_id_, **kwargs)
        self.store = ArtifactStore(self, "Store", config=multi.endpoint)
        self.bucket = self.store.bucket
        self.repository = self.store.repository
        CfnOutput(self, "BucketName", value=self.bucket.bucket_name, description="Weights and code bucket")
        CfnOutput(
            self,
            "WeightsPrefixes",
            value=json.dumps({m.name: m.config.staged_weights[1] for m in multi.models}, sort_keys=True),
            description="Stage each model's weights here (scripts/stage_model.py does)",
        )
        if multi.mode == "mme":
            CfnOutput(self, "ModelArchivesPrefix", value=multi.mme_prefix, description="MME code archives")
        CfnOutput(self, "RepositoryUri", value=self.repository.repository_uri, description="Custom LMI images")


class MultiModelEndpointStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id_: str,
        *,
        multi: MultiModelDeployment,
        bucket: s3.IBucket,
        code: RenderedMultiModel,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id_, **kwargs)
        # Inference components: one code archive per model, each a CDK file asset (deterministic, so an unchanged
        # render replaces nothing). MME: the archives are staged under one prefix by scripts/stage_model.py.
        self.code: dict[str, CodeArtifact] = {}
        if multi.mode == "inference_components":
            for model in multi.models:
                if model.config.weights_delivery == "container":
                    self.code[model.name] = CodeArtifact(
                        self, f"Code{construct_id(model.name)}", tarball=code.model(model.name).tarball
                    )
        self.log_group_name = f"/aws/sagemaker/Endpoints/{multi.deployment}"
        self.log_group = EndpointLogGroup(self, "Logs", name=self.log_group_name)
        self.add_stack_dependency(Stack.of(bucket))
        self.execution_role = ExecutionRole(self, "ExecutionRole")
        self._grant(multi)
        self.monitoring = EndpointMonitoring(
            self, "Monitoring", config=multi.endpoint, log_group_name=self.log_group_name
        )
        self.component_autoscaling: dict[str, ComponentAutoscaling] = {}
        self.autoscaling: EndpointAutoscaling | None = None
        if multi.mode == "inference_components":
            self._inference_components(multi)
        else:
            self._multi_model_endpoint(multi, code)
        CfnOutput(self, "EndpointName", value=self.endpoint.attr_endpoint_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=f"lmi-deploy-{multi.deployment}")

    def _grant(self, multi: MultiModelDeployment) -> None:
        """Each model's code, weights and image, as a single-model endpoint grants them (the first model's under the
        same statement ids), the log group, and for an MME the prefix of its archives."""
        role = self.execution_role
        first, *others = multi.models
        grant_model(role, first.config, code=self.code.get(first.name), image=published_image(first.config))
        self.log_group.bind(role)
        for model in others:
            grant_model(
                role,
                model.config,
                code=self.code.get(model.name),
                image=published_image(model.config),
                name=model.name,
            )
        if any(m.config.adapters for m in multi.models):
            BucketPrefix(multi.bucket_name, f"{ADAPTERS_FOLDER}/").grant_read(
                role,
                "ReadAdapterArchives",
                "SageMaker downloads each adapter inference component's archive (staged by scripts/stage_model.py, "
                "keyed by the adapter's revision or content) as the endpoint's role.",
            )
        if multi.mode == "mme":
            BucketPrefix(multi.bucket_name, multi.mme_prefix).grant_read(
                role,
                "ReadModelArchives",
                "SageMaker downloads a model's archive from this deployment's MME prefix on the model's first "
                "request; the archive names carry their content hash.",
            )

    def _inference_components(self, multi: MultiModelDeployment) -> None:
        """The instance pool and one component per model, each scaled on its own when it may."""
        self.components = InferenceComponentEndpoint(
            self,
            "Endpoint",
            multi=multi,
            role_arn=self.execution_role.role.role_arn,
            code_urls={
                m.name: (self.code[m.name].s3_object_url if m.name in self.code else None) for m in multi.models
            },
        )
        self.endpoint = self.components.endpoint
        for cfn_model in self.components.models.values():
            cfn_model.node.add_dependency(self.execution_role.policy)  # CreateModel checks the role can read
        self.components.endpoint_config.node.add_dependency(self.execution_role.policy)
        for model in multi.models:
            if model.autoscaled:
                self.component_autoscaling[model.name] = ComponentAutoscaling(
                    self,
                    f"Autoscaling{construct_id(model.name)}",
                    endpoint=multi.endpoint,
                    model=model,
                    component=self.components.components[model.name],
                    component_name=multi.inference_component_name(model),
                )
        adapter_components = {
            m.name: {a.name: component_name(multi.inference_component_name(m), a) for a in m.config.adapters}
            for m in multi.models
            if m.config.adapters
        }
        if adapter_components:
            CfnOutput(
                self,
                "AdapterInferenceComponents",
                value=json.dumps(adapter_components, sort_keys=True),
                description="InferenceComponentName of each adapter (invoke.py --inference-component NAME)",
            )
        CfnOutput(
            self,
            "InferenceComponents",
            value=json.dumps({m.name: multi.inference_component_name(m) for m in multi.models}, sort_keys=True),
            description="InferenceComponentName of each model (invoke.py --inference-component NAME)",
        )

    def _multi_model_endpoint(self, multi: MultiModelDeployment, code: RenderedMultiModel) -> None:
        """One MultiModel container over the archives' prefix, scaled as a single-model endpoint's variant."""
        self.mme = MultiModelEndpointResources(
            self,
            "Endpoint",
            multi=multi,
            role_arn=self.execution_role.role.role_arn,
            rollback_alarm_names=[alarm.alarm_name for alarm in self.monitoring.rollback_alarms],
        )
        self.endpoint = self.mme.endpoint
        self.mme.model.node.add_dependency(self.execution_role.policy)
        if multi.endpoint.autoscaling_max_instances:
            self.autoscaling = EndpointAutoscaling(self, "Autoscaling", config=multi.endpoint)
            self.autoscaling.node.add_dependency(self.endpoint)
        CfnOutput(self, "ModelArchivesS3Prefix", value=multi.mme_s3_uri)
        CfnOutput(
            self,
            "TargetModels",
            value=json.dumps({m.name: m.target_model for m in code.models}, sort_keys=True),
            description="TargetModel of each model (invoke.py --target-model NAME)",
        )
