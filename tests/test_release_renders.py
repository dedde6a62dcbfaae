"""Renders a release would mishandle are fixed or refused: 0.19.0's weights, streaming before 0.22.1, TensorRT-LLM's
length limit at 0.33.0 (what each release reads: lmi_deploy/runtime/versions.py, the upstream source)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmi_deploy.config import load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.render import render, serving_properties
from lmi_deploy.runtime.server import ModelServer


@pytest.mark.parametrize(
    "settings",
    [
        {"engine": "deepspeed", "handler": "builtin", "model_id": "EleutherAI/gpt-j-6b", "dtype": "fp16"},
        {"engine": "accelerate", "handler": "custom", "model_id": "google/flan-t5-xxl", "dtype": "bf16"},
    ],
)
def test_0_19_0_is_refused_with_the_reason(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({**settings, "lmi_version": "0.19.0", "instance_type": "ml.g5.48xlarge"})
    message = str(refused.value)
    assert "LMI 0.19.0 cannot load staged weights" in message and "downloads nothing from S3" in message
    assert "use lmi_version 0.20.0 or later" in message


def test_before_0_22_1_the_handler_is_rendered_without_streaming(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    settings = {"engine": "accelerate", "model_id": str(tiny_models["t5"]), "instance_type": "ml.g5.xlarge"}
    # a T5: 0.21.0's image pins transformers 4.26, before llama (LMI106)
    settings["kv_cache"] = "dynamic"  # generate() only: no static-cache self-check at load (seconds)
    config = load_config({**settings, "lmi_version": "0.21.0", "tensor_parallel_degree": "1", "dtype": "fp32"})
    assert not config.streaming
    assert any(w.rule == "LMI906" and "no Output.add_stream_content" in w.message for w in config.resolved.warnings)
    code = render(config, tmp_path / "code").directory
    server = ModelServer(code, tiny_models["t5"]).start()  # the version comes from the rendered header
    assert server.release.version == "0.21.0" and server.wait_ready(120), server.failure
    headers = {"Content-Type": "application/json"}
    asked = json.dumps({"inputs": "hello", "stream": True}).encode()
    reply = server.submit(asked, headers).result(timeout=60)
    assert reply.status == 400 and isinstance(reply.body, bytes)  # not the release's 424 AttributeError
    assert json.loads(reply.body)["error"] == (
        '"stream": true is refused: LMI 0.21.0 cannot stream (Output.add_stream_content arrives in 0.22.1)'
    )
    whole = server.submit(json.dumps({"inputs": "hello", "parameters": {"max_new_tokens": 2}}).encode(), headers)
    assert whole.result(timeout=60).status == 200
    streams = load_config({**settings, "lmi_version": "0.22.1", "tensor_parallel_degree": "1", "dtype": "fp32"})
    assert streams.streaming and not any(w.rule == "streaming" for w in streams.resolved.warnings)


@pytest.mark.parametrize(
    ("version", "limits"),
    [
        ("0.27.0", {"option.max_input_len": "3072", "option.max_output_len": "1024"}),  # the toolkit's keys
        ("0.32.0", {"option.max_input_len": "3072", "option.max_output_len": "1024"}),
        ("0.33.0", {"option.max_input_len": "3072", "option.max_seq_len": "4096"}),  # build flags: no max_output_len
    ],
)
def test_tensorrt_llm_length_limit_reaches_the_engine(version: str, limits: dict[str, str]) -> None:
    config = load_config({"config": "deployments/mistral-7b-trtllm.yaml", "lmi_version": version})
    entries = dict(serving_properties(config))
    assert {k: v for k, v in entries.items() if k.endswith(("_len", "_seq_len"))} == limits
