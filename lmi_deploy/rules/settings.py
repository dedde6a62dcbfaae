"""Settings as a whole: values that do not parse, unknown settings, and the container/instance they name."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from lmi_deploy import containers, errors, instances
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, parse_rule, rule
from lmi_deploy.rules.view import View

INVALID_VALUE = parse_rule(
    "LMI001",
    title="A setting's value has the wrong type or is out of range",
    why="The deployment cannot be built from a value the setting does not take.",
    fix="Use a value of the type and range the message names (README, table of settings).",
    example=Example(settings={"instance_count": "0"}),
    concern="settings",
)
UNKNOWN_SETTING = parse_rule(
    "LMI002",
    title="Unknown setting",
    why="A misspelled setting would be ignored silently; lmi-deploy refuses it and names the closest known one.",
    fix="Correct the name (the message suggests the closest), or remove it.",
    example=Example(settings={"tensor_paralel_degree": "2"}),
    concern="settings",
)
TOKEN_IN_CONFIG = parse_rule(
    "LMI003",
    title="A Hub token is put in the deployment itself",
    why="A token in a deployment file or command line ends up in version control, CloudFormation and logs.",
    fix="Store the token in Secrets Manager and set hf_token_secret to the secret's name.",
    example=Example(settings={"hf_token": "hf_not_a_real_token"}),
    concern="settings",
)
UNREADABLE_INPUT = parse_rule(
    errors.UNREADABLE_INPUT,
    title="A deployment file or model config.json cannot be read",
    why="Validation cannot start from a file that does not exist or does not parse.",
    fix="Fix the path or the file's syntax (the message gives the line and column).",
    example=Example(settings={"model_config": "does/not/exist/config.json"}),
    concern="settings",
)


@rule(
    "LMI005",
    title="No container of this engine at this lmi_version",
    why="SageMaker can only pull an image that AWS publishes; a version without one fails at deploy.",
    fix="Pick one of the versions the message lists for the engine.",
    example=Example(settings={"engine": "vllm", "lmi_version": "0.21.0"}),
    needs=("config",),
    gate=True,
)
def version_has_container(view: View, derived: Derived) -> Iterator[str]:
    engine = view.config.engine
    known = containers.versions(engine)
    if view.version not in known:
        yield (
            f"lmi_version={view.version!r} has no {engine.value} container; versions that ship it: {', '.join(known)}"
        )


@rule(
    "LMI006",
    title="No image of this engine and version in the region",
    why="The endpoint pulls its image from its own region's registry.",
    fix="Deploy to one of the regions the message lists, or pick another version.",
    example=Example(settings={"engine": "vllm", "lmi_version": "0.28.0", "region": "mars-north-1"}),
    needs=("config",),
    gate=True,
)
def region_has_image(view: View, derived: Derived) -> Iterator[str]:
    config = view.config
    if view.version not in containers.versions(config.engine):
        return
    known = containers.regions(config.engine, view.version)
    if config.region not in known:
        yield (
            f"region={config.region!r} has no {config.engine.value} {view.version} image; regions that do: "
            f"{', '.join(known)}"
        )


@rule(
    "LMI007",
    title="Unknown instance type",
    why="lmi-deploy sizes the model against the instance's accelerators; it cannot for a type it does not know.",
    fix="Use an accelerator instance type (the message suggests the closest).",
    example=Example(settings={"engine": "vllm", "instance_type": "ml.g5.13xlarge"}),
    gate=True,
)
def instance_known(view: View, derived: Derived) -> Iterator[str]:
    if view.instance is None and view.instance_type:
        close = difflib.get_close_matches(view.instance_type, list(instances.catalog()), n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(instances.catalog())}"
        yield f"instance_type={view.instance_type!r} is not a known accelerator instance; {hint}"


SKIPPED = "LMI010"  # registered by the runner, which emits it
