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
from lmi_deploy.config import DeploymentConfig, _is_cdk_key, load_config, read_deployment_file
from lmi_deploy.containers import ENGINES, Engine, version_key
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
HOST_MEMORY_USABLE = 0.9  # of the instance's memory; the rest for the OS and SageMaker's agents (an assumption)
MME_FIRST_VERSION = "0.21.0"  # DJL Serving answers SageMaker's MME load/invoke calls from 0.21.0
MME_ENGINES = (Engine.ACCELERATE,)
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$")
_MAX_NAME = 30  # "<deployment>-<name>" names the inference component: at most 32 + 1 + 30 = 63 characters
GIB = 1024


class ComponentSettings(BaseModel):
    """An inference component's compute: per copy, and how many copies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accelerators: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="Accelerators per copy (NumberOfAcceleratorDevicesRequired). auto: the model's TP degree."
    )
    memory_mib: Annotated[int, Field(ge=128)] | Literal["auto"] = Field(
        "auto",
        description="Host memory per copy, MiB (MinMemoryRequiredInMb). auto: the copy's share of the instance's "
        "memory in proportion to its accelerators.",
    )
    copies: int = Field(1, ge=1, le=100, description="Copies at creation (RuntimeConfig.CopyCount).")
    min_copies: int | None = Field(None, ge=0, le=100, description="Autoscaling floor; 0 scales to zero. = copies.")
    max_copies: int | None = Field(None, ge=1, le=100, description="Autoscaling ceiling. Default: copies.")


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
    problems: list[str] = []
    mode = top.pop("multi_model", None)
    raw_models = top.pop("models", None)
    if mode not in MODES:
        problems.append(
            f"multi_model={mode!r}{where}: a deployment with a models: list needs multi_model: inference_components "
            "(one inference component per model, each with its own accelerators and copies) or mme (a multi-model "
            "endpoint: one container loading models on demand)"
            if mode is not None
            else f"a deployment with a models: list{where} needs multi_model: inference_components or mme"
        )
    if not isinstance(raw_models, list) or not raw_models:
        problems.append(f"models{where} must be a list of models, each a mapping with a name and its settings")
        raw_models = []
    known = _top_level_keys()
    for key in top:
        if key not in known:
            close = difflib.get_close_matches(key, [*known, "models", "multi_model"], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown setting {key!r}{where}{hint}")
    for key, neutral in SINGLE_ENDPOINT_ONLY.items():
        if key in top and str(top[key]).strip().lower() not in neutral:
            problems.append(
                f"{key}={top[key]!r}{where}: lmi-deploy builds this for single-model endpoints only, not yet for "
                "multi-model ones: remove it, or deploy the models as separate deployments"
            )
    if not top.get("deployment"):
        problems.append(
            f"a multi-model deployment{where} needs deployment: NAME (it names the endpoint, the stacks and the bucket)"
        )
    if problems:
        raise ConfigError("\n".join(problems))
    assert mode is not None

    entries: list[tuple[str, dict[str, Any], ComponentSettings]] = []
    names: set[str] = set()
    for index, raw in enumerate(raw_models):
        label = f"models[{index}]"
        if not isinstance(raw, dict):
            problems.append(f"{label}{where} must be a mapping with a name and settings, not {type(raw).__name__}")
            continue
        name = str(raw.get("name") or "")
        if not _NAME.match(name):
            problems.append(
                f"{label}{where}: name={name!r} must be 1-{_MAX_NAME} characters of a-z, 0-9 and '-', starting with "
                "a letter (it names the model's archive or inference component)"
            )
            continue
        if name in names:
            problems.append(f"{label}{where}: name={name!r} is used twice; give every model its own name")
            continue
        names.add(name)
        label = f"{label} ({name})"
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
                        f"{label}{where}: {key} sizes an inference component; a multi-model endpoint (mme) loads "
                        "models on demand into the GPUs they share: remove it, or use multi_model: "
                        "inference_components"
                    )
                component[key] = value
            elif key in known:
                problems.append(
                    f"{label}{where}: {key} is an endpoint setting shared by every model; set it at the top level "
                    "of the deployment file"
                )
            else:
                close = difflib.get_close_matches(key, [*PER_MODEL_KEYS, *COMPONENT_KEYS], n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; a model takes {', '.join(PER_MODEL_KEYS)}"
                hint += "" if close or mode == "mme" else f", {', '.join(COMPONENT_KEYS)}"
                problems.append(f"unknown setting {key!r} in {label}{where}{hint}")
        if isinstance(settings.get("model_config"), str) and path is not None:
            relative = path.parent / settings["model_config"]
            settings["model_config"] = str(relative) if relative.exists() else settings["model_config"]
        try:
            parsed = ComponentSettings.model_validate(component if mode == "inference_components" else {})
        except ValidationError as error:
            for item in error.errors():
                key = str(item["loc"][0]) if item["loc"] else ""
                message = str(item["msg"]).removeprefix("Value error, ")
                problems.append(f"{label}{where}: invalid {key}={item['input']!r}: {message}")
            continue
        entries.append((name, settings, parsed))
    if problems:
        raise ConfigError("\n".join(problems))

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
    problems, notes, warnings = _check_together(mode, models)
    if problems:
        raise ConfigError("\n".join(problems))
    return MultiModelDeployment(mode, models, tuple(notes), tuple(warnings))


def _count(number: int, plural: str) -> str:
    """``1 GPU``, ``2 GPUs``."""
    return f"{number} {plural.removesuffix('s') if number == 1 else plural}"


def _top_level_keys() -> list[str]:
    return [field.alias or name for name, field in DeploymentConfig.model_fields.items()]


def _merge_model_errors(errors: Sequence[tuple[str, str]], count: int) -> str:
    """One line per problem: a line every model reports (a bad endpoint setting) once, the others per model."""
    by_line: dict[str, list[str]] = {}
    for label, line in errors:
        by_line.setdefault(line, []).append(label)
    lines = []
    for line, labels in by_line.items():
        if len(labels) == count and count > 1:
            lines.append(line)
        else:
            lines += [f"{label}: {line}" for label in labels]
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


def _check_together(mode: Mode, models: Sequence[ModelSpec]) -> tuple[list[str], list[str], list[str]]:
    """(errors, notes, warnings) of the models as one endpoint."""
    errors: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []
    endpoint = models[0].config
    instance = endpoint.instance
    for model in models:
        spec = ENGINES[model.config.engine]
        if mode == "mme":
            if model.config.engine not in MME_ENGINES:
                errors.append(
                    f"{model.label}: engine={model.config.engine.value} cannot share a multi-model endpoint: "
                    "lmi-deploy serves MME through the Python engine's Accelerate handler only (DJL Serving loads "
                    "each model on demand into GPUs all models share; MPI engines and rolling-batch engines claim "
                    "their GPUs whole); use engine=Accelerate, or multi_model: inference_components"
                )
            elif version_key(model.config.lmi_version) < version_key(MME_FIRST_VERSION):
                errors.append(
                    f"{model.label}: lmi_version={model.config.lmi_version} predates DJL Serving's support of "
                    f"SageMaker multi-model endpoints ({MME_FIRST_VERSION}): set lmi_version {MME_FIRST_VERSION} or "
                    "later"
                )
            if model.config.weights_delivery != "container":
                errors.append(
                    f"{model.label}: weights_delivery=sagemaker (ModelDataSource) is not supported by SageMaker "
                    "multi-model endpoints: use weights_delivery=container"
                )
        else:
            if spec.neuron or instance.is_neuron:
                errors.append(
                    f"{model.label}: inference components on {instance.name} would count Neuron devices, which "
                    "lmi-deploy has not verified against NeuronCores; use a GPU instance, or one endpoint per model"
                )
                continue
            tp = model.config.resolved.tensor_parallel_degree
            if model.accelerators % tp:
                errors.append(
                    f"{model.label}: accelerators={model.accelerators} is not a multiple of its "
                    f"tensor_parallel_degree={tp}: each copy runs whole model replicas; use accelerators "
                    f"{tp} or {2 * tp}"
                )
            elif model.accelerators > instance.accelerator_count:
                errors.append(
                    f"{model.label}: accelerators={model.accelerators} is more than {instance.name}'s "
                    f"{instance.accelerator_count} {instance.accelerator_noun}: a copy runs on one instance; use a "
                    "larger instance type"
                )
            if not model.min_copies <= model.copies <= model.max_copies:
                errors.append(
                    f"{model.label}: copies must lie within min_copies..max_copies, but min_copies="
                    f"{model.min_copies}, copies={model.copies}, max_copies={model.max_copies}"
                )
    if mode == "mme":
        versions = sorted({m.config.lmi_version for m in models}, key=version_key)
        if len(versions) > 1:
            errors.append(
                f"the models of a multi-model endpoint share one container, but they ask for lmi_version "
                f"{' and '.join(versions)}: set lmi_version once, at the top level"
            )
    if errors:
        return errors, notes, warnings
    if mode == "mme":
        errors += _mme_fit(models, instance, notes)
        warnings.append(
            "SageMaker documents GPU multi-model endpoints for its Triton containers; DJL Serving implements the MME "
            "contract since 0.21.0 and LMI documents per-model serving.properties for it, but AWS does not list LMI "
            "for GPU MME: try the endpoint in a test account first, or use multi_model: inference_components"
        )
    else:
        errors += _components_fit(models, instance, endpoint.instance_count, endpoint, notes)
    return errors, notes, warnings


def _mme_fit(models: Sequence[ModelSpec], instance: InstanceType, notes: list[str]) -> list[str]:
    """Every model loaded at once: each keeps a replica per TP group, so per-GPU memory adds up over the models."""
    usable = instance.memory_per_accelerator_gib
    used = 0.0
    unknown = []
    for model in models:
        memory = model.config.resolved.memory
        if memory is None:
            unknown.append(model.name)
            continue
        if used + memory.total_gib > usable:
            loaded = ", ".join(m.name for m in models[: model.index] if m.config.resolved.memory is not None)
            return [
                f"{model.label} does not fit {instance.name} beside {loaded or 'the others'}: a multi-model endpoint "
                f"keeps loaded models in the GPUs they share, and all {len(models)} need "
                f"{sum(m.config.resolved.memory.total_gib for m in models if m.config.resolved.memory):.1f} GiB per "
                f"GPU, {usable:.1f} GiB usable ({used:.1f} GiB taken before {model.name}); use a larger instance, "
                "fewer or smaller models, or lower their max_batch_size/max_sequence_length"
            ]
        used += memory.total_gib
    notes.append(
        f"multi-model endpoint on {instance.name}: all {len(models)} models loaded take {used:.1f} of "
        f"{usable:.1f} GiB per GPU" + (f" (not counted, no model facts: {', '.join(unknown)})" if unknown else "")
    )
    return []


def _place(
    models: Sequence[ModelSpec], copies: Sequence[int], instance_count: int, accelerators: int, memory: int
) -> tuple[ModelSpec, int] | None:
    """First-fit placement of every copy onto ``instance_count`` instances; the first copy that fits nowhere."""
    free = [[accelerators, memory] for _ in range(instance_count)]
    for model, count in zip(models, copies, strict=True):
        for copy in range(1, count + 1):
            slot = next((f for f in free if f[0] >= model.accelerators and f[1] >= model.memory_mib), None)
            if slot is None:
                return model, copy
            slot[0] -= model.accelerators
            slot[1] -= model.memory_mib
    return None


def _components_fit(
    models: Sequence[ModelSpec],
    instance: InstanceType,
    instance_count: int,
    endpoint: DeploymentConfig,
    notes: list[str],
) -> list[str]:
    host_gib = instances.host_memory_gib(instance.name) or 0
    memory_mib = int(host_gib * GIB * HOST_MEMORY_USABLE)
    noun = instance.accelerator_noun

    def check(copies: Sequence[int], count: int, when: str, fix: str) -> str | None:
        failed = _place(models, copies, count, instance.accelerator_count, memory_mib)
        if failed is None:
            return None
        # SageMaker may pack better than first fit in file order: biggest copies first before giving up.
        order = sorted(range(len(models)), key=lambda i: (models[i].accelerators, models[i].memory_mib), reverse=True)
        reordered = _place(
            [models[i] for i in order], [copies[i] for i in order], count, instance.accelerator_count, memory_mib
        )
        if reordered is None:
            return None
        model, copy = failed
        need_acc = sum(m.accelerators * c for m, c in zip(models, copies, strict=True))
        need_mem = sum(m.memory_mib * c for m, c in zip(models, copies, strict=True))
        return (
            f"{model.label} does not fit {when}: its copy {copy} of {copies[model.index]} needs "
            f"{_count(model.accelerators, noun)} and {model.memory_mib / GIB:.1f} GiB of host memory and no instance "
            f"has them left; the copies need {_count(need_acc, noun)} and {need_mem / GIB:.1f} GiB in all, "
            f"{count} x {instance.name} give {_count(count * instance.accelerator_count, noun)} and "
            f"{count * memory_mib / GIB:.1f} GiB usable; {fix}"
        )

    problems = []
    initial = check(
        [m.copies for m in models],
        instance_count,
        f"{instance.name} x{instance_count}",
        "use a larger instance type, raise instance_count, or lower copies/accelerators/memory_mib",
    )
    if initial:
        problems.append(initial)
    elif any(m.max_copies > m.copies for m in models):
        at_max = check(
            [m.max_copies for m in models],
            endpoint.autoscaling_max_instances or instance_count,
            f"{instance.name} x{endpoint.autoscaling_max_instances or instance_count} at max_copies",
            "raise autoscaling_max_instances (the instances managed instance scaling may add) or lower max_copies",
        )
        if at_max:
            problems.append(at_max)
    if not problems:
        used_acc = sum(m.accelerators * m.copies for m in models)
        used_mem = sum(m.memory_mib * m.copies for m in models)
        notes.append(
            f"inference components on {instance.name} x{instance_count}: {sum(m.copies for m in models)} copies use "
            f"{used_acc} of {instance.accelerator_count * instance_count} {noun} and {used_mem / GIB:.1f} of "
            f"{instance_count * memory_mib / GIB:.1f} GiB usable host memory"
        )
    return problems


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
            f"{_count(model.accelerators, multi.instance.accelerator_noun)} + {model.memory_mib} MiB host memory"
            if multi.mode == "inference_components"
            else ""
        )
        lines.append(f"  {model.name}: {config.model_id} on {config.engine.value} {config.lmi_version}{extra}")
        lines += [f"    {note}" for note in config.resolved.notes]
        lines += [f"    warning: {finding}" for finding in config.resolved.warnings]
    lines += [f"  {note}" for note in multi.notes]
    lines += [f"  warning: {warning}" for warning in multi.warnings]
    return lines
