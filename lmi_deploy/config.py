"""The one deployment config: typed, frozen, validated once, built from defaults < file < context values.

Only ``app.py`` and the scripts' ``main`` functions call :func:`load_config`; everything downstream (templates,
stacks) receives the resulting :class:`DeploymentConfig` and reads derived values from it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmi_deploy import containers, instances
from lmi_deploy.containers import ENGINES, Engine
from lmi_deploy.errors import ConfigError

Dtype = Literal["fp32", "fp16", "bf16", "int8"]

# Architecture by model name, until model facts are read from config.json: (name fragment, HF model_type).
_MODEL_TYPE_HINTS: tuple[tuple[str, str], ...] = (
    ("t5", "t5"),
    ("ul2", "t5"),
    ("gpt-j", "gptj"),
    ("gptj", "gptj"),
    ("gpt-neox", "gpt_neox"),
    ("pythia", "gpt_neox"),
    ("bloom", "bloom"),
    ("opt-", "opt"),
    ("gpt2", "gpt2"),
)
_DEPLOYMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
_MAX_DEPLOYMENT_NAME = 32  # keeps "<deployment>-<account>-<region>" within S3's 63-character bucket names


def slug(model_id: str) -> str:
    """Deployment name derived from a model id: ``google/flan-t5-xxl`` -> ``flan-t5-xxl``."""
    last = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9]+", "-", last).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}" if name else "model"
    return name[:_MAX_DEPLOYMENT_NAME].rstrip("-")


class DeploymentConfig(BaseModel):
    """Everything that decides what gets deployed. Defaults reproduce the seed deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    deployment: str = Field(
        "", description="Name of the deployment: stack names, rendered folder, bucket. Default: slug of model_id."
    )
    model_id: str = Field("google/flan-t5-xxl", min_length=1, description="Hugging Face Hub id, or s3:// prefix.")
    model_revision: str = Field("main", min_length=1, description="Hub revision; part of the weights' S3 prefix.")
    model_type: str = Field("", description="HF model_type (t5, gpt2, ...). Default: inferred from model_id.")
    engine: Engine = Field(Engine.FASTER_TRANSFORMER, description="LMI engine; names are case-insensitive.")
    lmi_version: str = Field("0.21.0", description="LMI/DJL container version.")
    handler: Literal["custom", "builtin"] = Field(
        "custom", description="custom: rendered model.py; builtin: the engine's no-code entryPoint."
    )
    tensor_parallel_degree: int = Field(4, ge=1, description="Accelerators one model copy is split over.")
    dtype: Dtype = Field("fp32", description="Weights/compute precision passed to the engine.")
    instance_type: str = Field("ml.g5.12xlarge", description="SageMaker instance type.")
    instance_count: int = Field(1, ge=1, le=100, description="Instances behind the endpoint.")
    model_data_download_timeout: int = Field(600, ge=60, le=3600, description="ModelDataDownloadTimeoutInSeconds.")
    container_startup_health_check_timeout: int = Field(
        600, ge=60, le=3600, description="ContainerStartupHealthCheckTimeoutInSeconds."
    )
    model_loading_timeout: int | None = Field(
        None, ge=60, le=3600, description="option.model_loading_timeout (s). Default: the startup timeout."
    )
    volume_size_gb: int | None = Field(None, ge=1, le=512, description="VolumeSizeInGB, on families with EBS only.")
    account: str = Field("000000000000", description="AWS account the stacks are for (12 digits).")
    bootstrap_version_rule: bool = Field(
        True, description="Check the CDK bootstrap version on deploy; the local emulator turns it off."
    )
    region: str = Field("us-east-1", description="AWS region (its image must exist there).")

    @model_validator(mode="before")
    @classmethod
    def _derive_deployment_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("deployment"):
            data = {**data, "deployment": slug(str(data.get("model_id") or cls.model_fields["model_id"].default))}
        return data

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_case_insensitive(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower()
            if key in containers.ENGINE_ALIASES:
                return containers.ENGINE_ALIASES[key]
            allowed = ", ".join(e.value for e in Engine)
            if key in containers.LATER_ENGINES:
                raise ValueError(f"not available in lmi-deploy yet; available engines: {allowed}")
            raise ValueError(f"unknown engine; available engines: {allowed}")
        return value

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
    def _cross_field_rules(self) -> DeploymentConfig:
        spec = ENGINES[self.engine]
        known_versions = containers.versions(self.engine)
        if self.lmi_version not in known_versions:
            raise ValueError(
                f"lmi_version={self.lmi_version!r} has no {self.engine.value} container; "
                f"versions that ship it: {', '.join(known_versions)}"
            )
        known_regions = containers.regions(self.engine, self.lmi_version)
        if self.region not in known_regions:
            raise ValueError(
                f"region={self.region!r} has no {self.engine.value} {self.lmi_version} image; "
                f"regions that do: {', '.join(known_regions)}"
            )
        instance = instances.get(self.instance_type)
        if instance is None:
            close = difflib.get_close_matches(self.instance_type, list(instances.catalog()), n=3)
            hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(instances.catalog())}"
            raise ValueError(f"instance_type={self.instance_type!r} is not a known accelerator instance; {hint}")
        if instance.is_neuron:
            raise ValueError(
                f"engine {self.engine.value} needs NVIDIA GPUs, but {instance.name} has {instance.accelerator} "
                "NeuronCores; choose a GPU instance (ml.g5, ml.g6, ml.p4d, ...)"
            )
        tp = self.tensor_parallel_degree
        if tp > instance.accelerator_count or instance.accelerator_count % tp:
            valid = ", ".join(str(d) for d in instance.valid_tensor_parallel_degrees())
            raise ValueError(
                f"tensor_parallel_degree={tp} does not fit {instance.name}, which has "
                f"{instance.accelerator_count} {instance.accelerator_noun}; use one of {valid}, or a larger instance"
            )
        model_type = self.resolved_model_type
        if model_type not in spec.model_types:
            raise ValueError(
                f"model_type={model_type!r} is not supported by {self.engine.value}; it serves: "
                f"{', '.join(spec.model_types)}"
            )
        if self.dtype not in spec.dtypes:
            raise ValueError(f"dtype={self.dtype!r} is not supported by {self.engine.value}: use {spec.dtypes}")
        if self.engine is Engine.FASTER_TRANSFORMER and model_type == "t5" and self.dtype in ("fp16", "int8"):
            raise ValueError(
                f"dtype={self.dtype!r} with FasterTransformer and T5 models gives garbage output (fp16 activations "
                "overflow into NaN; FasterTransformer refuses int8 for T5): use dtype=bf16 or dtype=fp32"
            )
        if (
            self.model_loading_timeout is not None
            and self.model_loading_timeout > self.container_startup_health_check_timeout
        ):
            raise ValueError(
                f"model_loading_timeout={self.model_loading_timeout} exceeds container_startup_health_check_timeout="
                f"{self.container_startup_health_check_timeout}: SageMaker would fail the endpoint before the model "
                "loads; raise the startup timeout or lower the loading timeout"
            )
        if self.volume_size_gb is not None and not instance.supports_volume_size:
            raise ValueError(
                f"volume_size_gb={self.volume_size_gb} is refused by SageMaker on {instance.name}: the "
                f"{instance.family} family uses instance storage; leave volume_size_gb unset"
            )
        return self

    # ---- derived values: the only place decisions about names, locations and timeouts are made ----

    @property
    def instance(self) -> instances.InstanceType:
        instance = instances.get(self.instance_type)
        assert instance is not None  # checked by the validator
        return instance

    @property
    def resolved_model_type(self) -> str:
        if self.model_type:
            return self.model_type
        name = self.model_id.rstrip("/").rsplit("/", 1)[-1].lower()
        for fragment, model_type in _MODEL_TYPE_HINTS:
            if fragment in name:
                return model_type
        raise ValueError(
            f"cannot tell the architecture of model_id={self.model_id!r} from its name; set model_type to its "
            f"config.json model_type (one of {', '.join(ENGINES[self.engine].model_types)})"
        )

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
    def weights_bucket_and_prefix(self) -> tuple[str, str]:
        """Where the weights are: the artifacts bucket's ``models/<model_id>/<revision>/``, or a given s3:// URL."""
        if self.model_id.startswith("s3://"):
            bucket, _, prefix = self.model_id.removeprefix("s3://").partition("/")
            return bucket, prefix.rstrip("/") + "/" if prefix else ""
        return self.bucket_name, f"models/{self.model_id}/{self.model_revision}/"

    @property
    def weights_s3_uri(self) -> str:
        bucket, prefix = self.weights_bucket_and_prefix
        return f"s3://{bucket}/{prefix}"

    @property
    def model_loading_timeout_s(self) -> int:
        """option.model_loading_timeout: explicit, else the startup health-check timeout it must not exceed."""
        return self.model_loading_timeout or self.container_startup_health_check_timeout

    @cached_property
    def image_uri(self) -> str:
        return containers.image_uri(self.engine, self.lmi_version, self.region)

    @property
    def image_account(self) -> str:
        """The AWS account that publishes the image (``<account>.dkr.ecr.<region>...``)."""
        return self.image_uri.split(".", 1)[0]

    @property
    def image_repository(self) -> str:
        return self.image_uri.split("/", 1)[1].split(":", 1)[0]


# Context keys that belong to the CDK itself, never to a deployment.
_CDK_CONTEXT_KEYS = {"config", "acknowledged-issue-numbers"}


def _is_cdk_key(key: str) -> bool:
    return key in _CDK_CONTEXT_KEYS or ":" in key or key.startswith("@")


def read_deployment_file(path: str | Path) -> dict[str, Any]:
    """A deployment YAML file as a mapping, or a ConfigError naming the file and what is wrong with it."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"deployment file {file} does not exist; see deployments/ for examples") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"deployment file {file} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"deployment file {file} must hold a mapping of settings, not a {type(data).__name__}")
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
        values.update(file_values)
        source = f" in {context['config']}"
    else:
        file_values, source = {}, ""
    values.update({k: v for k, v in context.items() if not _is_cdk_key(k)})
    try:
        return DeploymentConfig(**values)
    except ValidationError as error:
        raise ConfigError(
            "\n".join(_describe(e, set(file_values) - set(context), source) for e in error.errors())
        ) from None


def _describe(error: Any, from_file: set[str], file_source: str) -> str:
    """One line for one pydantic error: the key, the bad value, and what is allowed."""
    key = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    where = file_source if key in from_file else ""
    if error["type"] == "extra_forbidden":
        known = list(DeploymentConfig.model_fields)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known settings: {', '.join(known)}"
        return f"unknown setting {key!r}{where}{hint}"
    if not key:  # a cross-field rule: its message already names the keys and values
        return message
    return f"invalid {key}={error['input']!r}{where}: {message}"
