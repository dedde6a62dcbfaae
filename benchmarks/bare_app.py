#!/usr/bin/env python3
"""Baseline for benchmarks/synth_time.py: a bare CDK app with the same five resources, no config, no checks.

Bucket, role, Model, EndpointConfig, Endpoint, with literal values: what a hand-written app would synthesize.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker

app = cdk.App()
stack = cdk.Stack(app, "bare-endpoint", env=cdk.Environment(account="123456789012", region="us-east-1"))
bucket = s3.Bucket(stack, "Bucket")
role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
bucket.grant_read(role)
model = sagemaker.CfnModel(
    stack,
    "Model",
    execution_role_arn=role.role_arn,
    primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
        image="763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.21.0-fastertransformer5.3.0-cu117",
        model_data_url=bucket.s3_url_for_object("code/model.tar.gz"),
    ),
)
config = sagemaker.CfnEndpointConfig(
    stack,
    "EndpointConfig",
    production_variants=[
        sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name="AllTraffic",
            model_name=model.attr_model_name,
            instance_type="ml.g5.12xlarge",
            initial_instance_count=1,
            model_data_download_timeout_in_seconds=600,
            container_startup_health_check_timeout_in_seconds=600,
        )
    ],
)
sagemaker.CfnEndpoint(stack, "Endpoint", endpoint_config_name=config.attr_endpoint_config_name)
app.synth()
