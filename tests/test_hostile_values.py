"""Hostile values in every setting, through every template: refused with a message naming the setting, or rendered
into code whose structure is exactly that of a clean render (the value sits in string constants only) and into
serving.properties that reads back as the same settings. And validate says ok exactly when render succeeds.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lmi_deploy import partition
from lmi_deploy.commands import validate
from lmi_deploy.config import DeploymentConfig, load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import load_multi_model
from lmi_deploy.render import container_environment, render_files, serving_properties
from tests.test_render import parse_properties

PAYLOADS = (
    'x"""; __import__(\'os\').system(\'touch pwned\'); """',
    "x'''; __import__('os').system('touch pwned'); '''",
    "')+__import__('os').system('touch.pwned')+('",  # only characters S3 keys may hold: reaches the templates
    "'\n import os",
    "\nimport os",
    "{{ 7*7 }}",
    "{% raw %}",
    "\n",
    "\r",
    "#",
    " # comment",
    "\\",
    "\x00",
    "\x1b[2J",
    "\u2028import os",
    "\u2029",
    "\u0085",
    "$(touch pwned)",
)
ACCOUNT = "111122223333"
KMS_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def model_configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A small decoder-only config.json per architecture the templates serve, and a Dockerfile folder."""
    root = tmp_path_factory.mktemp("hostile")
    shapes = {
        "llama": {"hidden_size": 256, "num_attention_heads": 8, "num_hidden_layers": 2, "intermediate_size": 512},
        "gptj": {"n_embd": 256, "n_head": 8, "n_layer": 2},
    }
    paths = {}
    for model_type, shape in shapes.items():
        path = root / f"{model_type}.json"
        path.write_text(json.dumps({"model_type": model_type, "vocab_size": 1000, **shape, "torch_dtype": "float16"}))
        paths[model_type] = str(path)
    (root / "image").mkdir()
    (root / "image" / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    paths["dockerfile_dir"] = str(root / "image")
    return paths


def _clean_values(paths: dict[str, str]) -> dict[str, str]:
    """A valid value of every setting (the prefix the payloads are appended to)."""
    return {
        "deployment": "demo",
        "model_id": "s3://lmi-demo-weights/models/demo",
        "model_revision": "main",
        "model_type": "llama",
        "model_config": paths["llama"],
        "engine": "accelerate",
        "lmi_version": "0.27.0",
        "handler": "custom",
        "tensor_parallel_degree": "1",
        "dtype": "fp16",
        "max_sequence_length": "2048",
        "max_batch_size": "4",
        "weights_delivery": "container",
        "partitioned": "false",
        "kv_cache": "static",
        "cuda_graphs": "true",
        "compile": "false",
        "extra_properties": "{}",
        "adapters": "[]",
        "lora": "",
        "fast_load": "true",
        "tp_all_reduce": "nccl",
        "fuse_projections": "true",
        "instance_type": "ml.g5.2xlarge",
        "instance_count": "1",
        "model_data_download_timeout": "600",
        "container_startup_health_check_timeout": "900",
        "model_loading_timeout": "900",
        "volume_size_gb": "100",
        "autoscaling_max_instances": "2",
        "autoscaling_min_instances": "1",
        "autoscaling_schedules": "[]",
        "autoscaling_target_invocations": "4",
        "autoscaling_scale_in_cooldown": "600",
        "autoscaling_scale_out_cooldown": "120",
        "image": "lmi",
        "dockerfile_dir": paths["dockerfile_dir"],
        "vpc_subnet_ids": "subnet-0123456789abcdef0",
        "vpc_security_group_ids": "sg-0123456789abcdef0",
        "vpc_id": "vpc-0123456789abcdef0",
        "network_isolation": "false",
        "kms_key": KMS_KEY,
        "hf_token_secret": "hub-token",
        "inference_mode": "realtime",
        "async_output_s3_path": "s3://lmi-demo-output/responses/",
        "async_notifications": "false",
        "async_max_concurrent_invocations": "4",
        "autoscaling_target_backlog_per_instance": "5",
        "data_capture": "false",
        "data_capture_sampling_percent": "50",
        "alarm_email": "ops@example.com",
        "alarm_model_latency_p99_ms": "30000",
        "request_timeout": "60",
        "alarm_no_healthy_instances_minutes": "5",
        "update_strategy": "all-at-once",
        "update_step_percent": "10",
        "update_wait_seconds": "600",
        "account": ACCOUNT,
        "bootstrap_version_rule": "true",
        "region": "us-east-1",
    }


# Settings that take effect only beside another one: the hostile value is tried in that company.
_COMPANY = {
    "async_output_s3_path": {"inference_mode": "async"},
    "dockerfile_dir": {"image": "custom"},
    "vpc_subnet_ids": {"vpc_id": "vpc-0123456789abcdef0"},
}

Renderer = Callable[[dict[str, str]], dict[str, str]]


def _single(config: DeploymentConfig) -> dict[str, str]:
    files = render_files(config)
    assert parse_properties(files["serving.properties"]) == dict(serving_properties(config))
    for key, value in container_environment(config).items():
        assert value.isprintable() and value == value.strip(), (key, value)
    return files


def _variants(paths: dict[str, str]) -> dict[str, tuple[dict[str, str], Renderer]]:
    """Each template, reached as users reach it: (base settings, settings -> rendered files)."""

    def single(context: dict[str, str]) -> dict[str, str]:
        return _single(load_config(context, environment_defaults={"account": ACCOUNT}))

    def partition_script(context: dict[str, str]) -> dict[str, str]:
        config = load_config(context, environment_defaults={"account": ACCOUNT})
        return {**_single(config), "partition.py": partition.partition_script(config)}

    def multi(context: dict[str, str]) -> dict[str, str]:
        per_model = {"model_id", "model_revision", "model_type", "model_config", "dtype", "kv_cache"}
        model = {"name": "one", **{k: v for k, v in context.items() if k in per_model}}
        top = {k: v for k, v in context.items() if k not in per_model}
        multi = load_multi_model({}, {**top, "multi_model": "mme", "models": [model]}, {"account": ACCOUNT})
        return _single(multi.models[0].config)

    gptj = {"model_type": "gptj", "model_config": paths["gptj"], "instance_type": "ml.g5.12xlarge"}
    return {
        "accelerate": ({}, single),
        "fastertransformer": (
            {**gptj, "engine": "fastertransformer", "lmi_version": "0.21.0", "tensor_parallel_degree": "4"},
            single,
        ),
        "deepspeed": ({**gptj, "engine": "deepspeed", "lmi_version": "0.26.0", "tensor_parallel_degree": "2"}, single),
        "partition": (
            {**gptj, "engine": "fastertransformer", "lmi_version": "0.21.0", "tensor_parallel_degree": "4"},
            partition_script,
        ),
        "multi-model": ({"instance_type": "ml.g5.12xlarge"}, multi),
    }


def _shape(source: str) -> str:
    """The module's syntax tree with every string constant blanked: what the code does, not what it says."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def _validate_ok(context: dict[str, str], capsys: pytest.CaptureFixture[str]) -> bool:
    argv = [arg for key, value in context.items() for arg in ("-c", f"{key}={value}")]
    code = validate.main(argv)
    capsys.readouterr()
    return code == 0


_BASE = ("deployment", "model_id", "model_config", "engine", "lmi_version", "instance_type", "hf_token_secret")


@pytest.mark.parametrize("variant", ["accelerate", "fastertransformer", "deepspeed", "partition", "multi-model"])
def test_hostile_values_never_reach_code_or_properties(
    variant: str, model_configs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    clean = _clean_values(model_configs)
    settings = [field.alias or name for name, field in DeploymentConfig.model_fields.items()]
    assert sorted(settings) == sorted(clean), "a new setting needs a clean value here, so that it is tried too"
    overrides, render_with = _variants(model_configs)[variant]
    base = {**{k: clean[k] for k in _BASE}, "region": "us-east-1", **overrides}
    if variant == "multi-model":
        base.pop("hf_token_secret")  # multi-model endpoints take no Hub token secret
    baselines: dict[str, dict[str, str]] = {}
    counts = {"refused": 0, "rendered": 0}
    accepted: list[str] = []
    for setting in settings:
        context = {**base, **_COMPANY.get(setting, {})}
        if setting not in base:
            context[setting] = clean[setting]
        try:
            baseline = baselines.setdefault(setting, render_with(context))
        except ConfigError:
            baseline = baselines.setdefault(setting, render_with(base))
            context = dict(base)
        prefix = context.get(setting, clean[setting])
        for payload in PAYLOADS:
            for value in (payload, prefix + payload):
                hostile = {**context, setting: value}
                try:
                    files = render_with(hostile)
                except ConfigError as error:
                    assert setting in str(error), f"{setting}={value!r}: the message does not name it: {error}"
                    counts["refused"] += 1
                    rendered = False
                else:
                    for name, text in files.items():
                        if name.endswith(".py"):
                            assert _shape(text) == _shape(baseline[name]), f"{setting}={value!r} changed {name}"
                    counts["rendered"] += 1
                    accepted.append(f"{setting}={value!r}")
                    rendered = True
                if variant in ("accelerate", "fastertransformer"):
                    assert _validate_ok(hostile, capsys) == rendered, f"validate and render disagree on {setting}"
    total = counts["refused"] + counts["rendered"]
    assert total == len(settings) * len(PAYLOADS) * 2
    assert counts["rendered"] > 0  # some hostile text is legal (quotes in S3 keys) and must still land as data
    print(f"{variant}: {len(settings)} settings x {len(PAYLOADS)} payloads x 2 = {total}: {counts}, 0 injections")
    print(f"  accepted as data: {', '.join(accepted)}")


def test_templates_place_values_only_as_python_literals() -> None:
    """Every value a Python template prints goes through the one pyrepr filter (no raw text in code or docstrings),
    and pyrepr's output evaluates back to the value for every payload."""
    import re

    from lmi_deploy.render import TEMPLATES_DIR, python_literal

    templates = sorted(TEMPLATES_DIR.glob("*.py.j2"))
    assert len(templates) >= 5
    for template in templates:
        for expression in re.findall(r"{{(.*?)}}", template.read_text(), re.DOTALL):
            assert expression.strip().endswith("| pyrepr"), f"{template.name}: {{{{{expression}}}}} is not a literal"
    for payload in PAYLOADS:
        value = {"key": [payload, 1, None, True, 0.5]}
        assert ast.literal_eval(python_literal(value)) == value
    with pytest.raises(ConfigError, match="internal"):
        python_literal(float("nan"))


def test_validate_refuses_what_render_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A local model folder is almost any path; one ending in a space cannot be written to serving.properties.
    validate used to say ok and render then refused."""
    folder = tmp_path / "my model "
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "t5", "d_model": 64, "num_heads": 4, "num_layers": 2, "d_ff": 128, "vocab_size": 99})
    )
    context = {"model_id": str(folder), "deployment": "local-demo"}
    with pytest.raises(
        ConfigError,
        match=r"model_id=.* cannot be written to the serving.properties header: it starts or ends with whitespace",
    ):
        render_files(load_config(context, environment_defaults={"account": ACCOUNT}))
    assert not _validate_ok(context, capsys)


def test_longest_valid_s3_model_id_synthesizes(tmp_path: Path) -> None:
    """The longest S3 prefix validate accepts also synthesizes (the stack description used to exceed 1024 bytes)."""
    from tests.test_stacks import synth

    prefix = "/".join(["p" * 200] * 5)
    model_id = f"s3://acme-weights/{prefix}"
    config, stacks, _ = synth(tmp_path, model_id=model_id, model_type="t5")
    assert config.weights_s3_uri == model_id + "/"
    assert len(stacks.endpoint.template_options.description or "") <= 1024
