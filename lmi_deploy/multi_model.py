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
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lmi_deploy import instances
from lmi_deploy.adapters import resolve_sources
from lmi_deploy.config import DeploymentConfig, _is_cdk_key, load_config, read_deployment_file
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model_spec import (  # the shape of a multi-model deployment: importable from here
    COMPONENT_KEYS,
    FILE_KEYS,
    GIB,
    MAX_NAME,
    MODES,
    NAME_PATTERN,
    PER_MODEL_KEYS,
    SINGLE_ENDPOINT_ONLY,
    ComponentSettings,
    Mode,
    ModelSpec,
    MultiModelDeployment,
)
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

__all__ = [
    "FILE_KEYS",
    "PER_MODEL_KEYS",
    "ComponentSettings",
    "ModelSpec",
    "MultiModelDeployment",
    "is_multi_model",
    "load_deployment",
    "load_multi_model",
    "report_lines",
]

_RULE_ID = re.compile(r"^LMI\d{3} ")


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
    if not NAME_PATTERN.fullmatch(name):
        problems.append(
            f"{MODEL_NAME} {label}{where}: name={name!r} must be 1-{MAX_NAME} characters of a-z, 0-9 and '-', "
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
