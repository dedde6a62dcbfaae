"""Careless and hostile input files and numbers: each refused at once with one line naming the file or setting,
never a traceback, a hang or gigabytes of memory (validate, render and synth share the loader)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lmi_deploy.commands import render as render_script
from lmi_deploy.commands import validate
from lmi_deploy.config import load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.input_files import MAX_DEPLOYMENT_FILE_BYTES

# A "billion laughs": 9 levels of 9 aliases, under 700 bytes, that PyYAML expands into 9^9 strings (gigabytes).
ALIAS_BOMB = 'lol1: &lol1 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"lol{n + 1}: &lol{n + 1} [{', '.join([f'*lol{n}'] * 9)}]\n" for n in range(1, 9)
)


def _one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str], script=validate) -> str:  # type: ignore[no-untyped-def]
    code = script.main(argv)
    captured = capsys.readouterr()
    errors = [line for line in (captured.err + captured.out).splitlines() if line.startswith(("error", "lmi-deploy"))]
    assert code == 2 or (script is render_script and code != 0), captured
    assert "Traceback" not in captured.err
    assert len(errors) == 1, captured
    return errors[0]


def test_alias_bomb_is_refused_in_under_a_second(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert 500 <= len(ALIAS_BOMB) <= 700
    start = time.perf_counter()
    line = _one_error_line(capsys, ["--config", str(bomb)])
    assert time.perf_counter() - start < 1.0
    assert "alias *lol1 is not allowed" in line and "line 2" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("model_id: a/b\nengine: vllm\nmodel_id: c/d\n", r"line 3.*duplicate key 'model_id' \(first at line 1\)"),
        ("models:\n  - {name: a, name: b}\n", r"duplicate key 'name'"),
        ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 32 levels"),
        (b"model_id: \xff\xfe\n", "is not UTF-8 text"),
        ("- just\n- a list\n", "must hold a mapping of settings, not a list"),
        ("model_id: [unclosed\n", "is not valid YAML at line 2"),
    ],
)
def test_bad_deployment_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, expected: str
) -> None:
    path = tmp_path / "deployment.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    import re

    assert re.search(expected, _one_error_line(capsys, ["--config", str(path)]))


def test_config_and_model_config_must_be_bounded_regular_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.perf_counter()
    assert "/dev/zero is not a regular file" in _one_error_line(capsys, ["-c", "model_config=/dev/zero"])
    assert "/dev/zero is not a regular file" in _one_error_line(capsys, ["--config", "/dev/zero"])
    assert "is not a regular file" in _one_error_line(
        capsys, ["--config", "/dev/zero", "--out", str(tmp_path)], render_script
    )
    assert f"{tmp_path} is a directory" in _one_error_line(capsys, ["--config", str(tmp_path)])
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_DEPLOYMENT_FILE_BYTES // 10 + 1))
    assert "is larger than 1024 KiB" in _one_error_line(capsys, ["--config", str(big)])
    assert "nope.yaml does not exist" in _one_error_line(capsys, ["--config", str(tmp_path / "nope.yaml")])
    assert time.perf_counter() - start < 5.0


def _model_config(tmp_path: Path, **changes: object) -> str:
    config = {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 8, "num_hidden_layers": 2}
    config.update({"vocab_size": 1000, "intermediate_size": 512, **changes})
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path / "config.json")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-c", "max_sequence_length=" + "9" * 400], "max_sequence_length=.*less than or equal to 16777216"),
        (["-c", "model_id=acme/" + "m" * 300], "model_id=.*not a Hugging Face Hub id"),
        (["-c", "alarm_model_latency_p99_ms=1e30"], "alarm_model_latency_p99_ms"),
        (["-c", "alarm_model_latency_p99_ms=100000000"], "alarm_model_latency_p99_ms=.*less than or equal to 3600000"),
        (["-c", "autoscaling_target_invocations=" + "9" * 40], "autoscaling_target_invocations"),
        (["-c", "tensor_parallel_degree=" + "9" * 400], "tensor_parallel_degree"),
        (["-c", "model_id=s3://"], "model_id='s3://': bucket '' is not an S3 bucket name"),
        (["-c", "model_id=s3://acme-weights"], "names the whole bucket 'acme-weights': add a prefix"),
        (["-c", "model_id=s3://acme-weights/"], "names the whole bucket"),
        (["-c", "model_id=S3://acme-weights/models/x"], "write the scheme in lowercase: s3://acme-weights/models/x"),
        (["-c", "model_id=s3://acme-weights/models/*"], r"prefix segment '\*' is not allowed"),
        (["-c", "model_id=s3://192.168.0.1/models"], "formatted as an IP address"),
        (["-c", "deployment=demo\n"], r"deployment='demo\\n': holds a control character"),
        (["-c", "kms_key=create\n"], "kms_key="),
        (["-c", "inference_mode=async", "-c", "async_output_s3_path=s3://out-bucket\n"], "async_output_s3_path"),
        (["-c", "inference_mode=async", "-c", "async_output_s3_path=s3://out-bucket"], "names the whole bucket"),
        (["-c", "model_revision=main\n"], "model_revision"),
        (["-c", "model_revision=../../etc"], "is not a Hub revision"),
        (["-c", "alarm_email=ops@example.com\n"], "alarm_email"),
    ],
)
def test_bad_values_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    import re

    assert re.search(expected, _one_error_line(capsys, argv))


def test_local_model_folders_cannot_widen_the_weights_grant(tmp_path: Path) -> None:
    folder = tmp_path / "weights*"
    folder.mkdir()
    _model_config(folder)
    with pytest.raises(ConfigError, match=r"model_id=.*holds '\*', which the weights prefix cannot"):
        load_config({"model_id": str(folder)})


def test_secret_values_are_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error_line(capsys, ["-c", "hf_token_secret=hf_SeCrEtToKeNvAlUe1234567890 "])
    assert "hf_token_secret" in line and "SeCrEt" not in line


@pytest.mark.parametrize(
    ("changes", "index", "expected"),
    [
        ({"num_attention_heads": 0}, None, "num_attention_heads=0 must be a positive whole number"),
        ({"hidden_size": -1}, None, "hidden_size=-1 must be a positive whole number"),
        ({"num_hidden_layers": 2.5}, None, "num_hidden_layers=2.5 must be a positive whole number"),
        ({"vocab_size": 1e400}, None, "vocab_size=inf must be a positive whole number"),
        ({}, {"metadata": ["not", "a", "mapping"]}, None),  # a list as metadata: no total size, facts still read
        ({}, {"metadata": {"total_size": "12"}}, "metadata.total_size='12' is not a size in bytes"),
        ({}, [1, 2], "safetensors index .* must hold a JSON object, not a list"),
    ],
)
def test_bad_model_configs_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, object], index: object, expected: str | None
) -> None:
    import re

    path = _model_config(tmp_path, **changes)
    if index is not None:
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    argv = ["-c", "engine=accelerate", "-c", "instance_type=ml.g5.2xlarge", "-c", f"model_config={tmp_path}"]
    argv += ["-c", "model_id=acme/tiny"]
    if expected is None:
        assert validate.main(argv) == 0, capsys.readouterr()
        return
    assert re.search(expected, _one_error_line(capsys, argv)), path


def test_deeply_nested_model_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config({"model_config": str(tmp_path / "config.json"), "model_id": "acme/x"})
