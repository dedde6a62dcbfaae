#!/usr/bin/env python3
"""Check a deployment before paying for it, or lint a serving.properties you already have.

    python scripts/validate.py [--config FILE] [-c key=value ...]
    python scripts/validate.py --serving-properties FILE --container TAG-or-version \\
        [--instance-type TYPE] [--model-config config.json] [--startup-timeout SECONDS] [--json]

Errors (exit 2, one line each) would make the endpoint fail or silently misbehave; warnings (exit 0) merely look
odd. Checks that need a missing input are skipped with a warning. Needs no AWS credentials and, given the model
config, no network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from lmi_deploy import containers, instances, model_facts
from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment, report_lines
from lmi_deploy.render import container_environment, render_files
from lmi_deploy.report import cost_line
from lmi_deploy.rules.check import check_serving_properties
from lmi_deploy.rules.properties_view import from_properties, parse_properties
from lmi_deploy.rules.registry import Finding

_TAGGED = re.compile(r"^(LMI\d{3}) (.*)$")


def container_version(container: str) -> str:
    """``0.26.0``, ``0.26.0-deepspeed0.12.6-cu121`` or a full image URI -> ``0.26.0``."""
    tag = container.rsplit(":", 1)[-1] if "/" in container or ":" in container else container
    match = re.match(r"^(\d+\.\d+\.\d+)", tag)
    known = containers.all_versions()
    if not match or match.group(1) not in known:
        raise ConfigError(
            f"--container {container!r} is not an LMI version or image tag; known versions: {', '.join(known)}"
        )
    return match.group(1)


def model_facts_for(args: argparse.Namespace, text: str) -> tuple[model_facts.ModelFacts | None, str]:
    """--model-config, else what the file's model id finds (a local folder, bundled, the Hub, an estimate)."""
    if args.model_config:
        return model_facts.read_folder_or_file(Path(args.model_config)), args.model_config
    model_id = next((v for _, k, v in parse_properties(text) if k in ("option.model_id", "option.s3url")), "")
    if not model_id:
        return None, "the file names no model"
    if model_id.startswith("s3://"):
        estimate = model_facts.from_model_id(model_id)
        note = f"{estimate.parameters_from}" if estimate else "the weights are in S3"
        return estimate, f"no config.json for {model_id} ({note}); give --model-config"
    return model_facts.find(model_id, "main", None)


def lint(args: argparse.Namespace) -> tuple[list[Finding], list[str]]:
    version = container_version(args.container)
    if args.instance_type and instances.get(args.instance_type) is None:
        raise ConfigError(f"--instance-type {args.instance_type!r} is not a known accelerator instance")
    path = Path(args.serving_properties)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    facts, facts_note = model_facts_for(args, text)
    notes, findings = check_serving_properties(
        from_properties(
            text,
            version,
            container_tag=args.container,
            instance_type=args.instance_type,
            facts=facts,
            facts_note=facts_note,
            startup_timeout=args.startup_timeout,
            has_model_py=(path.parent / "model.py").exists(),
        )
    )
    return findings, [f"{path}: {notes[0]}", *notes[1:]]


def findings_of(error: ConfigError) -> list[Finding]:
    """A ConfigError's lines as findings, each with the rule id it starts with."""
    findings = []
    for line in str(error).splitlines():
        match = _TAGGED.match(line)
        findings.append(Finding("error", match.group(1), match.group(2)) if match else Finding("error", "input", line))
    return findings


def validate_config(args: argparse.Namespace) -> tuple[list[Finding], list[str]]:
    try:
        config = load_deployment(context_from_args(args), environment_defaults=environment_defaults(os.environ))
    except ConfigError as error:
        return findings_of(error), []
    singles = [m.config for m in config.models] if isinstance(config, MultiModelDeployment) else [config]
    try:  # what render refuses (values that cannot be written out), validate refuses too
        for single in singles:
            render_files(single)
            container_environment(single)
    except ConfigError as error:
        return findings_of(error), []
    if isinstance(config, MultiModelDeployment):
        warnings = [
            Finding(w.level, w.rule, f"{m.name}: {w.message}")
            for m in config.models
            for w in m.config.resolved.warnings
        ]
        warnings += [Finding("warning", *warning.split(" ", 1)) for warning in config.warnings]
        return warnings, [line for line in report_lines(config) if "warning:" not in line]
    notes = [f"{config.deployment}: {config.engine.value} {config.lmi_version} on {config.instance_type}"]
    cost = cost_line(config)
    return list(config.resolved.warnings), notes + config.resolved.notes + ([cost] if cost else [])


def main(argv: Sequence[str] | None = None) -> int:
    """Print problems (and what was derived); exit 2 when any is an error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--serving-properties", metavar="FILE", help="lint this file instead of a deployment config")
    parser.add_argument("--container", help="LMI version or image tag the file is for (with --serving-properties)")
    parser.add_argument("--instance-type", help="instance type, for the tensor-parallel checks")
    parser.add_argument(
        "--model-config", help="the model's config.json (or folder), for the head, memory and timeout checks"
    )
    parser.add_argument("--startup-timeout", type=int, help="ContainerStartupHealthCheckTimeoutInSeconds in use")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        if args.serving_properties:
            if not args.container:
                raise ConfigError(
                    "--serving-properties needs --container (an LMI version such as 0.26.0, or the image tag)"
                )
            findings, notes = lint(args)
        else:
            findings, notes = validate_config(args)
    except ConfigError as error:
        findings, notes = findings_of(error), []
    errors = [f for f in findings if f.level == "error"]
    if args.json:
        print(
            json.dumps(
                {
                    "ok": not errors,
                    "errors": [{"rule": f.rule, "message": f.message} for f in errors],
                    "warnings": [{"rule": f.rule, "message": f.message} for f in findings if f.level == "warning"],
                    "notes": notes,
                },
                indent=2,
            )
        )
    else:
        for note in notes:
            print(note)
        for finding in findings:
            print(f"{finding.level}: {finding}", file=sys.stderr if finding.level == "error" else sys.stdout)
        if not errors:
            print("ok" + (f" ({len(findings)} warning(s))" if findings else ""))
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
