"""The one deployment config: typed, frozen, validated once, built from defaults < file < context values.

Only ``app.py`` and the scripts' ``main`` functions call :func:`load_config`; everything downstream (templates,
stacks) receives the resulting :class:`DeploymentConfig` and reads derived values from it. Its fields are declared
by topic in :mod:`lmi_deploy.settings` (model, endpoint, operations) and its derived values in
:mod:`lmi_deploy.settings.derived`; the validators that tie them together and the loading live here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from lmi_deploy import adapters as lora_adapters
from lmi_deploy import containers, identifiers, input_files, model_facts
from lmi_deploy.containers import ENGINES, Engine
from lmi_deploy.errors import UNREADABLE_INPUT, ConfigError
from lmi_deploy.rules.check import check_deployment
from lmi_deploy.settings.derived import DerivedValues
from lmi_deploy.settings.describe import describe_errors
from lmi_deploy.settings.endpoint import ScalingSchedule
from lmi_deploy.settings.values import json_if_text, one_line_text, raise_if

__all__ = [
    "ConfigError",
    "DeploymentConfig",
    "ScalingSchedule",
    "load_config",
    "read_deployment_file",
    "slug",
]

_DEPLOYMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
_MAX_DEPLOYMENT_NAME = 32  # keeps "<deployment>-<account>-<region>" within S3's 63-character bucket names


# Settings that name something of AWS or the Hub, and the check of each one's own syntax.
_IDENTIFIER_SYNTAX: dict[str, Callable[[str], str | None]] = {
    "model_revision": identifiers.revision_problem,
    "async_output_s3_path": identifiers.s3_prefix_problem,
    "kms_key": identifiers.kms_key_problem,
    "hf_token_secret": identifiers.secret_problem,
}


def slug(model_id: str) -> str:
    """Deployment name derived from a model id: ``google/flan-t5-xxl`` -> ``flan-t5-xxl``."""
    last = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9]+", "-", last).strip("-")
    if not name or not name[0].isalpha() or len(name) < 2:
        name = f"m-{name}" if name else "model"
    return name[:_MAX_DEPLOYMENT_NAME].rstrip("-")


class DeploymentConfig(DerivedValues):
    """Everything that decides what gets deployed. Defaults reproduce the seed deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, populate_by_name=True)

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

    @field_validator("extra_properties", mode="before")
    @classmethod
    def _properties_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("vpc_subnet_ids", "vpc_security_group_ids", mode="before")
    @classmethod
    def _ids_from_text(cls, value: Any) -> Any:
        return json_if_text(value)

    @field_validator("autoscaling_schedules", mode="before")
    @classmethod
    def _schedules_from_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [value]
        return json_if_text(value)

    @field_validator("*", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return one_line_text(value)

    @field_validator("model_id")
    @classmethod
    def _model_id_syntax(cls, value: str) -> str:
        if value[:5].lower() == "s3://":
            raise_if(identifiers.s3_prefix_problem(value))
        elif model_facts.is_local_folder(value):
            raise_if(identifiers.local_folder_problem(value))
        else:
            raise_if(identifiers.hub_id_problem(value))
        return value

    @field_validator(*_IDENTIFIER_SYNTAX)
    @classmethod
    def _identifier_syntax(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            raise_if(_IDENTIFIER_SYNTAX[str(info.field_name)](value))
        return value

    @field_validator("model_type")
    @classmethod
    def _model_type_syntax(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_]{1,64}", value):
            raise ValueError("is not a Hugging Face model_type (letters, digits and '_', e.g. llama, gpt_neox)")
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
        if not _DEPLOYMENT_NAME.fullmatch(value):
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


# Context keys that belong to the CDK itself, never to a deployment.
_CDK_CONTEXT_KEYS = {"config", "acknowledged-issue-numbers"}


def _is_cdk_key(key: str) -> bool:
    return key in _CDK_CONTEXT_KEYS or ":" in key or key.startswith("@")


def read_deployment_file(path: str | Path) -> dict[str, Any]:
    """A deployment YAML file as a mapping, or a ConfigError naming the file and what is wrong with it (bounded: see
    :mod:`lmi_deploy.input_files`)."""
    data = input_files.load_yaml(Path(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{UNREADABLE_INPUT} deployment file {path} must hold a mapping of settings, not a {type(data).__name__}"
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
        if "adapters" in file_values:  # adapter folders too
            folder = Path(context["config"]).parent
            file_values["adapters"] = lora_adapters.resolve_sources(file_values["adapters"], folder)
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
        known = [f.alias or name for name, f in DeploymentConfig.model_fields.items()]
        raise ConfigError(describe_errors(error.errors(), set(file_values) - set(context), source, known)) from None
