"""The one deployment config: typed, frozen, validated once, built from defaults < file < context values.

Only ``app.py`` and the scripts' ``main`` functions call :func:`load_config`; everything downstream (templates,
stacks) receives the resulting :class:`DeploymentConfig` and reads derived values from it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lmi_deploy import containers, instances, model_facts, request_limits
from lmi_deploy.containers import ENGINES, Engine
from lmi_deploy.errors import UNREADABLE_INPUT, ConfigError
from lmi_deploy.rules import settings as setting_rules
from lmi_deploy.rules.check import check_deployment
from lmi_deploy.rules.derive import Resolved
from lmi_deploy.runtime.versions import STREAM_CONTENT, Release

Dtype = Literal["fp32", "fp16", "bf16", "int8", "auto"]
Timeout = Annotated[int, Field(ge=60, le=3600)]

_DEPLOYMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
_MAX_DEPLOYMENT_NAME = 32  # keeps "<deployment>-<account>-<region>" within S3's 63-character bucket names


class ScalingSchedule(BaseModel):
    """One scheduled action of Application Auto Scaling: from ``schedule`` on, scale between these bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="Names the scheduled action.")
    schedule: str = Field(description="cron(m h dom mon dow year), rate(n unit) or at(yyyy-mm-ddThh:mm:ss).")
    min_instances: int = Field(ge=0, le=100)
    max_instances: int = Field(ge=1, le=100)
    timezone: str = Field("UTC", description="IANA time zone the schedule is read in.")


def _json_if_text(value: Any) -> Any:
    """A list setting given as text (``-c key=[...]``): JSON, or for lists of names a comma-separated string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"is not valid JSON ({error.msg})") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def slug(model_id: str) -> str:
    """Deployment name derived from a model id: ``google/flan-t5-xxl`` -> ``flan-t5-xxl``."""
    last = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9]+", "-", last).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}" if name else "model"
    return name[:_MAX_DEPLOYMENT_NAME].rstrip("-")


class DeploymentConfig(BaseModel):
    """Everything that decides what gets deployed. Defaults reproduce the seed deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, populate_by_name=True)

    deployment: str = Field(
        "", description="Name of the deployment: stack names, rendered folder, bucket. Default: slug of model_id."
    )
    model_id: str = Field("google/flan-t5-xxl", min_length=1, description="Hugging Face Hub id, or s3:// prefix.")
    model_revision: str = Field("main", min_length=1, description="Hub revision; part of the weights' S3 prefix.")
    model_type: str = Field("", description="HF model_type (t5, gpt2, ...). Default: inferred from model_id.")
    model_config_path: str | None = Field(
        None,
        alias="model_config",
        description="config.json (or model folder) to read model facts from. Default: local folder, bundled, Hub.",
    )
    engine: Engine = Field(Engine.FASTER_TRANSFORMER, description="LMI engine; names are case-insensitive.")
    lmi_version: str = Field(
        "", description="LMI/DJL container version. Default: 0.21.0 for FasterTransformer, else the newest."
    )
    handler: Literal["custom", "builtin"] = Field(
        "custom",
        description="custom: rendered model.py; builtin: the engine's no-code entryPoint. Default: custom where the "
        "engine offers it (FasterTransformer, DeepSpeed, Accelerate), else builtin.",
    )
    tensor_parallel_degree: Annotated[int, Field(ge=1)] | Literal["auto", "max"] = Field(
        4, description="Accelerators per model copy. Default: 4 for FasterTransformer (the seed), else auto."
    )
    dtype: Dtype = Field(
        "fp32", description="Weights/compute precision. Default: fp32 for FasterTransformer (the seed), else auto."
    )
    max_sequence_length: int | None = Field(None, ge=16, description="Input + output tokens per sequence.")
    max_batch_size: int | None = Field(None, ge=1, le=1024, description="Sequences served at once.")
    weights_delivery: Literal["container", "sagemaker"] = Field(
        "container",
        description="container: the LMI container downloads the staged prefix (s5cmd); sagemaker: SageMaker places "
        "it under /opt/ml/model before start (ModelDataSource S3Prefix), settings go in environment variables.",
    )
    partitioned: bool = Field(
        False,
        description="Load the ahead-of-time partitioned checkpoint (scripts/partition_model.py) from "
        "<weights prefix>/partitioned/tp<N>/ instead of converting at startup. FasterTransformer and DeepSpeed.",
    )
    kv_cache: Literal["static", "dynamic"] | None = Field(
        None,
        description="Accelerate custom handler: static = a static KV cache decode loop (checked against generate() "
        "at load), dynamic = plain generate(). Default static.",
    )
    cuda_graphs: bool | None = Field(
        None, description="Accelerate custom handler, kv_cache=static: replay one CUDA graph per token. Default true."
    )
    compile: bool | None = Field(
        None,
        description="Accelerate custom handler, kv_cache=static: torch.compile the decode step at load (fuses small "
        "kernels; one compilation with dynamic shapes for every bucket, none on requests). Default true.",
    )
    fuse_projections: bool | None = Field(
        None,
        description="Accelerate custom handler, kv_cache=static: one matrix for the decoder's q|k|v and for its "
        "gated-FFN input projections (fewer, wider matrix-vector products). Default true.",
    )
    fast_load: bool | None = Field(
        None,
        description="Accelerate custom handler: read safetensors shards straight into the GPU when the model fits "
        "one. Default true.",
    )
    instance_type: str = Field("ml.g5.12xlarge", description="SageMaker instance type.")
    instance_count: int = Field(1, ge=1, le=100, description="Instances behind the endpoint.")
    model_data_download_timeout: Timeout | Literal["auto"] = Field(
        "auto", description="ModelDataDownloadTimeoutInSeconds; auto derives it from the weights' size."
    )
    container_startup_health_check_timeout: Timeout | Literal["auto"] = Field(
        "auto", description="ContainerStartupHealthCheckTimeoutInSeconds; auto derives it from size and compile time."
    )
    model_loading_timeout: Timeout | None = Field(
        None, description="option.model_loading_timeout (s). Default: the startup timeout."
    )
    volume_size_gb: int | None = Field(None, ge=1, le=512, description="VolumeSizeInGB, on families with EBS only.")
    autoscaling_max_instances: int | None = Field(
        None, ge=1, le=100, description="Scale between instance_count and this (target tracking); unset: fixed size."
    )
    autoscaling_min_instances: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Floor of autoscaling. Default: instance_count. 0 (scale to zero) only for async endpoints.",
    )
    autoscaling_schedules: tuple[ScalingSchedule, ...] = Field(
        (),
        description="Scheduled actions that change the autoscaling bounds (e.g. fewer instances at night).",
    )
    autoscaling_target_invocations: int = Field(
        4, ge=1, description="Target SageMakerVariantInvocationsPerInstance (per minute) for autoscaling."
    )
    autoscaling_scale_in_cooldown: int = Field(600, ge=0, le=3600, description="Seconds between scale-ins.")
    autoscaling_scale_out_cooldown: int = Field(120, ge=0, le=3600, description="Seconds between scale-outs.")
    image: Literal["lmi", "custom", "mirror"] = Field(
        "lmi",
        description="lmi: the AWS-published LMI image; custom: built from dockerfile_dir FROM it (a CDK image asset); "
        "mirror: copied into the artifacts stack's ECR repository.",
    )
    dockerfile_dir: str | None = Field(
        None,
        description="image=custom: a folder whose Dockerfile starts FROM ${BASE_IMAGE} (the LMI image, passed as a "
        "build argument). Relative to the deployment file when given in one.",
    )
    vpc_subnet_ids: tuple[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")], ...] = Field(
        (), max_length=16, description="Private subnets the endpoint's instances attach to (Model VpcConfig)."
    )
    vpc_security_group_ids: tuple[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")], ...] = Field(
        (), max_length=5, description="Security groups of the endpoint. Default with subnets: one created here."
    )
    vpc_id: str | None = Field(
        None,
        pattern=r"^vpc-[0-9a-f]{8,17}$",
        description="The subnets' VPC, for the security group lmi-deploy creates when none is given.",
    )
    network_isolation: bool = Field(
        False, description="EnableNetworkIsolation: the container makes no network calls and gets no credentials."
    )
    kms_key: str | None = Field(
        None,
        description="Customer-managed KMS key for the bucket, volumes, logs, topics and outputs: 'create' (a new key "
        "with rotation, in the artifacts stack) or an existing key's ARN. Default: AWS-managed encryption.",
    )
    hf_token_secret: str | None = Field(
        None,
        description="Secrets Manager secret (name or ARN) holding the Hugging Face Hub token: staging reads it, and a "
        "custom handler fetches it at start. Never the token itself.",
    )
    inference_mode: Literal["realtime", "async"] = Field(
        "realtime",
        description="realtime: InvokeEndpoint answers in the call; async: InvokeEndpointAsync queues the request "
        "(input in S3) and SageMaker writes the response to async_output_s3_path (AsyncInferenceConfig).",
    )
    async_output_s3_path: str | None = Field(
        None, description="async: where responses go (failures under failures/). Default: <bucket>/async-output/."
    )
    async_notifications: bool = Field(
        False, description="async: create encrypted SNS topics that SageMaker notifies of each success and error."
    )
    async_max_concurrent_invocations: int | None = Field(
        None, ge=1, le=1000, description="async: requests SageMaker sends each instance at once. Default: SageMaker's."
    )
    autoscaling_target_backlog_per_instance: int = Field(
        5, ge=1, description="async autoscaling: target ApproximateBacklogSizePerInstance (queued requests)."
    )
    request_timeout: int | None = Field(
        None,
        ge=1,
        le=3600,
        description="Seconds one request may generate before the handler stops it (504). Default: SageMaker's "
        "invocation timeout, 60 (realtime) or 3600 (async).",
    )
    data_capture: bool = Field(False, description="Capture requests and responses to <bucket>/data-capture/.")
    data_capture_sampling_percent: int | None = Field(
        None, ge=1, le=100, description="Share of requests captured. Default with data_capture: 100."
    )
    alarm_email: str | None = Field(
        None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="E-mail subscribed to the alarm topic."
    )
    alarm_model_latency_p99_ms: int = Field(
        30_000, ge=1, description="p99 ModelLatency (ms) above which the latency alarm fires (and updates roll back)."
    )
    alarm_no_healthy_instances_minutes: int = Field(
        5,
        ge=1,
        le=60,
        description="Minutes in a row without any instance of the endpoint reporting its metrics before the "
        "no-healthy-instances alarm fires.",
    )
    update_strategy: Literal["all-at-once", "canary", "linear"] = Field(
        "all-at-once", description="Blue/green traffic shifting of an update; rolls back on the error/latency alarms."
    )
    update_step_percent: int = Field(10, ge=1, le=50, description="Canary size / linear step, % of capacity.")
    update_wait_seconds: int = Field(600, ge=0, le=3600, description="Baking time between traffic shifts.")
    account: str = Field("000000000000", description="AWS account the stacks are for (12 digits).")
    bootstrap_version_rule: bool = Field(
        True, description="Check the CDK bootstrap version on deploy; the local emulator turns it off."
    )
    region: str = Field("us-east-1", description="AWS region (its image must exist there).")

    _resolved: Resolved = PrivateAttr()
    _facts: model_facts.ModelFacts | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _derive_deployment_name(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if not data.get("deployment"):
            data = {**data, "deployment": slug(str(data.get("model_id") or cls.model_fields["model_id"].default))}
        engine = containers.ENGINE_ALIASES.get(str(data.get("engine", "")).strip().lower())
        if engine is not None and engine is not Engine.FASTER_TRANSFORMER:
            # The seed's TP4/fp32 are FasterTransformer's; other engines derive both unless told.
            data = {"tensor_parallel_degree": "auto", "dtype": "auto", **data}
            if not data.get("handler") and ENGINES[engine].custom_template is None:
                data["handler"] = "builtin"  # rolling-batch and compiled engines: no-code only
        return data

    @field_validator("lmi_version", mode="after")
    @classmethod
    def _default_version(cls, value: str, info: ValidationInfo) -> str:
        if value:
            return value
        engine = info.data.get("engine")
        if engine is None:
            return value
        if engine is Engine.FASTER_TRANSFORMER:
            return "0.21.0"  # the seed's container
        return containers.versions(engine)[-1]

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_case_insensitive(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower()
            if key in containers.ENGINE_ALIASES:
                return containers.ENGINE_ALIASES[key]
            allowed = ", ".join(e.value for e in Engine)
            raise ValueError(f"unknown engine; available engines: {allowed}")
        return value

    @field_validator("vpc_subnet_ids", "vpc_security_group_ids", mode="before")
    @classmethod
    def _ids_from_text(cls, value: Any) -> Any:
        return _json_if_text(value)

    @field_validator("autoscaling_schedules", mode="before")
    @classmethod
    def _schedules_from_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [value]
        return _json_if_text(value)

    @field_validator("account")
    @classmethod
    def _account_id(cls, value: str) -> str:
        if not re.fullmatch(r"\d{12}", value):
            raise ValueError("must be a 12-digit AWS account id")
        return value

    @field_validator("deployment")
    @classmethod
    def _deployment_name(cls, value: str) -> str:
        if not _DEPLOYMENT_NAME.match(value):
            raise ValueError(
                f"must be 2-{_MAX_DEPLOYMENT_NAME} characters of a-z, 0-9 and '-', "
                "starting with a letter (it names the stacks and the S3 bucket)"
            )
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> DeploymentConfig:
        """Every rule of the registry (lmi_deploy/rules/) on the parsed fields; errors become one line each."""
        context = info.context or {}
        facts, note = context.get("facts"), context.get("facts_note", "model facts were not looked up")
        self._facts = facts
        self._resolved = check_deployment(self, facts, note)
        if self._resolved.errors:
            raise ValueError("\n".join(str(e) for e in self._resolved.errors))
        return self

    # ---- derived values: the only place decisions about names, locations and timeouts are made ----

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


# Context keys that belong to the CDK itself, never to a deployment.
_CDK_CONTEXT_KEYS = {"config", "acknowledged-issue-numbers"}


# Keys someone might use to put a token itself into a deployment: refused with a pointer to hf_token_secret.
_TOKEN_KEYS = {"hf_token", "hugging_face_hub_token", "huggingface_token", "hub_token", "token", "hf_api_token"}


def _is_cdk_key(key: str) -> bool:
    return key in _CDK_CONTEXT_KEYS or ":" in key or key.startswith("@")


def read_deployment_file(path: str | Path) -> dict[str, Any]:
    """A deployment YAML file as a mapping, or a ConfigError naming the file and what is wrong with it."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{UNREADABLE_INPUT} deployment file {file} does not exist; see deployments/ for examples"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{UNREADABLE_INPUT} deployment file {file} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{UNREADABLE_INPUT} deployment file {file} must hold a mapping of settings, not a {type(data).__name__}"
        )
    return data


def load_config(
    context: Mapping[str, Any] | None = None,
    *,
    environment_defaults: Mapping[str, Any] | None = None,
) -> DeploymentConfig:
    """Build the config from: built-in defaults < environment defaults < ``config`` file < other context values.

    ``context`` is the CDK context (or the scripts' ``-c key=value`` pairs); its ``config`` key names a deployment
    file. ``environment_defaults`` are values read from the environment (e.g. account and region of the
    credentials). Raises :class:`ConfigError` with one line per problem.
    """
    context = dict(context or {})
    values: dict[str, Any] = {k: v for k, v in (environment_defaults or {}).items() if v not in (None, "")}
    if context.get("config"):
        file_values = read_deployment_file(context["config"])
        # Paths in a deployment file are relative to that file ("a config.json next to it").
        for key in ("model_config", "dockerfile_dir"):
            if isinstance(file_values.get(key), str):
                relative = Path(context["config"]).parent / file_values[key]
                file_values[key] = str(relative) if relative.exists() else file_values[key]
        values.update(file_values)
        source = f" in {context['config']}"
    else:
        file_values, source = {}, ""
    values.update({k: v for k, v in context.items() if not _is_cdk_key(k)})
    facts, facts_note = model_facts.find(
        str(values.get("model_id") or DeploymentConfig.model_fields["model_id"].default),
        str(values.get("model_revision") or DeploymentConfig.model_fields["model_revision"].default),
        str(values["model_config"]) if values.get("model_config") else None,
    )
    try:
        return DeploymentConfig.model_validate(values, context={"facts": facts, "facts_note": facts_note})
    except ValidationError as error:
        raise ConfigError(_describe_all(error.errors(), set(file_values) - set(context), source)) from None


def _describe_all(errors: list[Any], from_file: set[str], file_source: str) -> str:
    """One line per bad key (a value failing every branch of a union is one problem, not one per branch)."""
    lines: dict[str, str] = {}
    for error in errors:
        loc = error["loc"]
        key = str(loc[0]) if loc else ""
        if len(loc) > 1 and isinstance(loc[1], int):  # items of a list setting are problems of their own
            key = ".".join(map(str, loc))
        line = _describe(error, from_file, file_source)
        if key and key in lines and error["type"] != "extra_forbidden":
            lines[key] += " or " + str(error["msg"]).removeprefix("Value error, ").lower()
        else:
            lines[key or line] = line
    return "\n".join(lines.values())


def _describe(error: Any, from_file: set[str], file_source: str) -> str:
    """One line for one pydantic error: the key, the bad value, and what is allowed."""
    key = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    where = file_source if key in from_file else ""
    if len(error["loc"]) > 1 and isinstance(error["loc"][1], int):  # an item of a list setting
        key += f"[{error['loc'][1]}]" + "".join(f".{part}" for part in error["loc"][2:])
    if error["type"] == "extra_forbidden" and key.lower().replace("-", "_") in _TOKEN_KEYS:
        return setting_rules.TOKEN_IN_CONFIG + (
            f" setting {key!r}{where} would put a Hub token in the config: store it in Secrets Manager and set "
            "hf_token_secret to the secret's name (the value is not shown here)"
        )
    if error["type"] == "extra_forbidden":
        known = [f.alias or name for name, f in DeploymentConfig.model_fields.items()]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known settings: {', '.join(known)}"
        return f"{setting_rules.UNKNOWN_SETTING} unknown setting {key!r}{where}{hint}"
    if not key:  # a cross-field rule: its message already names the keys and values
        return message
    return f"{setting_rules.INVALID_VALUE} invalid {key}={error['input']!r}{where}: {message}"
