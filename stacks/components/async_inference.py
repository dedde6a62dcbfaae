"""Asynchronous inference and data capture: the endpoint config's AsyncInferenceConfig and DataCaptureConfig, the
optional notification topics, and the execution role's grants on the prefixes and topics SageMaker uses as it."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from lmi_deploy.config import DeploymentConfig
from stacks.components.bucket_prefix import BucketPrefix
from stacks.components.execution_role import ExecutionRole


class AsyncNotifications(Construct):
    """Topics SageMaker notifies of each finished async request (success) and each failed one (error).

    Encrypted with the deployment's key, else with the AWS-managed SNS key: SageMaker publishes as the execution
    role, an IAM principal of the account, which that key's policy admits through SNS.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, key: kms.IKey | None) -> None:
        super().__init__(scope, construct_id)
        master_key = key or kms.Alias.from_alias_name(self, "AwsManagedSnsKey", "alias/aws/sns")
        self.success = sns.Topic(
            self,
            "Success",
            display_name=f"lmi-deploy {config.deployment} async successes",
            enforce_ssl=True,
            master_key=master_key,
        )
        self.error = sns.Topic(
            self,
            "Error",
            display_name=f"lmi-deploy {config.deployment} async errors",
            enforce_ssl=True,
            master_key=master_key,
        )
        self.topic_arns = [self.success.topic_arn, self.error.topic_arn]

    def grant_publish(self, role: ExecutionRole) -> None:
        """SageMaker publishes each result's notification as the execution role."""
        role.allow("NotifyAsyncResults", ["sns:Publish"], self.topic_arns)


def grant_async_locations(role: ExecutionRole, config: DeploymentConfig) -> None:
    """Reading the requests from the async input prefix, writing responses (and failures) to the output prefix."""
    BucketPrefix(*config.async_locations["input"]).grant_read(
        role,
        "ReadAsyncRequests",
        "SageMaker reads each async request from this prefix as the execution role; request names vary.",
    )
    BucketPrefix(*config.async_locations["output"]).grant_write(
        role,
        "WriteAsyncResponses",
        "SageMaker writes each async response (and, under failures/, each error) to this prefix; the object names "
        "are generated per request.",
    )


def grant_data_capture(role: ExecutionRole, config: DeploymentConfig) -> None:
    """Writing captured requests and responses to the data-capture prefix."""
    BucketPrefix(*config.data_capture_location).grant_write(
        role,
        "WriteDataCapture",
        "SageMaker writes captured requests and responses to this prefix, in files named by endpoint, variant and "
        "time.",
    )


def async_inference_config(
    config: DeploymentConfig, notifications: AsyncNotifications | None, kms_key_id: str | None
) -> sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty:
    """Where responses and failures go, who is notified, and how many requests each instance takes at once."""
    return sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
        output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
            s3_output_path=config.async_output_s3_uri,
            s3_failure_path=config.async_failure_s3_uri,
            kms_key_id=kms_key_id,
            notification_config=sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                success_topic=notifications.success.topic_arn, error_topic=notifications.error.topic_arn
            )
            if notifications
            else None,
        ),
        client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
            max_concurrent_invocations_per_instance=config.async_max_concurrent_invocations
        )
        if config.async_max_concurrent_invocations
        else None,
    )


def data_capture_config(
    config: DeploymentConfig, kms_key_id: str | None
) -> sagemaker.CfnEndpointConfig.DataCaptureConfigProperty:
    """Requests and responses, sampled, as JSON lines under the bucket's data-capture/ prefix."""
    return sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
        enable_capture=True,
        initial_sampling_percentage=config.data_capture_percent,
        destination_s3_uri=config.data_capture_s3_uri,
        kms_key_id=kms_key_id,
        capture_options=[
            sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
            sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
        ],
        capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
            json_content_types=["application/json", "application/jsonlines"]
        ),
    )
