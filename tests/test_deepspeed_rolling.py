"""DeepSpeed rolling batch (``engine: DeepSpeed-rolling``): what it renders, what it refuses, how its files read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmi_deploy import containers
from lmi_deploy.commands import import_properties
from lmi_deploy.config import ConfigError, load_config
from lmi_deploy.containers import Engine
from lmi_deploy.render import render
from lmi_deploy.rules.check import check_serving_properties
from lmi_deploy.rules.properties_view import from_properties

_BASE = {"engine": "deepspeed-rolling", "model_id": "EleutherAI/gpt-j-6b", "instance_type": "ml.g5.12xlarge"}


def test_it_ships_where_djl_serving_has_it() -> None:
    assert containers.versions(Engine.DEEPSPEED_ROLLING) == ["0.25.0", "0.26.0", "0.27.0"]
    assert containers.framework(Engine.DEEPSPEED_ROLLING, "0.26.0") == "djl-deepspeed"


def test_renders_the_rolling_batch_djl_tests_run(tmp_path: Path) -> None:
    config = load_config({**_BASE, "lmi_version": "0.26.0", "max_batch_size": "16", "max_sequence_length": "2048"})
    assert (config.handler, config.resolved.dtype, config.resolved.tensor_parallel_degree) == ("builtin", "bf16", 1)
    code = render(config, tmp_path)
    assert code.files == ("serving.properties",)
    assert (code.directory / "serving.properties").read_text() == (
        "# Rendered by lmi-deploy for EleutherAI/gpt-j-6b (container djl-inference:0.26.0-deepspeed0.12.6-cu121). "
        "Do not edit: re-render.\n"
        "engine=DeepSpeed\n"
        "option.entryPoint=djl_python.deepspeed\n"
        f"option.model_id={config.weights_s3_uri}\n"
        "option.tensor_parallel_degree=1\n"
        "option.dtype=bf16\n"
        f"option.model_loading_timeout={config.resolved.model_loading_timeout}\n"
        "option.rolling_batch=deepspeed\n"
        "option.max_rolling_batch_size=16\n"
        "option.max_tokens=2048\n"
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"lmi_version": "0.24.0"}, "0.25.0, 0.26.0, 0.27.0"),  # the rolling batch arrives in 0.25.0
        ({"lmi_version": "0.28.0"}, "0.25.0, 0.26.0, 0.27.0"),  # DeepSpeed left LMI with 0.28.0
        ({"model_id": "google/flan-t5-xxl"}, "LMI102"),  # no kernel injection for T5: the rolling batch refuses it
        ({"handler": "custom"}, "LMI701"),
        ({"dtype": "fp32"}, "LMI401"),
        ({"partitioned": "true"}, "LMI901"),
    ],
)
def test_refuses_what_the_container_would_fail_on(settings: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config({**_BASE, **settings})


def test_an_existing_file_of_it_is_recognised_and_imported(tmp_path: Path) -> None:
    text = (
        "engine=DeepSpeed\noption.model_id=s3://bucket/gpt-neox-20b/\noption.tensor_parallel_degree=4\n"
        "option.rolling_batch=deepspeed\noption.max_rolling_batch_size=4\noption.model_loading_timeout=1800\n"
    )
    view = from_properties(text, "0.26.0", container_tag="0.26.0-deepspeed0.12.6-cu121")
    assert view.engine is Engine.DEEPSPEED_ROLLING
    assert [f.rule for f in check_serving_properties(view)[1] if f.level == "error"] == []
    plain = from_properties(text.replace("option.rolling_batch=deepspeed\n", ""), "0.26.0")
    assert plain.engine is Engine.DEEPSPEED  # the same engine= without the rolling batch stays DeepSpeed
    source = tmp_path / "serving.properties"
    source.write_text(text)
    out = tmp_path / "deployment.yaml"
    assert import_properties.main([str(source), "--container", "0.26.0", "--output", str(out)]) == 0
    assert "engine: DeepSpeed-rolling" in out.read_text()
