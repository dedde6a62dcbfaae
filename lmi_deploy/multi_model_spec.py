"""What a multi-model deployment is: the keys that belong to one model or to its inference component, each model's
spec and the deployment they make together (names and locations derived here, as :class:`DeploymentConfig` does).

Reading a file into it is :mod:`lmi_deploy.multi_model`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lmi_deploy.config import DeploymentConfig
from lmi_deploy.errors import ConfigError
from lmi_deploy.instances import InstanceType

Mode = Literal["inference_components", "mme"]
MODES: tuple[Mode, ...] = ("inference_components", "mme")

# Settings that belong to one model (its container and code); everything else in DeploymentConfig is the endpoint's
# (instances, scaling, alarms, account, ...) and is set once, at the top of the file.
PER_MODEL_KEYS = (
    "model_id",
    "model_revision",
    "model_type",
    "model_config",
    "engine",
    "lmi_version",
    "handler",
    "tensor_parallel_degree",
    "dtype",
    "max_sequence_length",
    "max_batch_size",
    "weights_delivery",
    "partitioned",
    "model_data_download_timeout",
    "container_startup_health_check_timeout",
    "model_loading_timeout",
    "kv_cache",
    "cuda_graphs",
    "compile",
    "fuse_projections",
    "fast_load",
    "extra_properties",
    "adapters",
    "lora",
)
# Endpoint settings the multi-model stacks do not build (yet): refused rather than silently ignored. key -> the
# values that mean "off".
SINGLE_ENDPOINT_ONLY: dict[str, tuple[str, ...]] = {
    "vpc_subnet_ids": ("none", "", "[]"),
    "vpc_security_group_ids": ("none", "", "[]"),
    "vpc_id": ("none", ""),
    "network_isolation": ("false",),
    "kms_key": ("none", ""),
    "hf_token_secret": ("none", ""),
    "image": ("lmi",),
    "dockerfile_dir": ("none", ""),
    "inference_mode": ("realtime",),
    "data_capture": ("false",),
}
COMPONENT_KEYS = ("accelerators", "memory_mib", "copies", "min_copies", "max_copies")
NAME_PATTERN = re.compile(r"[a-z](?:[a-z0-9-]{0,28}[a-z0-9])?")  # fullmatch: "$" lets a trailing newline through
MAX_NAME = 30  # "<deployment>-<name>" names the inference component: at most 32 + 1 + 30 = 63 characters
GIB = 1024


class ComponentSettings(BaseModel):
    """An inference component's compute: per copy, and how many copies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accelerators: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Inference components: GPUs per copy (`NumberOfAcceleratorDevicesRequired`); a multiple of the TP "
        "degree (more runs several replicas per copy), at most the instance's. `auto`: the model's TP degree.",
        json_schema_extra={"shown_default": "the model's tensor parallel degree"},
    )
    memory_mib: Annotated[int, Field(ge=128)] | Literal["auto"] = Field(
        "auto",
        description="Inference components: host memory reserved per copy (`MinMemoryRequiredInMb`), MiB.",
        json_schema_extra={
            "shown_default": "the copy's share of 90% of the instance's memory, in proportion to its GPUs"
        },
    )
    copies: int = Field(1, ge=1, le=100, description="Inference components: copies at creation (`CopyCount`).")
    min_copies: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Inference components: autoscaling floor; a value other than `max_copies` turns on target "
        "tracking of `SageMakerInferenceComponentInvocationsPerCopy` (`autoscaling_target_invocations` per copy per "
        "minute, default 4; the cooldowns as for instances). `0` scales to zero: a step policy adds a copy when an "
        "alarm sees `NoCapacityInvocationFailures` (the first requests fail for the minutes a copy takes to start), "
        "and managed instance scaling may then go down to 0 instances.",
        json_schema_extra={"shown_default": "`copies`"},
    )
    max_copies: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Inference components: autoscaling ceiling (see `min_copies`).",
        json_schema_extra={"shown_default": "`copies`"},
    )


# The keys of a multi-model file that are no setting of one model: key -> (default as shown, what it does).
FILE_KEYS: dict[str, tuple[str, str]] = {
    "multi_model": ("none (required with `models`)", "`inference_components` or `mme`."),
    "models": (
        "none",
        "The models: each a `name` and any per-model setting (`PER_MODEL_KEYS`): `model_id`, `model_revision`, "
        "`model_type`, `model_config` (relative to the file), `engine`, `lmi_version`, `handler`, "
        "`tensor_parallel_degree`, `dtype`, `max_sequence_length`, `max_batch_size`, `weights_delivery` (`sagemaker` "
        "with inference components only), `partitioned`, the three timeouts, and the Accelerate handler options "
        "(`kv_cache`, `cuda_graphs`, `compile`, `fuse_projections`, `fast_load`), LoRA `adapters` and `lora` "
        "(inference components: one adapter inference component per adapter); with inference components also "
        "the settings below. Endpoint settings (instances, scaling, alarms, updates, volume, account, region) go at "
        "the top only.",
    ),
    "name": (
        "required",
        "A model's name: 1-30 of `a-z0-9-`; names its archive (MME) or inference component "
        "(`<deployment>-<name>`), and routes requests to it.",
    ),
    "autoscaling_max_instances": (
        "`instance_count`",
        "At the top of the file. Inference components: managed instance scaling's `MaxInstanceCount` (the minimum "
        "is `instance_count`, or 0 when a model may scale to zero). MME: the variant's autoscaling as for one model.",
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """One model of a multi-model deployment: its validated single-model config and its share of the endpoint."""

    index: int
    name: str
    config: DeploymentConfig
    accelerators: int  # per copy (inference components); the TP degree for MME
    memory_mib: int  # host memory per copy (inference components)
    copies: int
    min_copies: int
    max_copies: int

    @property
    def label(self) -> str:
        return f"models[{self.index}] ({self.name})"

    @property
    def autoscaled(self) -> bool:
        return self.min_copies != self.max_copies

    @property
    def scales_to_zero(self) -> bool:
        return self.min_copies == 0


@dataclass(frozen=True)
class MultiModelDeployment:
    """Several models behind one endpoint; every name and location is derived here, as DeploymentConfig does."""

    mode: Mode
    models: tuple[ModelSpec, ...]
    notes: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def endpoint(self) -> DeploymentConfig:
        """The endpoint-level settings (identical in every model's config: instances, scaling, alarms, account)."""
        return self.models[0].config

    @property
    def deployment(self) -> str:
        return self.endpoint.deployment

    @property
    def instance(self) -> InstanceType:
        return self.endpoint.instance

    @property
    def artifacts_stack_name(self) -> str:
        return self.endpoint.artifacts_stack_name

    @property
    def endpoint_stack_name(self) -> str:
        return self.endpoint.endpoint_stack_name

    @property
    def bucket_name(self) -> str:
        return self.endpoint.bucket_name

    @property
    def region(self) -> str:
        return self.endpoint.region

    @property
    def max_instances(self) -> int:
        return self.endpoint.autoscaling_max_instances or self.endpoint.instance_count

    @property
    def min_instances(self) -> int:
        """Managed instance scaling's floor: 0 when a component may scale to zero copies (SageMaker's requirement)."""
        return 0 if any(m.scales_to_zero for m in self.models) else self.endpoint.instance_count

    @property
    def mme_prefix(self) -> str:
        """Where the per-model code archives of a multi-model endpoint live (ModelDataUrl)."""
        return f"mme/{self.deployment}/"

    @property
    def mme_s3_uri(self) -> str:
        return f"s3://{self.bucket_name}/{self.mme_prefix}"

    def inference_component_name(self, model: ModelSpec) -> str:
        return f"{self.deployment}-{model.name}"

    def with_account(self, account: str) -> MultiModelDeployment:
        """The same deployment in another account: the bucket, and so the weights every model's code names, change."""
        models = tuple(replace(m, config=m.config.model_copy(update={"account": account})) for m in self.models)
        return replace(self, models=models)

    def model(self, name: str) -> ModelSpec:
        """The model called ``name`` (its entry name, or its inference component's name)."""
        for model in self.models:
            if name in (model.name, self.inference_component_name(model)):
                return model
        raise ConfigError(
            f"{self.deployment} serves no model {name!r}; its models: {', '.join(m.name for m in self.models)}"
        )
