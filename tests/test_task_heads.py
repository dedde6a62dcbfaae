"""The task-head table: its generator on a tiny fake djl-serving repository and transformers wheel, and the
committed data's facts (the releases' transformers versions and their heads)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from lmi_deploy import task_heads
from lmi_deploy.commands import update_task_heads

DEEPSPEED = """
from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering
SUPPORTED_TASKS = {"text-generation", "question-answering"}
TASK_TO_MODEL = {"text-generation": AutoModelForCausalLM, "question-answering": AutoModelForQuestionAnswering}
"""
CONFIGURATION_AUTO = 'CONFIG_MAPPING_NAMES = OrderedDict([("llama", "LlamaConfig"), ("bert", "BertConfig")])\n'
MODELING_AUTO = """
MODEL_FOR_CAUSAL_LM_MAPPING_NAMES = OrderedDict([("llama", "LlamaForCausalLM")])
MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES = OrderedDict([("bert", "BertForQuestionAnswering"){extra}])
MODEL_FOR_CAUSAL_LM_MAPPING = _LazyAutoMapping(CONFIG_MAPPING_NAMES, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
MODEL_FOR_QUESTION_ANSWERING_MAPPING = _LazyAutoMapping(CONFIG_MAPPING_NAMES, MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES)


class AutoModelForCausalLM(_BaseAutoModelClass):
    _model_mapping = MODEL_FOR_CAUSAL_LM_MAPPING


class AutoModelForQuestionAnswering(_BaseAutoModelClass):
    _model_mapping = MODEL_FOR_QUESTION_ANSWERING_MAPPING
"""
PIPELINES = """
TASK_ALIASES = {"ner": "token-classification"}
SUPPORTED_TASKS = {
    "question-answering": {"pt": (AutoModelForQuestionAnswering,) if is_torch_available() else (), "type": "text"},
    "text-generation": {"pt": (AutoModelForCausalLM,) if is_torch_available() else (), "type": "text"},
}
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def _wheel(folder: Path, version: str, extra: str) -> None:
    with zipfile.ZipFile(folder / f"transformers-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr("transformers/models/auto/configuration_auto.py", CONFIGURATION_AUTO)
        wheel.writestr("transformers/models/auto/modeling_auto.py", MODELING_AUTO.format(extra=extra))
        wheel.writestr("transformers/pipelines/__init__.py", PIPELINES)


def test_generator_reads_releases_and_wheels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo, wheels, output = tmp_path / "djl", tmp_path / "wheels", tmp_path / "heads.json"
    (repo / "serving/docker").mkdir(parents=True)
    (repo / "engines/python/setup/djl_python").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "master")
    (repo / "serving/docker/deepspeed.Dockerfile").write_text("ARG transformers_version=4.30.2\n")
    (repo / update_task_heads.DEEPSPEED).write_text(DEEPSPEED)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "0.23")
    _git(repo, "branch", "0.23.0-dlc")
    (repo / "serving/docker/deepspeed.Dockerfile").unlink()
    (repo / update_task_heads.DEEPSPEED).unlink()
    (repo / "serving/docker/lmi-container-requirements.txt").write_text("transformers==4.41.1\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "0.28")
    _git(repo, "branch", "0.28.0-dlc")
    argv = ["--djl-serving", str(repo), "--wheels", str(wheels), "--versions", "0.23.0", "0.28.0"]
    wheels.mkdir()
    _wheel(wheels, "4.30.2", "")
    assert update_task_heads.main([*argv, "--output", str(output)]) == 2
    assert "no wheel for transformers 4.41.1; get them with pip download" in capsys.readouterr().err
    assert not output.exists()
    _wheel(wheels, "4.41.1", ', ("llama", "LlamaForQuestionAnswering")')
    assert update_task_heads.main([*argv, "--output", str(output)]) == 0
    table = json.loads(output.read_text())
    assert table["releases"]["0.23.0"]["transformers"] == "4.30.2"
    assert table["releases"]["0.23.0"]["deepspeed_tasks"] == {
        "question-answering": "AutoModelForQuestionAnswering",
        "text-generation": "AutoModelForCausalLM",
    }
    assert table["releases"]["0.28.0"] | {"commit": ""} == {
        "ref": "0.28.0-dlc",
        "commit": "",
        "exact": True,
        "transformers": "4.41.1",
        "deepspeed_tasks": None,
    }
    heads = table["model_types"]
    assert heads["AutoModelForQuestionAnswering"] == {"bert": ["4.30.2"], "llama": ["4.41.1"]}
    assert heads["AutoConfig"] == {"bert": ["4.30.2"], "llama": ["4.30.2"]}
    assert table["pipeline_tasks"]["4.30.2"]["question-answering"] == ["AutoModelForQuestionAnswering"]
    assert table["aliases"]["4.41.1"] == {"ner": "token-classification"}
    first = output.read_bytes()
    assert update_task_heads.main([*argv, "--output", str(output)]) == 0 and output.read_bytes() == first


def test_spans_record_a_head_that_comes_and_goes() -> None:
    versions = ["4.22.1", "4.26.0", "4.30.2", "4.34.0"]
    assert update_task_heads.spans([False, True, True, True], versions) == ["4.26.0"]
    assert update_task_heads.spans([True, True, False, False], versions) == ["4.22.1", "4.30.2"]
    assert update_task_heads.spans([True, False, True, False], versions) == ["4.22.1", "4.26.0", "4.30.2", "4.34.0"]


def test_committed_table_reads_each_release_image() -> None:
    """0.23.0's deepspeed image pins transformers 4.30.2, which has no Llama question-answering head (4.39.0, in
    0.27.0, has one); 0.36.0 pins only a range, so nothing is claimed for it."""
    old, new = task_heads.transformers_of("0.23.0"), task_heads.transformers_of("0.27.0")
    assert old is not None and new is not None and (old.version, new.version) == ("4.30.2", "4.39.0")
    assert old.knows("llama") and old.maps("AutoModelForCausalLM", "llama")
    assert not old.maps("AutoModelForQuestionAnswering", "llama") and new.maps("AutoModelForQuestionAnswering", "llama")
    assert old.pipeline_task("ner") == "token-classification" and old.pipeline_task("translation_en_to_de")
    assert old.pipeline_task("text-gen") is None
    assert task_heads.transformers_of("0.36.0") is None
    tasks = task_heads.deepspeed_tasks("0.23.0")
    assert tasks is not None and tasks["question-answering"] == "AutoModelForQuestionAnswering"
    assert task_heads.deepspeed_tasks("0.28.0") is None  # DeepSpeed left with 0.28.0
