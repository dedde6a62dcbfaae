"""The two stacks of a multi-model deployment (composition only): shared artifacts, and the one endpoint.

``<deployment>-artifacts``: the bucket and repository every model shares (each model's weights under its own
``models/<model_id>/<revision>/``, MME archives under ``mme/<deployment>/``). ``<deployment>-endpoint``: the execution
role (each model's weights and code, nothing else), the log group, alarms and dashboard, and either inference
components (with autoscaling per component) or a multi-model endpoint (with the variant's autoscaling).
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from lmi_deploy.multi_model import MultiModelDeployment
from lmi_deploy.multi_render import RenderedMultiModel
from stacks.components.artifact_store import ArtifactStore
from stacks.components.autoscaling import EndpointAutoscaling
from stacks.components.component_autoscaling import ComponentAutoscaling
from stacks.components.execution_role import ExecutionRole
from stacks.components.monitoring import EndpointMonitoring
from stacks.components.multi_model_endpoint import (
    InferenceComponentEndpoint,
    MultiModelEndpointResources,
    construct_id,
)
from stacks.components.nag import acknowledge


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
        endpoint = multi.endpoint
        # Inference components: one code archive per model, each a CDK file asset (deterministic, so an unchanged
        # render replaces nothing). MME: the archives are staged under one prefix by scripts/stage_model.py.
        self.code: dict[str, s3_assets.Asset] = {}
        if multi.mode == "inference_components":
            for model in multi.models:
                if model.config.weights_delivery == "container":
                    self.code[model.name] = s3_assets.Asset(
                        self, f"Code{construct_id(model.name)}", path=str(code.model(model.name).tarball)
                    )
        self.log_group_name = f"/aws/sagemaker/Endpoints/{multi.deployment}"
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=self.log_group_name,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.add_stack_dependency(Stack.of(bucket))
        first = multi.models[0]
        first_code = self.code.get(first.name)
        self.execution_role = ExecutionRole(
            self,
            "ExecutionRole",
            config=first.config,
            code_bucket=first_code.bucket if first_code else None,
            code_object_key=first_code.s3_object_key if first_code else None,
            log_group_name=self.log_group_name,
            image_repository_arn=self.format_arn(
                service="ecr",
                account=first.config.image_account,
                resource="repository",
                resource_name=first.config.image_repository,
            ),
        )
        self._grant_other_models(multi)
        self.monitoring = EndpointMonitoring(self, "Monitoring", config=endpoint, log_group_name=self.log_group_name)
        role_arn = self.execution_role.role.role_arn
        self.component_autoscaling: dict[str, ComponentAutoscaling] = {}
        self.autoscaling: EndpointAutoscaling | None = None
        if multi.mode == "inference_components":
            self.components = InferenceComponentEndpoint(
                self,
                "Endpoint",
                multi=multi,
                role_arn=role_arn,
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
                        endpoint=endpoint,
                        model=model,
                        component=self.components.components[model.name],
                        component_name=multi.inference_component_name(model),
                    )
            CfnOutput(
                self,
                "InferenceComponents",
                value=json.dumps({m.name: multi.inference_component_name(m) for m in multi.models}, sort_keys=True),
                description="InferenceComponentName of each model (invoke.py --inference-component NAME)",
            )
        else:
            self.mme = MultiModelEndpointResources(
                self,
                "Endpoint",
                multi=multi,
                role_arn=role_arn,
                rollback_alarm_names=[alarm.alarm_name for alarm in self.monitoring.rollback_alarms],
            )
            self.endpoint = self.mme.endpoint
            self.mme.model.node.add_dependency(self.execution_role.policy)
            if endpoint.autoscaling_max_instances:
                self.autoscaling = EndpointAutoscaling(self, "Autoscaling", config=endpoint)
                self.autoscaling.node.add_dependency(self.endpoint)
            CfnOutput(self, "ModelArchivesS3Prefix", value=multi.mme_s3_uri)
            CfnOutput(
                self,
                "TargetModels",
                value=json.dumps({m.name: m.target_model for m in code.models}, sort_keys=True),
                description="TargetModel of each model (invoke.py --target-model NAME)",
            )
        CfnOutput(self, "EndpointName", value=self.endpoint.attr_endpoint_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=f"lmi-deploy-{multi.deployment}")

    def _grant_other_models(self, multi: MultiModelDeployment) -> None:
        """The first model's weights and code are the ExecutionRole's own; add the others', and the MME archives."""
        stack = Stack.of(self)
        policy = self.execution_role.policy
        partition = "<AWS::Partition>"  # how cdk-nag prints the partition pseudo-parameter in finding ids
        granted = {multi.models[0].config.weights_bucket_and_prefix}
        images = {(multi.models[0].config.image_account, multi.models[0].config.image_repository)}
        for model in multi.models[1:]:
            part = construct_id(model.name)
            asset = self.code.get(model.name)
            if asset is not None:
                policy.add_statements(
                    iam.PolicyStatement(
                        sid=f"ReadCode{part}",
                        actions=["s3:GetObject"],
                        resources=[asset.bucket.arn_for_objects(asset.s3_object_key)],
                    )
                )
            bucket_name, prefix = model.config.weights_bucket_and_prefix
            if (bucket_name, prefix) not in granted:
                granted.add((bucket_name, prefix))
                policy.add_statements(
                    iam.PolicyStatement(
                        sid=f"ReadWeights{part}",
                        actions=["s3:GetObject"],
                        resources=[f"arn:{stack.partition}:s3:::{bucket_name}/{prefix}*"],
                    ),
                    iam.PolicyStatement(
                        sid=f"ListWeights{part}",
                        actions=["s3:ListBucket"],
                        resources=[f"arn:{stack.partition}:s3:::{bucket_name}"],
                        conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
                    ),
                )
                acknowledge(
                    policy,
                    f"AwsSolutions-IAM5[Resource::arn:{partition}:s3:::{bucket_name}/{prefix}*]",
                    f"Read-only access to exactly the weights prefix of model {model.name}; the file names vary.",
                )
            image = (model.config.image_account, model.config.image_repository)
            if image not in images:
                images.add(image)
                policy.add_statements(
                    iam.PolicyStatement(
                        sid=f"PullImage{part}",
                        actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                        resources=[
                            stack.format_arn(
                                service="ecr", account=image[0], resource="repository", resource_name=image[1]
                            )
                        ],
                    )
                )
        if multi.mode == "mme":
            archives = f"{multi.bucket_name}/{multi.mme_prefix}*"
            policy.add_statements(
                iam.PolicyStatement(
                    sid="ReadModelArchives",
                    actions=["s3:GetObject"],
                    resources=[f"arn:{stack.partition}:s3:::{archives}"],
                )
            )
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::arn:{partition}:s3:::{archives}]",
                "SageMaker downloads a model's archive from this deployment's MME prefix on the model's first "
                "request; the archive names carry their content hash.",
            )
