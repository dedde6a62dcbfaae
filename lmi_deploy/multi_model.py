"""Several models behind one endpoint: a deployment file with a ``models:`` list and ``multi_model:``.

Each entry is built into its own :class:`DeploymentConfig` exactly as a single deployment is (every rule of
``validation`` applies unchanged, with the entry's settings over the file's top-level ones), then the models are
checked to fit the instance *together*:

- ``inference_components``: one endpoint (an instance pool, no model of its own) and one
  ``AWS::SageMaker::InferenceComponent`` per model, each copy with its own accelerators and host memory. The copies
  (accelerators and host memory summed over copies) must fit ``instance_count`` instances, and their ``max_copies``
  the instances managed instance scaling may reach.
- ``mme``: one Model in ``MultiModel`` mode over an S3 prefix of per-model code archives; DJL Serving loads a model
  on its first request (``TargetModel``) into the GPUs every model shares, so the models' memory per GPU is summed.

Only ``app.py`` and the scripts' ``main`` call :func:`load_deployment`; it returns a plain :class:`DeploymentConfig`
for a single-model file, so single deployments go through exactly the code they always did.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lmi_deploy import instances
from lmi_deploy.adapters import resolve_sources
from lmi_deploy.config import DeploymentConfig, _is_cdk_key, load_config, read_deployment_file
from lmi_deploy.errors import ConfigError
from lmi_deploy.instances import InstanceType
from lmi_deploy.rules import settings as setting_rules
from lmi_deploy.rules.multi_model import (
    FILE_SHAPE,
    HOST_MEMORY_USABLE,
    MISPLACED,
    MODEL_NAME,
    Together,
    check_together,
    count_of,
)

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
_RULE_ID = re.compile(r"^LMI\d{3} ")
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$")
_MAX_NAME = 30  # "<deployment>-<name>" names the inference component: at most 32 + 1 + 30 = 63 characters
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


def is_multi_model(values: Mapping[str, Any]) -> bool:
    return "models" in values or "multi_model" in values


def load_deployment(
    context: Mapping[str, Any] | None = None,
    *,
    environment_defaults: Mapping[str, Any] | None = None,
) -> DeploymentConfig | MultiModelDeployment:
    """A single deployment (exactly :func:`load_config`), or several models when the file has ``models:``."""
    context = dict(context or {})
    file_values = read_deployment_file(context["config"]) if context.get("config") else {}
    if not is_multi_model(file_values) and not is_multi_model(context):
        return load_config(context, environment_defaults=environment_defaults)
    return load_multi_model(context, file_values, environment_defaults)


def load_multi_model(
    context: Mapping[str, Any],
    file_values: Mapping[str, Any],
    environment_defaults: Mapping[str, Any] | None = None,
) -> MultiModelDeployment:
    """Validate every model as a single deployment, then that they fit the endpoint together."""
    path = Path(context["config"]) if context.get("config") else None
    where = f" in {path}" if path else ""
    overrides = {k: v for k, v in context.items() if not _is_cdk_key(k)}
    top = {**file_values, **overrides}
    mode = top.pop("multi_model", None)
    raw_models = top.pop("models", None)
    _raise_all(_file_shape_problems(top, mode, raw_models, where))
    assert mode is not None and isinstance(raw_models, list)
    problems: list[str] = []
    names: set[str] = set()
    entries = [
        entry
        for index, raw in enumerate(raw_models)
        if (entry := _model_entry(index, raw, mode, names, path, where, problems)) is not None
    ]
    _raise_all(problems)

    # Every model as a single deployment: file top level < entry < -c values; the endpoint's name and settings shared.
    configs: list[DeploymentConfig] = []
    per_model_errors: list[tuple[str, str]] = []
    for index, (name, settings, _) in enumerate(entries):
        values = {**top, **settings, **{k: v for k, v in overrides.items() if k in PER_MODEL_KEYS}}
        try:
            configs.append(load_config(values, environment_defaults=environment_defaults))
        except ConfigError as error:
            per_model_errors += [(f"models[{index}] ({name}){where}", line) for line in str(error).splitlines()]
    if per_model_errors:
        raise ConfigError(_merge_model_errors(per_model_errors, len(entries)))

    models = tuple(
        _spec(index, name, config, component, mode)
        for index, ((name, _, component), config) in enumerate(zip(entries, configs, strict=True))
    )
    findings, notes = check_together(Together(mode, models, models[0].config.instance, models[0].config))
    _raise_all([str(f) for f in findings if f.level == "error"])
    warnings = tuple(str(f) for f in findings if f.level == "warning")
    return MultiModelDeployment(mode, models, tuple(notes), warnings)


def _raise_all(problems: list[str]) -> None:
    if problems:
        raise ConfigError("\n".join(problems))


def _file_shape_problems(top: dict[str, Any], mode: Any, raw_models: Any, where: str) -> list[str]:
    """What is wrong with the file's top level: the mode, the models list, keys unknown or not for multi-model."""
    problems: list[str] = []
    if mode not in MODES:
        problems.append(
            f"{FILE_SHAPE} multi_model={mode!r}{where}: a deployment with a models: list needs multi_model: "
            "inference_components "
            "(one inference component per model, each with its own accelerators and copies) or mme (a multi-model "
            "endpoint: one container loading models on demand)"
            if mode is not None
            else f"{FILE_SHAPE} a deployment with a models: list{where} needs multi_model: inference_components or mme"
        )
    if not isinstance(raw_models, list) or not raw_models:
        problems.append(
            f"{FILE_SHAPE} models{where} must be a list of models, each a mapping with a name and its settings"
        )
    known = _top_level_keys()
    for key in top:
        if key not in known:
            close = difflib.get_close_matches(key, [*known, "models", "multi_model"], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{setting_rules.UNKNOWN_SETTING} unknown setting {key!r}{where}{hint}")
    for key, neutral in SINGLE_ENDPOINT_ONLY.items():
        if key in top and str(top[key]).strip().lower() not in neutral:
            problems.append(
                f"{MISPLACED} {key}={top[key]!r}{where}: lmi-deploy builds this for single-model endpoints only, "
                "not yet for multi-model ones: remove it, or deploy the models as separate deployments"
            )
    if not top.get("deployment"):
        problems.append(
            f"{FILE_SHAPE} a multi-model deployment{where} needs deployment: NAME (it names the endpoint, the stacks "
            "and the bucket)"
        )
    return problems


def _model_entry(
    index: int, raw: Any, mode: Mode, names: set[str], path: Path | None, where: str, problems: list[str]
) -> tuple[str, dict[str, Any], ComponentSettings] | None:
    """One entry of models: its name, its deployment settings and its component's; None (with the problems
    appended) when it cannot be read."""
    label = f"models[{index}]"
    if not isinstance(raw, dict):
        problems.append(
            f"{FILE_SHAPE} {label}{where} must be a mapping with a name and settings, not {type(raw).__name__}"
        )
        return None
    name = str(raw.get("name") or "")
    if not _NAME.match(name):
        problems.append(
            f"{MODEL_NAME} {label}{where}: name={name!r} must be 1-{_MAX_NAME} characters of a-z, 0-9 and '-', "
            "starting with "
            "a letter (it names the model's archive or inference component)"
        )
        return None
    if name in names:
        problems.append(f"{MODEL_NAME} {label}{where}: name={name!r} is used twice; give every model its own name")
        return None
    names.add(name)
    label = f"{label} ({name})"
    settings, component = _split_entry(raw, label, mode, where, problems)
    if "adapters" in settings and path is not None:
        settings["adapters"] = resolve_sources(settings["adapters"], path.parent)
    if isinstance(settings.get("model_config"), str) and path is not None:
        relative = path.parent / settings["model_config"]
        settings["model_config"] = str(relative) if relative.exists() else settings["model_config"]
    try:
        parsed = ComponentSettings.model_validate(component if mode == "inference_components" else {})
    except ValidationError as error:
        for item in error.errors():
            key = str(item["loc"][0]) if item["loc"] else ""
            message = str(item["msg"]).removeprefix("Value error, ")
            problems.append(f"{setting_rules.INVALID_VALUE} {label}{where}: invalid {key}={item['input']!r}: {message}")
        return None
    return name, settings, parsed


def _split_entry(
    raw: dict[str, Any], label: str, mode: Mode, where: str, problems: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model entry's keys: its deployment settings and its inference component's (problems for the others)."""
    known = _top_level_keys()
    settings: dict[str, Any] = {}
    component: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "name":
            continue
        if key in PER_MODEL_KEYS:
            settings[key] = value
        elif key in COMPONENT_KEYS:
            if mode == "mme":
                problems.append(
                    f"{MISPLACED} {label}{where}: {key} sizes an inference component; a multi-model endpoint (mme) "
                    "loads "
                    "models on demand into the GPUs they share: remove it, or use multi_model: "
                    "inference_components"
                )
            component[key] = value
        elif key in known:
            problems.append(
                f"{MISPLACED} {label}{where}: {key} is an endpoint setting shared by every model; set it at "
                "the top level of the deployment file"
            )
        else:
            close = difflib.get_close_matches(key, [*PER_MODEL_KEYS, *COMPONENT_KEYS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; a model takes {', '.join(PER_MODEL_KEYS)}"
            hint += "" if close or mode == "mme" else f", {', '.join(COMPONENT_KEYS)}"
            problems.append(f"{setting_rules.UNKNOWN_SETTING} unknown setting {key!r} in {label}{where}{hint}")
    return settings, component


def _top_level_keys() -> list[str]:
    return [field.alias or name for name, field in DeploymentConfig.model_fields.items()]


def _merge_model_errors(errors: Sequence[tuple[str, str]], count: int) -> str:
    """One line per problem: a line every model reports (a bad endpoint setting) once, the others per model (the rule
    id stays first)."""
    by_line: dict[str, list[str]] = {}
    for label, line in errors:
        by_line.setdefault(line, []).append(label)
    lines = []
    for line, labels in by_line.items():
        if len(labels) == count and count > 1:
            lines.append(line)
        else:
            rule_id, _, rest = line.partition(" ") if _RULE_ID.match(line) else ("", "", line)
            lines += [f"{rule_id} {label}: {rest}".lstrip() for label in labels]
    return "\n".join(lines)


def _spec(index: int, name: str, config: DeploymentConfig, component: ComponentSettings, mode: Mode) -> ModelSpec:
    tp = config.resolved.tensor_parallel_degree
    accelerators = tp if component.accelerators == "auto" else component.accelerators
    if component.memory_mib == "auto":
        host = instances.host_memory_gib(config.instance_type) or 0
        share = min(accelerators, config.instance.accelerator_count) / config.instance.accelerator_count
        memory = int(host * GIB * HOST_MEMORY_USABLE * share)
    else:
        memory = component.memory_mib
    copies = component.copies
    low = copies if component.min_copies is None else component.min_copies
    high = copies if component.max_copies is None else component.max_copies
    if mode == "mme":
        memory, copies, low, high = 0, 1, 1, 1
    return ModelSpec(index, name, config, accelerators, memory, copies, low, high)


def report_lines(multi: MultiModelDeployment) -> list[str]:
    """What validation derived, model by model, then the fit and the warnings (as report.report_lines does)."""
    lines = [
        f"{multi.deployment}: {len(multi.models)} models as "
        f"{'inference components' if multi.mode == 'inference_components' else 'a multi-model endpoint (MME)'} on "
        f"{multi.instance.name}"
    ]
    for model in multi.models:
        config = model.config
        extra = (
            f", {model.copies} cop{'y' if model.copies == 1 else 'ies'} x "
            f"{count_of(model.accelerators, multi.instance.accelerator_noun)} + {model.memory_mib} MiB host memory"
            if multi.mode == "inference_components"
            else ""
        )
        lines.append(f"  {model.name}: {config.model_id} on {config.engine.value} {config.lmi_version}{extra}")
        lines += [f"    {note}" for note in config.resolved.notes]
        lines += [f"    warning: {finding}" for finding in config.resolved.warnings]
    lines += [f"  {note}" for note in multi.notes]
    lines += [f"  warning: {warning}" for warning in multi.warnings]
    return lines
