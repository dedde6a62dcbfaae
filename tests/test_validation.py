"""Model facts, derived (auto) values, and linting an existing serving.properties through scripts/validate.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy import model_facts
from lmi_deploy.commands import validate
from lmi_deploy.config import load_config
from lmi_deploy.errors import ConfigError

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "num_hidden_layers": 22,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
}


def write_model(folder: Path, config: dict, total_size: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if total_size is not None:
        index = {"metadata": {"total_size": total_size}, "weight_map": {}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def test_facts_from_a_local_model_folder_prefer_the_safetensors_index(tmp_path: Path) -> None:
    computed = model_facts.read_folder_or_file(write_model(tmp_path / "a", TINY_LLAMA))
    assert (computed.attention_heads, computed.kv_heads, computed.layers, computed.head_dim) == (32, 4, 22, 64)
    assert computed.parameters == pytest.approx(1.1e9, rel=0.02)  # TinyLlama-1.1B's shape
    assert computed.parameters_from == "computed from config.json"
    assert computed.native_dtype == "bf16" and computed.max_positions == 2048
    indexed = model_facts.read_folder_or_file(write_model(tmp_path / "b", TINY_LLAMA, total_size=2_200_000_000))
    assert indexed.parameters == 1_100_000_000 and indexed.parameters_from == "safetensors index"
    # KV cache per token: K and V x 4 KV heads x 64 dims x 2 bytes x 22 layers
    assert indexed.kv_cache_bytes_per_token("bf16") == 2 * 4 * 64 * 2 * 22


def test_t5_facts_count_encoder_and_decoder() -> None:
    facts, source = model_facts.find("google/flan-t5-xxl", "main", None)
    assert facts is not None and source.startswith("bundled")
    assert facts.is_encoder_decoder and facts.encoder_layers == facts.layers == 24
    assert facts.parameters == pytest.approx(11.13e9, rel=0.01)


def test_model_id_as_local_folder_and_model_config_next_to_the_deployment(tmp_path: Path, deployment_file) -> None:
    folder = write_model(tmp_path / "tiny-llama", TINY_LLAMA)
    config = load_config({"engine": "vllm", "model_id": str(folder), "instance_type": "ml.g5.xlarge"})
    assert config.facts is not None and config.facts.source == str(folder / "config.json")
    assert config.resolved.tensor_parallel_degree == 1 and config.resolved.dtype == "bf16"

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.json").write_text(json.dumps(TINY_LLAMA))
    path = deployment_file("engine: vllm\nmodel_id: acme/private-llama\nmodel_config: configs/config.json\n")
    config = load_config({"config": str(path)})
    assert config.facts is not None and config.facts.kv_heads == 4


def test_malformed_model_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"^LMI004 .*config.json is not valid JSON"):
        load_config({"model_config": str(tmp_path / "config.json"), "model_id": "x/y"})


def test_model_facts_bend_across_families_and_missing_numbers_skip_only_their_rules(tmp_path: Path) -> None:
    mpt = {
        "model_type": "mpt",
        "d_model": 4096,
        "n_heads": 32,
        "n_layers": 32,
        "vocab_size": 50432,
        "max_seq_len": 2048,
        "expansion_ratio": 4,
        "attn_config": {"alibi": True},
    }
    falcon = {
        "model_type": "falcon",
        "hidden_size": 4544,
        "n_head": 71,
        "n_layer": 32,
        "vocab_size": 65024,
        "multi_query": True,
    }
    facts = model_facts.from_config(mpt, source="mpt")
    assert (facts.attention_heads, facts.kv_heads, facts.layers, facts.max_positions) == (32, 32, 32, 2048)
    assert facts.parameters == pytest.approx(6.7e9, rel=0.05) and facts.missing == ()
    facts = model_facts.from_config(falcon, source="falcon")
    assert (facts.attention_heads, facts.kv_heads, facts.layers) == (71, 1, 32)
    # a config.json without the numbers: validated, and the rules that need them are named as skipped
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    config = load_config({"model_config": str(tmp_path / "config.json"), "model_id": "acme/yy", "engine": "vllm"})
    skipped = [w.message for w in config.resolved.warnings if w.rule == "LMI010"]
    assert len(skipped) == 1 and "LMI303" in skipped[0] and "LMI502" in skipped[0], skipped


def test_unknown_model_is_validated_with_a_warning(tmp_path: Path) -> None:
    config = load_config(
        {"engine": "vllm", "model_id": "acme/unknown-model", "tensor_parallel_degree": "2", "dtype": "bf16"}
    )
    assert config.facts is None
    assert [w.rule for w in config.resolved.warnings] == ["LMI010"]
    assert "set model_config" in config.resolved.warnings[0].message
    assert config.resolved.model_data_download_timeout == 600  # the floor, not a guess


def test_auto_values_are_derived_with_reasons() -> None:
    config = load_config({"engine": "accelerate", "model_id": "google/flan-ul2", "instance_type": "ml.g5.12xlarge"})
    resolved = config.resolved
    assert (resolved.dtype, resolved.tensor_parallel_degree) == ("bf16", 4)
    assert "dtype=auto -> bf16 (A10G and Accelerate support bf16)" in resolved.notes
    assert any(n.startswith("tensor_parallel_degree=auto -> 4 (TP1 needs") for n in resolved.notes)
    # T5 on V100: no bf16, and fp16 overflows: fp32
    v100 = load_config({"engine": "accelerate", "instance_type": "ml.p3.16xlarge"})
    assert v100.resolved.dtype == "fp32"
    # compile time goes into the startup timeout
    trt = load_config({"engine": "tensorrt-llm", "model_id": "meta-llama/Llama-2-7b-hf"})
    assert trt.resolved.container_startup_health_check_timeout > trt.resolved.model_data_download_timeout
    assert trt.resolved.model_loading_timeout == trt.resolved.container_startup_health_check_timeout


LINT_CASES = [
    (  # vLLM's name for option.quantize, an accepted alias from 0.32.0 (catalog): elsewhere a warning, not a typo
        "option.quantization=awq\n",
        "0.28.0",
        "warning",
        "option.quantization is not read by LMI 0.28.0 (read in 0.32.0-0.38.0)",
    ),
    ("option.tensor_parallel_degre=4\n", "0.28.0", "warning", "did you mean option.tensor_parallel_degree?"),
    ("option.rolling_batch=disable\n", "0.26.0", "error", "turns rolling batch ON even as 'disable'; delete the line"),
    (
        "option.rolling_batch=scheduler\n",
        "0.33.0",
        "error",
        "option.rolling_batch=scheduler: LMI 0.33.0 accepts auto, disable, lmi-dist, tnx, trtllm, vllm",
    ),
    (
        "option.tensor_parallel_degree=max\n",
        "0.23.0",
        "error",
        "tensor_parallel_degree=max is read only from LMI 0.24.0",
    ),
    ("option.tensor_parallel_degree=4 \n", "0.28.0", "error", "trailing spaces and inline '#' comments"),
    ("option.dtype=fp16 # half\n", "0.28.0", "error", "trailing spaces and inline '#' comments"),
    ("option.trust_remote_code=yes\n", "0.28.0", "error", "option.trust_remote_code=yes: expected true or false"),
    ("engine=DeepSpeed\n", "0.28.0", "error", "engine=DeepSpeed: LMI 0.28.0 knows engine MPI, Python"),
    (
        "option.entryPoint=djl_python.transformers-neuronx\n",
        "0.26.0",
        "error",
        "renamed djl_python.transformers_neuronx in 0.24.0",
    ),
    (
        "option.model_id=s3://a/b/\noption.s3url=s3://a/b/\n",
        "0.23.0",
        "error",
        "option.model_id and option.s3url are both set",
    ),
    ("option.model_loading_timeout=900\n", "0.28.0", "error", "exceeds the startup health-check timeout 600"),
    (
        "option.max_tokens=1024\n",
        "0.30.0",
        "warning",
        "option.max_tokens is not read by LMI 0.30.0 (read in 0.19.0-0.27.0, 0.33.0, 0.35.0-0.38.0)",
    ),
    ("option.my_own_flag=1\n", "0.28.0", "warning", "option.my_own_flag is read by no LMI release"),
    ("engine=Python\n", "0.28.0", "warning", "option.model_loading_timeout is not set"),
]


@pytest.mark.parametrize(("text", "version", "level", "message"), LINT_CASES)
def test_lint_serving_properties(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, version: str, level: str, message: str
) -> None:
    path = tmp_path / "serving.properties"
    path.write_text(
        text
        + ("option.model_loading_timeout=300\n" if "model_loading_timeout" not in text and level == "error" else "")
    )
    code = validate.main(
        ["--serving-properties", str(path), "--container", version, "--startup-timeout", "600", "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    messages = [f["message"] for f in report["errors" if level == "error" else "warnings"]]
    assert any(message in m for m in messages), messages
    assert code == (2 if level == "error" else 0)


def test_lint_with_instance_and_model_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_model(
        tmp_path / "model", {**TINY_LLAMA, "num_attention_heads": 12, "num_key_value_heads": 12, "hidden_size": 768}
    )
    path = tmp_path / "serving.properties"
    path.write_text("engine=Python\noption.tensor_parallel_degree=8\noption.model_loading_timeout=600\n")
    args = [
        "--serving-properties",
        str(path),
        "--container",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.29.0-lmi11.0.0-cu124",
    ]
    assert validate.main([*args, "--instance-type", "ml.g5.12xlarge"]) == 2
    out = capsys.readouterr()
    assert "LMI302 tensor_parallel_degree=8 does not fit ml.g5.12xlarge, which has 4 GPUs" in out.err
    assert "LMI303" in out.out and "give --model-config" in out.out  # skipped, said so
    assert validate.main([*args, "--instance-type", "ml.p4d.24xlarge", "--model-config", str(folder)]) == 2
    assert "does not divide its 12 attention heads" in capsys.readouterr().err
    path.write_text("engine=Python\noption.tensor_parallel_degree=4\noption.model_loading_timeout=600\n")
    assert validate.main([*args, "--instance-type", "ml.p4d.24xlarge", "--model-config", str(folder)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")


def test_validate_a_deployment_and_bad_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    assert validate.main(["--config", str(root / "deployments" / "llama-2-7b-inf2.yaml")]) == 0
    out = capsys.readouterr().out
    assert "memory per accelerator at TP2" in out and "NeuronX compile" in out and out.strip().endswith("ok")
    assert validate.main(["-c", "engine=vllm", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert (
        report["ok"] is False
        and "encoder-decoder (T5) model, which vLLM does not serve" in report["errors"][0]["message"]
    )
    assert validate.main(["--serving-properties", "x.properties", "--container", "1.2.3"]) == 2
    assert "is not an LMI version or image tag" in capsys.readouterr().err
    assert validate.main(["--serving-properties", "nope.properties", "--container", "0.28.0"]) == 2
    assert "cannot read nope.properties" in capsys.readouterr().err


LLAMA_2_70B = {
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "num_hidden_layers": 80,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "torch_dtype": "float16",
}
BUNDLED = Path(model_facts.BUNDLED)
LLAMA_7B = "meta-llama--Llama-2-7b-hf.json"
FILE_CASES = [  # (serving.properties, container, instance, config.json, the error expected or None: it must pass)
    (
        "engine=Python\noption.rolling_batch=vllm\noption.tensor_parallel_degree=4\noption.dtype=fp16\n",
        "0.28.0",
        "ml.g5.12xlarge",
        LLAMA_2_70B,
        "LMI502",  # 140 GB of fp16 weights on 96 GB
    ),
    (
        "engine=Python\noption.dtype=bf16\noption.tensor_parallel_degree=4\n",
        "0.27.0",
        "ml.g4dn.12xlarge",
        "meta-llama--Llama-2-7b-hf.json",
        "LMI404",
    ),
    (
        "engine=FasterTransformer\noption.tensor_parallel_degree=4\noption.dtype=fp16\n",
        "0.21.0",
        "ml.g5.12xlarge",
        "google--flan-t5-xxl.json",
        "LMI402",
    ),
    (
        "engine=FasterTransformer\noption.tensor_parallel_degree=4\noption.dtype=int8\n",
        "0.23.0",
        "ml.g5.12xlarge",
        "google--flan-t5-xxl.json",
        "LMI403",
    ),
    (
        "engine=MPI\noption.rolling_batch=lmi-dist\noption.tensor_parallel_degree=2\n",
        "0.26.0",
        "ml.inf2.24xlarge",
        "meta-llama--Llama-2-7b-hf.json",
        "LMI202",
    ),
    (
        "engine=Python\noption.entryPoint=djl_python.transformers-neuronx\noption.tensor_parallel_degree=2\n",
        "0.25.0-neuronx-sdk2.15.0",
        "ml.inf2.xlarge",
        "meta-llama--Llama-2-7b-hf.json",
        "LMI704",
    ),
    (
        "engine=Python\ngpu.reserved_memory_mb=30000\noption.dtype=fp16\n",
        "0.28.0",
        "ml.g5.2xlarge",
        "TinyLlama--TinyLlama-1.1B-Chat-v1.0.json",
        "LMI203",
    ),
    (
        "engine=MPI\noption.rolling_batch=deepspeed\noption.tensor_parallel_degree=4\n",
        "0.26.0",
        "ml.g5.12xlarge",
        "meta-llama--Llama-2-7b-hf.json",
        "LMI709",
    ),
    (
        "engine=Python\noption.rolling_batch=vllm\noption.tensor_parallel_degree=3\n",
        "0.28.0",
        "ml.g5.48xlarge",
        "meta-llama--Llama-2-7b-hf.json",
        "LMI302",
    ),
    # published working configs: Transformers-NeuronX pads heads (64 heads at TP 24; 32 at TP 12)
    (
        "engine=Python\noption.entryPoint=djl_python.transformers_neuronx\noption.tensor_parallel_degree=24\n"
        "option.n_positions=2048\noption.rolling_batch=auto\noption.dtype=fp16\n",
        "0.25.0-neuronx-sdk2.15.0",
        "ml.inf2.48xlarge",
        LLAMA_2_70B,
        None,
    ),
    (
        "engine=Python\noption.tensor_parallel_degree=12\noption.n_positions=4096\noption.dtype=fp16\n"
        "option.rolling_batch=auto\n",
        "0.26.0-neuronx-sdk2.16.0",
        "ml.inf2.24xlarge",
        "meta-llama--Llama-2-7b-hf.json",
        None,
    ),
    (
        "engine=Python\noption.rolling_batch=vllm\noption.dtype=fp16\n",
        "0.28.0",
        "ml.g5.2xlarge",
        "meta-llama--Llama-2-7b-hf.json",
        None,
    ),
    (
        "engine=DeepSpeed\noption.rolling_batch=deepspeed\noption.tensor_parallel_degree=2\n",
        "0.26.0",
        "ml.g5.12xlarge",
        "EleutherAI--gpt-j-6b.json",
        None,
    ),
    # option.task against the heads transformers has in the release's image (LMI105)
    *[
        (f"{engine}\noption.dtype=fp16\noption.task={task}\n{extra}", version, "ml.g5.2xlarge", model, rule)
        for engine, task, extra, version, model, rule in (
            ("engine=DeepSpeed", "question-answering", "", "0.23.0", LLAMA_7B, "LMI105"),  # djl-serving#1106
            ("engine=DeepSpeed", "question-answering", "", "0.27.0", LLAMA_7B, None),  # transformers 4.39 has it
            ("engine=DeepSpeed", "summarization", "", "0.26.0", "facebook--opt-1.3b.json", "LMI105"),  # not served
            ("engine=DeepSpeed", "text-classification", "", "0.26.0", "facebook--opt-1.3b.json", None),
            ("engine=Python", "question-answering", "", "0.24.0", LLAMA_7B, "LMI105"),  # the pipeline's classes
            ("engine=Python", "sentiment-analysis", "", "0.24.0", LLAMA_7B, None),  # an alias of text-classification
            ("engine=Python", "text-gen", "", "0.24.0", LLAMA_7B, "LMI105"),  # 'Unknown task'
            ("engine=Python", "question-answering", "option.rolling_batch=auto\n", "0.24.0", LLAMA_7B, None),
            ("engine=Python", "question-answering", "option.enable_streaming=true\n", "0.24.0", LLAMA_7B, None),
            ("engine=Python", "text2text-generation", "", "0.23.0", "google--flan-t5-large.json", None),
        )
    ],
    # streaming a dynamic batch: refused from 0.25.0 when the handler's properties see no rolling batch (LMI715)
    *[
        (
            f"engine=Python\noption.dtype=fp16\nbatch_size=4\noption.enable_streaming=true\n{extra}",
            version,
            "ml.g5.2xlarge",
            LLAMA_7B,
            rule,
        )
        for extra, version, rule in (
            ("option.entryPoint=djl_python.huggingface\noption.rolling_batch=disable\n", "0.31.0", "LMI715"),
            ("", "0.28.0", "LMI715"),  # the server writes rolling_batch=disable itself when batch_size > 1
            ("option.rolling_batch=lmi-dist\n", "0.29.0", "LMI715"),  # ... whatever the file says
            ("", "0.26.0", "LMI715"),  # the properties class defaults to disable
            ("", "0.24.0", None),  # before the properties classes: streams each request of the batch
            ("option.rolling_batch=auto\n", "0.27.0", None),  # engine= given: the file's rolling batch stands
        )
    ],
]


@pytest.mark.parametrize(("text", "container", "instance", "model", "expected"), FILE_CASES)
def test_an_existing_file_runs_every_rule_that_applies(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    container: str,
    instance: str,
    model: str | dict,
    expected: str | None,
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(model) if isinstance(model, dict) else (BUNDLED / model).read_text())
    path = tmp_path / "serving.properties"
    path.write_text(f"option.model_id=s3://bucket/model/\noption.model_loading_timeout=3000\n{text}")
    args = ["--serving-properties", str(path), "--container", container, "--instance-type", instance]
    code = validate.main([*args, "--model-config", str(config), "--startup-timeout", "3600", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert [e["rule"] for e in report["errors"]] == ([expected] if expected else []), report
    assert code == (2 if expected else 0)


def test_an_existing_file_without_config_json_uses_the_estimate_and_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "serving.properties"
    path.write_text(
        "engine=Python\noption.model_id=s3://bucket/Llama-2-70b-hf/\noption.rolling_batch=vllm\n"
        "option.tensor_parallel_degree=4\noption.model_loading_timeout=1800\n"
    )
    args = ["--serving-properties", str(path), "--container", "0.28.0", "--json"]
    assert validate.main([*args, "--instance-type", "ml.g5.12xlarge"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [e["rule"] for e in report["errors"]] == ["LMI502"]
    assert "estimate from the model id" in report["errors"][0]["message"]
    assert validate.main(args) == 0  # no instance: the rules that need one are named, not passed silently
    report = json.loads(capsys.readouterr().out)
    skipped = [w["message"] for w in report["warnings"] if w["rule"] == "LMI010"]
    assert any("LMI302" in m and "--instance-type" in m for m in skipped), skipped


def test_auto_values_never_pretend_offline(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "-c",
        "model_id=meta-llama/Llama-3.1-70B-Instruct",
        "-c",
        "engine=vllm",
        "-c",
        "instance_type=ml.g5.12xlarge",
    ]
    assert validate.main(args) == 2
    out = capsys.readouterr()
    assert "tensor_parallel_degree=auto -> 1" not in out.out and not out.out.strip().endswith("ok")
    assert "LMI304" in out.err and "140 GB of weights on 96 GiB" in out.err and "estimate" in out.err


PIPELINE_CASES = [  # (serving.properties lines, container, the LMI307 message expected or None: not refused)
    (
        "option.rolling_batch=vllm\noption.tensor_parallel_degree=2\noption.pipeline_parallel_degree=2\n",
        "0.36.0-lmi27.0.0-cu130",
        "option.pipeline_parallel_degree=2 with vLLM on LMI 0.36.0: VllmRbProperties refuses any degree but 1 "
        "('Pipeline parallelism is not supported in vLLM's LLMEngine used in rolling_batch implementation'), in "
        "rolling batch and async mode alike; remove it and set option.tensor_parallel_degree=4 (2 x 2)",
    ),
    # unset rolling_batch on the 0.36 lmi image is vLLM's async mode, which validates with the same class
    ("option.tensor_parallel_degree=max\noption.pipeline_parallel_degree=2\n", "0.36.0", "tensor_parallel_degree=max"),
    # 0.33.0 on rewrites lmi-dist to vllm
    ("option.rolling_batch=lmi-dist\noption.pipeline_parallel_degree=4\n", "0.33.0", "to the GPUs it would have used"),
    # 0.30.0-0.32.0: vLLM refuses, lmi-dist takes it
    (
        "option.rolling_batch=vllm\noption.tensor_parallel_degree=4\noption.pipeline_parallel_degree=2\n",
        "0.31.0",
        "option.tensor_parallel_degree=8 (4 x 2) (or use option.rolling_batch=lmi-dist with engine=MPI, which takes it)",
    ),
    (
        "option.rolling_batch=lmi-dist\noption.tensor_parallel_degree=2\noption.pipeline_parallel_degree=2\n",
        "0.31.0",
        None,
    ),
    # before 0.30.0 VllmRbProperties has no such check; a degree of 1 is what it asks for
    ("option.rolling_batch=vllm\noption.tensor_parallel_degree=2\noption.pipeline_parallel_degree=2\n", "0.29.0", None),
    ("option.rolling_batch=vllm\noption.tensor_parallel_degree=4\noption.pipeline_parallel_degree=1\n", "0.36.0", None),
]


@pytest.mark.parametrize(("lines", "container", "message"), PIPELINE_CASES)
def test_vllm_refuses_pipeline_parallelism(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, container: str, message: str | None
) -> None:
    path = tmp_path / "serving.properties"
    engine = "MPI" if "lmi-dist" in lines and container.startswith("0.31") else "Python"
    path.write_text(
        f"engine={engine}\noption.model_id=s3://bucket/llama-3-8b/\noption.model_loading_timeout=1200\n{lines}"
    )
    code = validate.main(["--serving-properties", str(path), "--container", container, "--json"])
    found = [f["message"] for f in json.loads(capsys.readouterr().out)["errors"] if f["rule"] == "LMI307"]
    if message is None:
        assert found == [] and code == 0, found
    else:
        assert len(found) == 1 and message in found[0] and code == 2, found


def test_vllm_refuses_pipeline_parallelism_in_extra_properties(capsys: pytest.CaptureFixture[str]) -> None:
    extra = json.dumps({"option.pipeline_parallel_degree": "2"})
    argv = ["-c", "engine=vllm", "-c", "model_id=meta-llama/Llama-2-7b-hf", "-c", "lmi_version=0.36.0", "--json"]
    assert validate.main([*argv, "-c", f"extra_properties={extra}"]) == 2
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert [e["rule"] for e in errors] == ["LMI307"], errors


def _validate_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, container: str, *extra: str
) -> dict[str, Any]:
    """validate.main's JSON report (with its exit code) on a serving.properties of these lines."""
    path = tmp_path / "serving.properties"
    path.write_text(f"option.model_id=s3://bucket/llama-3-8b/\noption.model_loading_timeout=1200\n{lines}")
    code = validate.main(["--serving-properties", str(path), "--container", container, *extra, "--json"])
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return {**report, "code": code}


IGNORED_PIPELINE_CASES = [  # (engine= and lines, container, what LMI308 says, or None: no LMI308)
    # 0.25.0-0.28.0 read the key nowhere: LMI308 says it instead of LMI803's bare 'not read'
    (
        "engine=DeepSpeed\noption.tensor_parallel_degree=2\noption.pipeline_parallel_degree=2\n",
        "0.26.0",
        "option.pipeline_parallel_degree=2 on LMI 0.26.0 with DeepSpeed: LMI 0.26.0 reads it nowhere (read in "
        "0.22.1-0.24.0, 0.29.0-0.38.0), so no pipeline parallelism happens: each copy of the model is split over "
        "option.tensor_parallel_degree=2 devices alone, which must hold all of it; remove the key and set "
        "option.tensor_parallel_degree=4 (2 x 2)",
    ),
    ("engine=Python\noption.rolling_batch=vllm\noption.pipeline_parallel_degree=4\n", "0.28.0", "reads it nowhere"),
    # 0.22.1-0.24.0: only FasterTransformer's handler reads it
    (
        "engine=DeepSpeed\noption.tensor_parallel_degree=4\noption.pipeline_parallel_degree=2\n",
        "0.23.0",
        "DeepSpeed's handler on LMI 0.23.0 does not read it, so no pipeline parallelism happens: each copy of the "
        "model is split over option.tensor_parallel_degree=4 devices alone, which must hold all of it; remove the "
        "key and set option.tensor_parallel_degree=8 (4 x 2) (or use FasterTransformer, which takes it on this release)",
    ),
    ("engine=FasterTransformer\noption.tensor_parallel_degree=2\noption.pipeline_parallel_degree=2\n", "0.23.0", None),
    # 0.29.0: the server reads it, vLLM (before its 0.30.0 refusal, LMI307) and Transformers-NeuronX do not
    (
        "engine=Python\noption.rolling_batch=vllm\noption.tensor_parallel_degree=2\noption.pipeline_parallel_degree=2\n",
        "0.29.0",
        "(or use lmi-dist, TensorRT-LLM, Accelerate, which take it on this release)",
    ),
    ("engine=MPI\noption.rolling_batch=lmi-dist\noption.pipeline_parallel_degree=2\n", "0.29.0", None),
    ("engine=Python\noption.rolling_batch=vllm\noption.pipeline_parallel_degree=2\n", "0.31.0", None),  # LMI307
    ("engine=DeepSpeed\noption.pipeline_parallel_degree=1\n", "0.26.0", None),  # 1 asks for nothing: LMI803's note
]


@pytest.mark.parametrize(("lines", "container", "message"), IGNORED_PIPELINE_CASES)
def test_pipeline_parallelism_the_release_or_engine_ignores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, container: str, message: str | None
) -> None:
    report = _validate_file(tmp_path, capsys, lines, container)
    found = [w["message"] for w in report["warnings"] if w["rule"] == "LMI308"]
    unread = [w["message"] for w in report["warnings"] if w["rule"] == "LMI803" and "pipeline_parallel" in w["message"]]
    # one finding for the line: where LMI308 speaks, LMI803's bare 'not read' does not
    assert found == [] if message is None else len(found) == 1 and message in found[0] and unread == [], unread


NEURON = "option.entryPoint=djl_python.transformers_neuronx\noption.tensor_parallel_degree=2\n"
NEURON_BATCH_CASES = [  # (lines, container, what LMI716 says, or None: it loads)
    (
        f"engine=Python\n{NEURON}option.rolling_batch=auto\nbatch_size=4\n",
        "0.26.0",
        "batch_size=4 with option.rolling_batch=auto: TransformerNeuronXProperties on LMI 0.26.0 refuses both at once "
        "('Dynamic batching and rolling batch cannot be enabled at the same time'); keep the rolling batch (remove "
        "batch_size, size it with option.max_rolling_batch_size) or the dynamic batch (remove option.rolling_batch)",
    ),
    (f"engine=Python\n{NEURON}option.rolling_batch=tnx\nbatch_size=8\n", "0.27.0", "batch_size=8 with"),
    # from 0.28.0 (0.27.0 when it infers the engine) the server writes rolling_batch=disable for batch_size > 1 ...
    (f"engine=Python\n{NEURON}option.rolling_batch=tnx\nbatch_size=4\n", "0.28.0", None),
    (f"{NEURON}option.rolling_batch=auto\nbatch_size=4\n", "0.27.0", None),
    # ... but not for option.batch_size, which the handler reads too
    (f"engine=Python\n{NEURON}option.rolling_batch=tnx\noption.batch_size=4\n", "0.29.0", "option.batch_size=4 with"),
    # unset: the class's default is disable; 0.27.0's server writes auto when it infers the engine
    (f"engine=Python\n{NEURON}option.batch_size=4\n", "0.27.0", None),
    (f"{NEURON}option.batch_size=4\n", "0.27.0", "option.rolling_batch=auto (the server's default"),
    (f"{NEURON}option.batch_size=4\n", "0.28.0", None),  # the NeuronX image's default stays disable
    (f"engine=Python\n{NEURON}option.rolling_batch=auto\nbatch_size=4\n", "0.25.0", None),  # no such check yet
]


@pytest.mark.parametrize(("lines", "container", "message"), NEURON_BATCH_CASES)
def test_neuronx_refuses_dynamic_and_rolling_batch_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, container: str, message: str | None
) -> None:
    report = _validate_file(tmp_path, capsys, lines, container, "--instance-type", "ml.inf2.8xlarge")
    found = [e["message"] for e in report["errors"] if e["rule"] == "LMI716"]
    assert found == [] if message is None else len(found) == 1 and message in found[0] and report["code"] == 2, found


# A model_type the transformers of the release's image does not know (LMI106). QWEN2: a tiny Qwen2 config.json.
QWEN2 = {**TINY_LLAMA, "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}
REMOTE = {"AutoConfig": "configuration_qwen2.Qwen2Config", "AutoModelForCausalLM": "modeling_qwen2.Qwen2ForCausalLM"}
NEW_MODEL_TYPE_FILES = [  # (serving.properties lines, container, config.json, the LMI106 message part or None)
    ("engine=Python\noption.rolling_batch=vllm\n", "0.26.0", QWEN2, "transformers 4.36.2, which the LMI 0.26.0"),
    ("engine=Python\noption.rolling_batch=vllm\n", "0.27.0", QWEN2, None),  # transformers 4.39.0 knows qwen2
    (
        "engine=Python\noption.rolling_batch=lmi-dist\n",
        "0.32.0",
        "Qwen--Qwen3-4B.json",
        "another engine (Accelerate or vLLM) with the container 0.33.0",
    ),
    ("engine=Python\noption.rolling_batch=vllm\n", "0.32.0", "Qwen--Qwen3-4B.json", None),  # vLLM's venv: no pin
    ("engine=Python\noption.rolling_batch=vllm\n", "0.34.0", {**QWEN2, "model_type": "qwen3_next"}, None),  # vLLM's
    ("engine=Python\noption.rolling_batch=disable\n", "0.34.0", {**QWEN2, "model_type": "qwen3_next"}, "4.55.2"),
    ("engine=Python\noption.rolling_batch=disable\n", "0.36.0", {**QWEN2, "model_type": "qwen9"}, None),  # a range
    ("engine=DeepSpeed\n", "0.26.0", {**QWEN2, "auto_map": REMOTE}, "or set option.trust_remote_code=true"),
    ("engine=DeepSpeed\noption.trust_remote_code=true\n", "0.26.0", {**QWEN2, "auto_map": REMOTE}, None),
    ("engine=DeepSpeed\noption.trust_remote_code=true\n", "0.26.0", QWEN2, "djl_python.deepspeed reads"),  # no code
    ("option.entryPoint=djl_python.transformers_neuronx\n", "0.26.0", QWEN2, None),  # NeuronX's own image
]


@pytest.mark.parametrize(("text", "container", "model", "message"), NEW_MODEL_TYPE_FILES)
def test_an_existing_file_for_a_model_type_the_images_transformers_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, container: str, model: str | dict, message: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(model) if isinstance(model, dict) else (BUNDLED / model).read_text())
    path = tmp_path / "serving.properties"
    path.write_text(f"option.model_id=s3://bucket/model/\noption.model_loading_timeout=3000\n{text}")
    args = ["--serving-properties", str(path), "--container", container, "--model-config", str(config), "--json"]
    code = validate.main(args)
    found = [e["message"] for e in json.loads(capsys.readouterr().out)["errors"] if e["rule"] == "LMI106"]
    if message is None:
        assert found == [], found
    else:
        assert len(found) == 1 and message in found[0] and code == 2, found
        assert "model_type=" in found[0] and "does not recognize this architecture" in found[0]


def test_a_deployment_for_a_model_type_its_release_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundled = ["-c", "model_id=Qwen/Qwen3-4B", "-c", "instance_type=ml.g5.2xlarge", "--json"]
    assert validate.main([*bundled, "-c", "engine=vllm", "-c", "lmi_version=0.28.0"]) == 2
    (error,) = [e["message"] for e in json.loads(capsys.readouterr().out)["errors"] if e["rule"] == "LMI106"]
    assert "model_type='qwen3' is unknown to transformers 4.41.1, which the LMI 0.28.0 image pins" in error
    assert error.endswith("use lmi_version 0.33.0 or later (transformers 4.51.3)"), error
    assert validate.main([*bundled, "-c", "engine=vllm", "-c", "lmi_version=0.33.0"]) == 0  # 4.51.3 knows qwen3
    capsys.readouterr()
    custom = ["-c", "engine=accelerate", "-c", "handler=custom", "-c", "lmi_version=0.26.0"]
    folder = write_model(tmp_path / "qwen2-remote", {**QWEN2, "auto_map": REMOTE})
    local = ["-c", f"model_id={folder}", "-c", "instance_type=ml.g5.2xlarge", *custom, "--json"]
    assert validate.main(local) == 2
    (error,) = [e["message"] for e in json.loads(capsys.readouterr().out)["errors"] if e["rule"] == "LMI106"]
    assert "lmi-deploy's model.py reads config.json" in error and "lmi_version 0.27.0 or later" in error
    assert "set extra_properties option.trust_remote_code: 'true'" in error
    extra = json.dumps({"option.trust_remote_code": "true"})
    assert validate.main([*local, "-c", f"extra_properties={extra}"]) == 0
    capsys.readouterr()


DYNAMIC_BATCH_CASES = [  # (lines, container, the engine read, the KV cache note; LMI717: a rolling batch asked for)
    # 0.28.0 on: batch_size > 1 makes the server write rolling_batch=disable (LmiConfigRecommender.setRollingBatch),
    # so djl_python.huggingface serves a dynamic batch, not the rolling batch the lmi image picks when the key is unset
    ("batch_size=4\n", "0.29.0", "Accelerate", "no rolling batch, so a dynamic batch of up to 4 holds the KV cache"),
    ("batch_size=4\noption.rolling_batch=auto\n", "0.34.0", "Accelerate", "a dynamic batch of up to 4"),  # LMI717
    ("batch_size=4\noption.rolling_batch=vllm\n", "0.30.0", "vLLM", "a dynamic batch of up to 4"),  # LMI717
    ("batch_size=1\n", "0.29.0", "lmi-dist", "(one full-length sequence (rolling batch pages the rest))"),
    ("batch_size=4\n", "0.33.0", "vLLM", "rolling batch pages the rest"),  # async_mode: the engine pages itself
    ("option.rolling_batch=disable\n", "0.27.0", "Accelerate", "(one full-length sequence)"),  # no batch at all
]


TURNED_OFF = (
    "on LMI %s the server writes option.rolling_batch=disable whenever batch_size > 1, so no rolling batch runs "
    "and requests are served in dynamic batches of up to 4; remove batch_size to keep the rolling batch (size it "
    "with option.max_rolling_batch_size), or remove option.rolling_batch"
)


@pytest.mark.parametrize(("lines", "container", "engine", "kv_note"), DYNAMIC_BATCH_CASES)
def test_batch_size_above_one_is_read_as_the_dynamic_batch_the_server_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, container: str, engine: str, kv_note: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text((BUNDLED / LLAMA_7B).read_text())
    entry = "option.entryPoint=djl_python.lmi_vllm.vllm_async_service\n" if container == "0.33.0" else ""
    extra = ["--instance-type", "ml.g5.2xlarge", "--model-config", str(config)]
    report = _validate_file(tmp_path, capsys, f"engine=Python\noption.dtype=fp16\n{entry}{lines}", container, *extra)
    notes = "\n".join(report["notes"])
    assert f"read as {engine} on LMI {container}" in notes and kv_note in notes, notes
    # the 10% a rolling batch engine leaves unallocated is held back only where one runs
    usable = "21.6 GiB usable" if "rolling batch pages" in kv_note else "24.0 GiB usable"
    assert usable in notes and report["errors"] == [], report
    turned_off = [w["message"] for w in report["warnings"] if w["rule"] == "LMI717"]
    asked = re.search(r"option.rolling_batch=(auto|vllm)", lines)
    assert turned_off == ([] if asked is None else [f"{asked[0]} with batch_size=4: {TURNED_OFF % container}"])
