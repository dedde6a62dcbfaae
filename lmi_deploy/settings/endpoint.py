"""The config's fields on the endpoint: instances and timeouts, scaling, the image, network and secrets."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmi_deploy.settings.model import ModelSettings
from lmi_deploy.settings.values import one_line_text, shown

Timeout = Annotated[int, Field(ge=60, le=3600)]


class ScalingSchedule(BaseModel):
    """One scheduled action of Application Auto Scaling: from ``schedule`` on, scale between these bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="Names the scheduled action.")
    schedule: str = Field(description="cron(m h dom mon dow year), rate(n unit) or at(yyyy-mm-ddThh:mm:ss).")
    min_instances: int = Field(ge=0, le=100, description="Autoscaling floor from then on (0 only for async).")
    max_instances: int = Field(ge=1, le=100, description="Autoscaling ceiling from then on.")
    timezone: str = Field("UTC", description="IANA time zone the schedule is read in.")

    @field_validator("*", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return one_line_text(value)


class EndpointSettings(ModelSettings):
    """Instances and timeouts, scaling, the image, network and secrets (after the model's fields)."""

    instance_type: str = Field(
        "ml.g5.12xlarge",
        description="GPU types g4dn, g5, g6, g6e, p3, p3dn, p4d, p4de, p5, p5e, p5en; Neuron types inf2, trn1 "
        "(NeuronX only). Its hourly price: [the README's cost table](../README.md#what-it-costs).",
    )
    instance_count: int = Field(
        1, ge=1, le=100, description="Instances behind the endpoint (1-100). Cost scales linearly."
    )
    model_data_download_timeout: Timeout | Literal["auto"] = Field(
        "auto",
        description="`ModelDataDownloadTimeoutInSeconds`, 60-3600. `auto`: the stored weights at 100 MiB/s x 1.25, at "
        "least 600 (the seed's value). An explicit value shorter than that is refused.",
    )
    container_startup_health_check_timeout: Timeout | Literal["auto"] = Field(
        "auto",
        description="`ContainerStartupHealthCheckTimeoutInSeconds`, 60-3600. `auto`: load at 200 MiB/s plus compile "
        "time (TensorRT-LLM 120 s and NeuronX 180 s per billion parameters, at least 600/900 s; our Accelerate handler "
        "150 s + 20 s per warm bucket with `compile`, 1 s per bucket without) x 1.25, at least 600. Beyond 3600 is "
        "refused: compile or partition ahead of time.",
    )
    model_loading_timeout: Timeout | None = Field(
        None,
        description="`option.model_loading_timeout` (always written: the container's own default differs by layer, "
        "240/1200/1800 s). Must not exceed the startup timeout.",
        json_schema_extra=shown("= startup timeout"),
    )
    volume_size_gb: int | None = Field(
        None,
        ge=1,
        le=512,
        description="`VolumeSizeInGB`, 1-512. Refused on families with instance storage (any with a `d`, and g5, g6, "
        "g6e, p5, trn1); must hold the weights + 10% + 10 GB.",
    )
    autoscaling_max_instances: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Scale between `instance_count` and this on invocations per instance; must be >= "
        "`instance_count`. Each added instance costs its hourly price while it runs.",
        json_schema_extra=shown("unset (fixed size)"),
    )
    autoscaling_min_instances: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Floor of autoscaling (<= `instance_count`); `0` (scale to zero) only with "
        "`inference_mode=async`. Needs `autoscaling_max_instances`.",
        json_schema_extra=shown("`instance_count`"),
    )
    autoscaling_schedules: tuple[ScalingSchedule, ...] = Field(
        (),
        description="Scheduled actions that move the autoscaling bounds: a list of `{name, schedule, min_instances, "
        "max_instances, timezone}` (`schedule`: `cron(m h dom mon dow year)`, `rate(n unit)` or "
        "`at(yyyy-mm-ddThh:mm:ss)`; `timezone` IANA, default `UTC`). Needs autoscaling; each `max_instances` <= "
        "`autoscaling_max_instances`. With `-c`, give the list as JSON. Scheduled actions cost nothing; the "
        "instances they keep do.",
    )
    autoscaling_target_invocations: int = Field(
        4,
        ge=1,
        le=1_000_000,
        description="Target invocations per instance per minute (`SageMakerVariantInvocationsPerInstance`).",
    )
    autoscaling_scale_in_cooldown: int = Field(600, ge=0, le=3600, description="Seconds between scale-ins.")
    autoscaling_scale_out_cooldown: int = Field(120, ge=0, le=3600, description="Seconds between scale-outs.")
    image: Literal["lmi", "custom", "mirror"] = Field(
        "lmi",
        description="`lmi`: the AWS-published LMI image. `custom`: `dockerfile_dir` built FROM it by `cdk deploy` "
        "(Docker needed there, not for synth or tests); the role pulls only from CDK's asset repository. `mirror`: "
        "the LMI image copied into the artifacts stack's repository `lmi-deploy/<deployment>` (same tag) by a Lambda "
        "custom resource (cdk-ecr-deployment); the role pulls only from there. ECR storage about $0.10/GB-month (an "
        "LMI image is over 10 GB: ~$1-2 a month); the copy's Lambda runs for minutes per deploy.",
    )
    dockerfile_dir: str | None = Field(
        None,
        description="`image=custom`: a folder whose `Dockerfile` declares `ARG BASE_IMAGE` and starts "
        "`FROM ${BASE_IMAGE}` (lmi-deploy passes the validated LMI image); relative to the deployment file when given "
        "in one. Example: `images/custom-lmi/`.",
    )
    vpc_subnet_ids: tuple[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")], ...] = Field(
        (),
        max_length=16,
        description="Subnets the instances attach to (Model `VpcConfig`, 1-16; a list, or comma-separated with `-c`). "
        "Use private subnets with VPC endpoints (S3 gateway; ECR api/dkr, CloudWatch logs/monitoring, Secrets Manager "
        "interface endpoints, about $7.30 a month each per AZ) or a NAT gateway (about $33 a month + $0.045/GB).",
        json_schema_extra=shown("none (no VPC)"),
    )
    vpc_security_group_ids: tuple[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")], ...] = Field(
        (),
        max_length=5,
        description="Security groups (1-5). Unset with subnets: one is created with no inbound rule and HTTPS out "
        "only; it needs `vpc_id`. Given without subnets: refused.",
        json_schema_extra=shown("created"),
    )
    vpc_id: str | None = Field(
        None,
        pattern=r"^vpc-[0-9a-f]{8,17}$",
        description="The subnets' VPC, only to create that security group.",
    )
    network_isolation: bool = Field(
        False,
        description="`EnableNetworkIsolation`: the container gets no network and no AWS credentials. Needs "
        "`weights_delivery=sagemaker` (the container cannot download the weights itself). Costs nothing.",
    )
    kms_key: str | None = Field(
        None,
        description="`create`: a customer-managed key with yearly rotation in the artifacts stack (retained, alias "
        "`alias/lmi-deploy/<deployment>`); or an existing key's ARN (same region). Encrypts the bucket (SSE-KMS, "
        "bucket key), the endpoint's volume (`KmsKeyId`, except on NVMe-only types: g5, g6, g6e, p4d, p5, ...), log "
        "group, alarm topic, async outputs/topics and data capture. About $1 a key-month plus $0.03 per 10,000 "
        "requests.",
        json_schema_extra=shown("unset (AWS-managed keys)"),
    )
    hf_token_secret: str | None = Field(
        None,
        description="Secrets Manager secret (name or ARN, same region) holding the Hub token, as text or JSON "
        '`{"token": ...}`: the default of `stage_model.py --token-secret`, and with `handler=custom` the rendered '
        "`model.py` reads it at start (the role may read that one secret; the Model's environment holds only its id). "
        "A token itself is refused. About $0.40 a secret-month.",
    )
