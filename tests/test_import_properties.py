"""scripts/import_properties.py: an existing serving.properties becomes a deployment file that renders back to an
equivalent serving.properties (the same engine, handler, parallelism, dtype, lengths, timeout and extra lines)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmi_deploy.commands import import_properties
from lmi_deploy.config import load_config
from lmi_deploy.model_facts import BUNDLED
from lmi_deploy.render import serving_properties
from lmi_deploy.rules.properties_view import from_properties, parse_properties

CASES = [  # (serving.properties, container, instance type)
    (
        "engine=Python\noption.model_id=s3://bucket/llama-2-7b/\noption.rolling_batch=vllm\n"
        "option.tensor_parallel_degree=1\noption.dtype=fp16\noption.max_model_len=4096\n"
        "option.max_rolling_batch_size=32\noption.model_loading_timeout=900\noption.trust_remote_code=true\n"
        "option.gpu_memory_utilization=0.85\n",
        "0.28.0-lmi10.0.0-cu124",
        "ml.g5.2xlarge",
    ),
    (
        "engine=MPI\noption.model_id=s3://bucket/llama-2-7b/\noption.rolling_batch=lmi-dist\n"
        "option.tensor_parallel_degree=4\noption.dtype=bf16\noption.model_loading_timeout=1200\n",
        "0.26.0-deepspeed0.12.6-cu121",
        "ml.g5.12xlarge",
    ),
    (
        "engine=MPI\noption.model_id=s3://bucket/llama-2-7b/\noption.rolling_batch=trtllm\n"
        "option.tensor_parallel_degree=4\noption.max_input_len=1536\noption.max_output_len=512\n"
        "option.model_loading_timeout=1800\n",
        "0.27.0-tensorrtllm0.8.0-cu122",
        "ml.g5.12xlarge",
    ),
    (
        "engine=Python\noption.entryPoint=djl_python.transformers_neuronx\noption.model_id=s3://bucket/Llama-2-7b-hf/\n"
        "option.tensor_parallel_degree=2\noption.n_positions=2048\noption.dtype=fp16\nbatch_size=4\n"
        "option.model_loading_timeout=2400\noption.neuron_optimize_level=2\n",
        "0.27.0-neuronx-sdk2.18.1",
        "ml.inf2.xlarge",
    ),
    (
        "engine=DeepSpeed\noption.model_id=s3://bucket/gpt-j-6b/\noption.tensor_parallel_degree=2\n"
        "option.dtype=fp16\noption.max_tokens=2048\noption.model_loading_timeout=1200\n",
        "0.27.0-deepspeed0.12.6-cu121",
        "ml.g5.12xlarge",
    ),
]


def _meaning(text: str, container: str, instance: str) -> tuple[object, ...]:
    view = from_properties(text, container.split("-")[0], container_tag=container, instance_type=instance)
    return (
        view.engine,
        view.server_engine or "Python",
        view.rolling,
        view.tensor_parallel,
        view.dtype,
        view.max_sequence_length,
        view.max_batch_size,
        view.model_loading_timeout,
        view.model_id,
    )


@pytest.mark.parametrize(("text", "container", "instance"), CASES, ids=lambda v: str(v)[:24])
def test_import_renders_back_to_an_equivalent_file(tmp_path: Path, text: str, container: str, instance: str) -> None:
    source = tmp_path / "serving.properties"
    source.write_text(text)
    output = tmp_path / "imported.yaml"
    args = [str(source), "--container", container, "--instance-type", instance, "--output", str(output)]
    args += ["--model-config", str(BUNDLED / "meta-llama--Llama-2-7b-hf.json")] if "neuronx" in container else []
    assert import_properties.main([*args, "--deployment", "imported"]) == 0
    config = load_config({"config": str(output), "account": "111122223333"})
    rendered = "".join(f"{key}={value}\n" for key, value in serving_properties(config))
    before, after = _meaning(text, container, instance), _meaning(rendered, container, instance)
    # what the original leaves to the engine's default, lmi-deploy writes explicitly: compare what it says
    assert [a for b, a in zip(before, after, strict=True) if b is not None] == [b for b in before if b is not None]
    original = {key: value for _, key, value in parse_properties(text)}
    back = {key: value for _, key, value in parse_properties(rendered)}
    assert {k: v for k, v in original.items() if k in config.extra_properties} == config.extra_properties
    assert all(back[key] == value for key, value in config.extra_properties.items())
    assert yaml.safe_load(output.read_text())["handler"] == "builtin"


def test_what_cannot_be_imported_is_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "serving.properties"
    source.write_text("engine=Python\noption.entryPoint=model.py\noption.model_id=s3://bucket/m/\n")
    assert import_properties.main([str(source), "--container", "0.28.0"]) == 2
    assert "a handler of its own" in capsys.readouterr().err
    source.write_text("engine=Python\noption.rolling_batch=vllm\noption.tensor_parallel_degree=8\n")
    assert import_properties.main([str(source), "--container", "0.28.0", "--model-id", "s3://bucket/llama-7b/"]) == 2
    assert "LMI302 tensor_parallel_degree=8 does not fit" in capsys.readouterr().err
