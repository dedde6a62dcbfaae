"""Values derived from the config's fields: the only place decisions about names, locations and timeouts are made."""

from __future__ import annotations

from functools import cached_property

from pydantic import PrivateAttr

from lmi_deploy import adapters as lora_adapters
from lmi_deploy import containers, instances, model_facts, request_limits
from lmi_deploy.rules.derive import Resolved
from lmi_deploy.runtime.versions import STREAM_CONTENT, Release
from lmi_deploy.settings.operations import OperationsSettings


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


class DerivedValues(OperationsSettings):
    """Names of the stacks, bucket and repository; S3 locations; image, streaming and timeout decisions; what the
    rules resolved (set by the config's validator)."""

    _resolved: Resolved = PrivateAttr()
    _facts: model_facts.ModelFacts | None = PrivateAttr(default=None)

    @property
    def lora_enabled(self) -> bool:
        """Whether the container serves LoRA adapters (``option.enable_lora``)."""
        return bool(self.adapters) or self.lora is not None

    @cached_property
    def adapter_facts(self) -> tuple[lora_adapters.AdapterFacts | None, ...]:
        """Each adapter's ``adapter_config.json`` as read here (None where it cannot be: S3, a Hub one not cached)."""
        return tuple(lora_adapters.read_facts(adapter) for adapter in self.adapters)

    @cached_property
    def lora_plan(self) -> lora_adapters.LoraPlan:
        return lora_adapters.plan(self.adapters, self.lora, self.adapter_facts, self.lmi_version)

    @property
    def instance(self) -> instances.InstanceType:
        instance = instances.get(self.instance_type)
        assert instance is not None  # checked by the validator
        return instance

    @property
    def autoscaling(self) -> bool:
        return self.autoscaling_max_instances is not None

    @property
    def autoscaling_floor(self) -> int:
        """The autoscaling target's minimum capacity."""
        return self.instance_count if self.autoscaling_min_instances is None else self.autoscaling_min_instances

    @property
    def minimum_instances(self) -> int:
        """The fewest instances the endpoint may run: the lowest autoscaling floor (schedules too), else
        ``instance_count``."""
        if not self.autoscaling:
            return self.instance_count
        return min([self.autoscaling_floor, *(s.min_instances for s in self.autoscaling_schedules)])

    @property
    def resolved(self) -> Resolved:
        """The values actually deployed (``auto`` derived), with notes, warnings and the memory estimate."""
        return self._resolved

    @property
    def facts(self) -> model_facts.ModelFacts | None:
        return self._facts

    @property
    def resolved_model_type(self) -> str:
        """HF model_type: from config.json, else the model_type setting, else the model's name; "" if unknown."""
        if self._facts is not None and self._facts.model_type:
            return self._facts.model_type
        return self.model_type or model_facts.model_type_from_name(self.model_id)

    @property
    def artifacts_stack_name(self) -> str:
        return f"{self.deployment}-artifacts"

    @property
    def endpoint_stack_name(self) -> str:
        return f"{self.deployment}-endpoint"

    @property
    def bucket_name(self) -> str:
        """The artifacts bucket; known at synth time so that serving.properties can name the weights."""
        return f"{self.deployment}-{self.account}-{self.region}"

    @property
    def repository_name(self) -> str:
        """ECR repository for custom or mirrored LMI images of this deployment."""
        return f"lmi-deploy/{self.deployment}"

    @property
    def log_group_name(self) -> str:
        """Where SageMaker writes the endpoint's logs (a fixed name, so that the key policy can name it)."""
        return f"/aws/sagemaker/Endpoints/{self.deployment}"

    @property
    def kms_key_created(self) -> bool:
        return self.kms_key == "create"

    @property
    def kms_key_arn(self) -> str | None:
        """The existing key's ARN (None when there is none or lmi-deploy creates it)."""
        return self.kms_key if self.kms_key and self.kms_key != "create" else None

    @property
    def endpoint_reads_hub_token(self) -> bool:
        """Whether the endpoint gets the Hub token secret: only a rendered handler can fetch it (LMI's built-in
        handlers read a token only from the HF_TOKEN variable, which would put it in the Model's definition), and
        only a container with network and credentials (not network_isolation)."""
        return bool(self.hf_token_secret) and self.handler == "custom" and not self.network_isolation

    @property
    def asynchronous(self) -> bool:
        return self.inference_mode == "async"

    @property
    def async_output_s3_uri(self) -> str:
        """Where an async endpoint writes responses; its failures go to ``failures/`` under it."""
        path = self.async_output_s3_path or f"s3://{self.bucket_name}/async-output/"
        return path if path.endswith("/") else path + "/"

    @property
    def async_failure_s3_uri(self) -> str:
        return f"{self.async_output_s3_uri}failures/"

    @property
    def async_input_s3_uri(self) -> str:
        """Where callers put async requests (InvokeEndpointAsync's InputLocation); SageMaker reads them as the role."""
        return f"s3://{self.bucket_name}/async-input/"

    @property
    def data_capture_s3_uri(self) -> str:
        return f"s3://{self.bucket_name}/data-capture/"

    @property
    def async_locations(self) -> dict[str, tuple[str, str]]:
        """(bucket, prefix) of the async input, output and failure locations."""
        return {
            name: _bucket_and_prefix(uri)
            for name, uri in (
                ("input", self.async_input_s3_uri),
                ("output", self.async_output_s3_uri),
                ("failures", self.async_failure_s3_uri),
            )
        }

    @property
    def data_capture_location(self) -> tuple[str, str]:
        return _bucket_and_prefix(self.data_capture_s3_uri)

    @property
    def data_capture_percent(self) -> int:
        return self.data_capture_sampling_percent or 100

    @property
    def streaming_refusal(self) -> str | None:
        """Why the rendered handler refuses ``"stream": true``, or None when it streams: an async endpoint writes
        whole responses to S3 (and has no InvokeEndpointWithResponseStream); before 0.22.1 djl_python has no
        ``Output.add_stream_content`` (the request would fail with a 424)."""
        if self.asynchronous:
            return "this endpoint is asynchronous, responses go whole to S3"
        if not Release(self.lmi_version).has(STREAM_CONTENT):
            return f"LMI {self.lmi_version} cannot stream (Output.add_stream_content arrives in {STREAM_CONTENT.since})"
        return None

    @property
    def request_timeout_s(self) -> int:
        """The per-request deadline the handler enforces (``option.request_timeout``)."""
        return self.request_timeout or request_limits.default_request_timeout(self.asynchronous)

    @property
    def streaming(self) -> bool:
        """Whether handlers may stream a response (see :attr:`streaming_refusal`)."""
        return self.streaming_refusal is None

    @property
    def volume_kms_key(self) -> bool:
        """Whether the EndpointConfig takes the key for its volume: SageMaker refuses KmsKeyId on instance types
        with NVMe instance storage only (the same families that refuse VolumeSizeInGB); those encrypt it in hardware."""
        return self.kms_key is not None and self.instance.supports_volume_size

    @property
    def staged_weights(self) -> tuple[str, str]:
        """Where the weights are staged: the artifacts bucket's ``models/<model_id>/<revision>/``, or a given s3://."""
        if self.model_id.startswith("s3://"):
            bucket, _, prefix = self.model_id.removeprefix("s3://").partition("/")
            return bucket, prefix.rstrip("/") + "/" if prefix else ""
        return self.bucket_name, f"models/{self.model_id}/{self.model_revision}/"

    @property
    def partitioned_prefix(self) -> str:
        """Where ahead-of-time partitioning writes for this TP degree."""
        return f"{self.staged_weights[1]}partitioned/tp{self.resolved.tensor_parallel_degree}/"

    @property
    def weights_bucket_and_prefix(self) -> tuple[str, str]:
        """What the endpoint loads: the staged weights, or their partitioned copy when ``partitioned``."""
        bucket, staged = self.staged_weights
        return bucket, self.partitioned_prefix if self.partitioned else staged

    @property
    def weights_s3_uri(self) -> str:
        bucket, prefix = self.weights_bucket_and_prefix
        return f"s3://{bucket}/{prefix}"

    @cached_property
    def image_uri(self) -> str:
        return containers.image_uri(self.engine, self.lmi_version, self.region)

    @property
    def image_tag(self) -> str:
        return self.image_uri.rsplit(":", 1)[1]

    @property
    def mirror_image_uri(self) -> str:
        """Where image=mirror copies the LMI image: this deployment's repository, same tag, same registry domain."""
        domain = self.image_uri.split("/", 1)[0].split(".", 1)[1]  # dkr.ecr.<region>.amazonaws.com[.cn]
        return f"{self.account}.{domain}/{self.repository_name}:{self.image_tag}"

    @property
    def image_account(self) -> str:
        """The AWS account that publishes the image (``<account>.dkr.ecr.<region>...``)."""
        return self.image_uri.split(".", 1)[0]

    @property
    def image_repository(self) -> str:
        return self.image_uri.split("/", 1)[1].split(":", 1)[0]
