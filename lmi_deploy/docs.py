"""The generated pages of docs/: ``python -m lmi_deploy.docs`` writes them, ``--check`` fails when one is stale.

docs/settings.md comes from the descriptions of the config's fields (``Field(description=...)`` in
:mod:`lmi_deploy.settings` and :mod:`lmi_deploy.multi_model`): a setting is documented where it is defined, once.
docs/rules.md comes from the rule registry (:mod:`lmi_deploy.rules.docs`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lmi_deploy.config import DeploymentConfig, ScalingSchedule
from lmi_deploy.multi_model import FILE_KEYS, ComponentSettings
from lmi_deploy.rules import docs as rules_docs

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python -m lmi_deploy.docs"

# docs/settings.md's sections, in order: every field of DeploymentConfig appears in exactly one.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("The model", ("deployment", "model_id", "model_revision", "model_config", "model_type")),
    (
        "Engine and container",
        (
            "engine",
            "lmi_version",
            "handler",
            "tensor_parallel_degree",
            "dtype",
            "max_sequence_length",
            "max_batch_size",
            "request_timeout",
            "extra_properties",
        ),
    ),
    ("Weights", ("weights_delivery", "partitioned")),
    ("LoRA adapters", ("adapters", "lora")),
    (
        "The Accelerate handler (`handler=custom`)",
        ("kv_cache", "cuda_graphs", "compile", "fuse_projections", "fast_load", "tp_all_reduce"),
    ),
    (
        "Instances and timeouts",
        (
            "instance_type",
            "instance_count",
            "model_data_download_timeout",
            "container_startup_health_check_timeout",
            "model_loading_timeout",
            "volume_size_gb",
        ),
    ),
    (
        "Scaling",
        (
            "autoscaling_max_instances",
            "autoscaling_min_instances",
            "autoscaling_schedules",
            "autoscaling_target_invocations",
            "autoscaling_scale_in_cooldown",
            "autoscaling_scale_out_cooldown",
        ),
    ),
    ("Image", ("image", "dockerfile_dir")),
    (
        "Network and secrets",
        ("vpc_subnet_ids", "vpc_security_group_ids", "vpc_id", "network_isolation", "kms_key", "hf_token_secret"),
    ),
    (
        "Asynchronous inference",
        (
            "inference_mode",
            "async_output_s3_path",
            "async_notifications",
            "async_max_concurrent_invocations",
            "autoscaling_target_backlog_per_instance",
        ),
    ),
    ("Data capture", ("data_capture", "data_capture_sampling_percent")),
    (
        "Alarms and updates",
        (
            "alarm_email",
            "alarm_model_latency_p99_ms",
            "alarm_no_healthy_instances_minutes",
            "update_strategy",
            "update_step_percent",
            "update_wait_seconds",
        ),
    ),
    ("Account and CDK", ("account", "region", "bootstrap_version_rule")),
)

_EXAMPLE_ERROR = (
    "lmi-deploy: LMI302 tensor_parallel_degree=8 does not fit ml.g5.12xlarge, which has 4 GPUs; "
    "use one of 1, 2, 4, or a larger instance"
)
_EXAMPLE_REPORT = (
    "lmi-deploy:   11.13B parameters (computed from config.json); memory per accelerator at TP4: 10.4 GiB weights "
    "+ 6.0 GiB KV cache (8 sequences) + 1.5 GiB overhead = 17.9 GiB of 24.0 GiB usable per GPU -> fits"
)
_HEADER = f"""# Settings

Generated from the config's field descriptions (`lmi_deploy/config.py`, `lmi_deploy/multi_model.py`) by
`{COMMAND}`; do not edit by hand: change the `Field(description=...)` and run the command
(`tests/test_docs.py` fails while this page is stale).

Sources, lowest to highest precedence: built-in defaults < account/region of your credentials < a deployment file
(`-c config=deployments/NAME.yaml`) < individual values (`-c key=value`). Every setting is checked before anything is
synthesized; an unknown key, a wrong type or an impossible combination stops with one line per problem naming the
key, the value and what to do (typos get a suggestion), e.g.

```
{_EXAMPLE_ERROR}
```

A valid config prints what was derived and the memory estimate (on synth, render and validate), e.g.

```
{_EXAMPLE_REPORT}
```

The rules behind those messages: [rules.md](rules.md). What each setting costs beyond the instances is said in its
row; the instances' prices are in [the README](../README.md#what-it-costs).

Example deployment files (`deployments/`, all validate and synthesize in the tests): `flan-t5-xxl.yaml` (the seed:
FasterTransformer TP4), `flan-ul2-bf16.yaml` (FasterTransformer 0.24.0), `gpt-j-6b-builtin.yaml` (FasterTransformer
no-code on p3), `gpt-j-6b-deepspeed.yaml` (DeepSpeed 0.27.0 TP2), `llama-2-7b-vllm.yaml` (vLLM, auto TP/dtype; also
autoscales 1-3 instances with a night schedule), `mistral-7b-trtllm.yaml` (TensorRT-LLM TP4), `llama-2-7b-inf2.yaml`
(NeuronX on inf2.xlarge). Several models behind one endpoint ([multi-model.md](multi-model.md)):
`chat-llms-inference-components.yaml` (three 7-8B vLLM models as inference components, one scaling to zero) and
`small-models-mme.yaml` (Flan-T5-Large and TinyLlama on one multi-model endpoint).
"""


def _default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if value == ():
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(key: str, default: str, description: str) -> str:
    return f"| `{key}` | {_cell(default)} | {_cell(description)} |"


def _table(model: type[BaseModel], keys: Sequence[str]) -> list[str]:
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    rows = ["| Setting | Default | What it does (and which versions accept it, what it costs) |", "|---|---|---|"]
    for key in keys:
        field = fields[key]
        if not field.description:
            raise ValueError(f"{model.__name__}.{key} has no description: add Field(description=...)")
        rows.append(_row(key, _default(field), field.description))
    return rows


def _placed_keys() -> list[str]:
    placed = [key for _, keys in SECTIONS for key in keys]
    fields = [field.alias or name for name, field in DeploymentConfig.model_fields.items()]
    missing, twice = set(fields) - set(placed), {key for key in placed if placed.count(key) > 1}
    if missing or twice or set(placed) - set(fields):
        raise ValueError(
            f"lmi_deploy/docs.py SECTIONS must place every setting once: missing {sorted(missing)}, twice "
            f"{sorted(twice)}, unknown {sorted(set(placed) - set(fields))}"
        )
    return placed


def settings_page() -> str:
    """docs/settings.md: every setting with its default and what it does, by section."""
    _placed_keys()
    lines = [_HEADER]
    for title, keys in SECTIONS:
        lines += [f"## {title}", "", *_table(DeploymentConfig, keys), ""]
    schedule_keys = list(ScalingSchedule.model_fields)
    lines += ["### Each of `autoscaling_schedules`", "", *_table(ScalingSchedule, schedule_keys), ""]
    lines += [
        "## Multi-model files",
        "",
        "A file with a `models:` list ([multi-model.md](multi-model.md)) takes every setting above (the model settings "
        "at the top are defaults for every model), and these:",
        "",
        "| Setting | Default | What it does |",
        "|---|---|---|",
        *(_row(key, default, text) for key, (default, text) in FILE_KEYS.items()),
        "",
        "Per model, with `multi_model: inference_components`:",
        "",
        *_table(ComponentSettings, list(ComponentSettings.model_fields)),
    ]
    return "\n".join(lines).rstrip() + "\n"


# Every generated page: its path under the repository and what writes it.
PAGES: dict[str, Callable[[], str]] = {"docs/settings.md": settings_page, "docs/rules.md": rules_docs.render}


def main(argv: Sequence[str] | None = None) -> int:
    """Write every generated page (or, with ``--check``, exit 1 naming each stale one)."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is not current")
    args = parser.parse_args(argv)
    stale = []
    for relative, render in PAGES.items():
        path, text = ROOT / relative, render()
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(relative)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {relative}")
    for relative in stale:
        print(
            f"lmi-deploy: {relative} is stale (the code it is generated from changed); run {COMMAND}", file=sys.stderr
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
