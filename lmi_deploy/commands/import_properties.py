#!/usr/bin/env python3
"""Turn an existing serving.properties into a deployment file that renders back to an equivalent one.

    python scripts/import_properties.py serving.properties --container TAG [--instance-type TYPE] [--model-id ID]
        [--deployment NAME] [--output deployments/NAME.yaml]

The file is read into the same view validation uses (engine, handler, dtype, tensor parallelism, rolling batch,
lengths, loading timeout); what lmi-deploy writes from its own settings becomes those settings, every other line goes
to ``extra_properties`` as it is. The result is validated like any deployment before it is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lmi_deploy import model_facts
from lmi_deploy.commands.validate import container_version
from lmi_deploy.config import DeploymentConfig, load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.render import serving_properties
from lmi_deploy.rules.derive import derive
from lmi_deploy.rules.properties_view import from_properties
from lmi_deploy.rules.view import View

PLACEHOLDER_ACCOUNT = {"account": "000000000000"}


def _tensor_parallel(view: View, derived_tp: int | None) -> int | str | None:
    if view.tensor_parallel is not None:
        return view.tensor_parallel
    return "max" if view.at_least("0.24.0") else derived_tp


def settings_from(view: View, model_id: str, instance_type: str | None) -> dict[str, Any]:
    """lmi-deploy settings for what the file asks (without its extra lines)."""
    if view.handler == "custom":
        raise ConfigError(
            "this file runs a handler of its own (a model.py or a non-djl_python entryPoint): lmi-deploy imports "
            "files that use a built-in handler; port the model.py by hand"
        )
    if view.engine is None:
        raise ConfigError(
            "cannot tell the engine this file runs (engine=, option.rolling_batch and option.entryPoint do not say): "
            "give the full image tag as --container"
        )
    derived = derive(view)
    settings: dict[str, Any] = {
        "model_id": model_id,
        "model_type": view.model_type or None,
        "engine": view.engine.value,
        "lmi_version": view.version,
        "handler": "builtin",
        "tensor_parallel_degree": _tensor_parallel(view, derived.tensor_parallel_degree),
        "dtype": derived.dtype,
        "max_sequence_length": view.max_sequence_length,
        "max_batch_size": view.max_batch_size,
        "instance_type": instance_type,
    }
    if view.model_loading_timeout:
        settings["model_loading_timeout"] = view.model_loading_timeout
        settings["container_startup_health_check_timeout"] = max(view.model_loading_timeout, 600)
    return {key: value for key, value in settings.items() if value is not None}


def imported(text: str, args: argparse.Namespace) -> tuple[dict[str, Any], DeploymentConfig]:
    """The deployment settings for the file, and the config they validate into."""
    version = container_version(args.container)
    model_id = args.model_id or from_properties(text, version).model_id
    if not model_id:
        raise ConfigError("the file names no option.model_id: give --model-id (a Hub id or the s3:// prefix)")
    view = from_properties(
        text,
        version,
        container_tag=args.container,
        instance_type=args.instance_type,
        facts=model_facts.find(model_id, "main", args.model_config)[0],
        has_model_py=(Path(args.serving_properties).parent / "model.py").exists(),
    )
    settings = settings_from(view, model_id, args.instance_type)
    settings.update({"deployment": args.deployment} if args.deployment else {})
    settings.update({"model_config": args.model_config} if args.model_config else {})
    written = {key for key, _ in serving_properties(load_config({**settings, **PLACEHOLDER_ACCOUNT}))}
    extra = {entry.key: entry.value for entry in view.properties if entry.key not in written}
    settings.update({"extra_properties": extra} if extra else {})
    return settings, load_config({**settings, **PLACEHOLDER_ACCOUNT})


def main(argv: Sequence[str] | None = None) -> int:
    """Write the deployment file (or print it); exit 2 with one line per problem when it cannot be imported."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("serving_properties", help="the serving.properties to import")
    parser.add_argument("--container", required=True, help="the LMI image tag (or version) it runs on")
    parser.add_argument("--instance-type", help="the instance type it runs on")
    parser.add_argument("--model-id", help="the model (Hub id or s3:// prefix), when the file does not name it")
    parser.add_argument("--model-config", help="the model's config.json, for the checks that need it")
    parser.add_argument("--deployment", help="deployment name (default: from the model id)")
    parser.add_argument("--output", help="where to write the deployment YAML (default: print it)")
    args = parser.parse_args(argv)
    try:
        text = Path(args.serving_properties).read_text()
        settings, config = imported(text, args)
    except OSError as error:
        print(f"lmi-deploy: cannot read {args.serving_properties}: {error.strerror}", file=sys.stderr)
        return 2
    except ConfigError as error:
        for line in str(error).splitlines():
            print(f"lmi-deploy: {line}", file=sys.stderr)
        return 2
    document = yaml.safe_dump(settings, sort_keys=False)
    if args.output:
        Path(args.output).write_text(document)
        print(f"wrote {args.output}: {config.engine.value} {config.lmi_version}, render it with scripts/render.py")
    else:
        print(document, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
