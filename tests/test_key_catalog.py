"""The key catalog: the generator on a tiny fake djl-serving repository, and the committed data's facts."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from lmi_deploy import containers, key_catalog, known_keys
from lmi_deploy.commands import update_catalog, validate

PY_MODEL = """
class PyModel {
    public void load(Map<String, ?> options) {
        for (Map.Entry<String, ?> entry : options.entrySet()) {
            switch (key) {
                case "entryPoint":
                    break;
                case "predict_timeout":
                    break;
                default:
                    break;
            }
        }
        String s3Url = pyEnv.getInitParameters().get("s3url");
        String os = System.getProperty("os.name");
    }
}
"""
WORKERS = """
class WlmConfigManager {
    int min(Model model) { return getWorkersProperty(model, "minWorkers", 1); }
    String queue(ZooModel<?, ?> zooModel) { return zooModel.getProperty("job_queue_size"); }
}
"""
PROVIDER = 'class DsEngineProvider { public String getEngineName() { return "DeepSpeed"; } }\n'
HTTP = 'class Handler { int b = NettyUtils.getIntParameter(decoder, "batch_size"); String m = getProperty("http_only"); }\n'
HANDLER_V1 = """
def get_rolling_batch_class_from_str(rolling_batch_type: str):
    if rolling_batch_type == "scheduler":
        return 1
    elif rolling_batch_type == "vllm":
        return 2
    raise ValueError(f"Invalid rolling batch type: {rolling_batch_type}")


def open_choice(dtype):
    if dtype == "fp16":
        return 1
    return None


class Service:
    def initialize(self, properties: dict):
        self.model_id = properties.get("model_id")
        self.rb = properties.get("rolling_batch")
        self.dtype = properties["dtype"]
        if "device_map" in properties:
            pass
        properties["written_only"] = 1
"""
INPUTS = 'class Input:\n    def get_batch_size(self):\n        return self.properties.get("request_header")\n'
PROPERTIES_V1 = """
from pydantic import BaseModel


class Properties(BaseModel):
    model_id_or_path: str
    tensor_parallel_degree: int = 1


class VllmRbProperties(Properties):
    max_model_len: int = 0
"""
PROPERTIES_V2 = """
from enum import Enum
from typing import Literal, Optional
from pydantic import BaseModel, ConfigDict, Field


class RollingBatchEnum(str, Enum):
    vllm = "vllm"
    disable = "disable"


class Properties(BaseModel):
    rolling_batch: RollingBatchEnum = RollingBatchEnum.disable
    dtype: Optional[str] = None
    layout: Literal["BSH", "SBH"] = "BSH"


class VllmRbProperties(Properties):
    quantize: Optional[str] = Field(alias="quantization", default=None)
    model_config = ConfigDict(extra="allow")
"""
TRT_DOCS = """# TensorRT-LLM user guide

| Item | Required | Description |
|------|----------|-------------|
| option.max_input_len | No | Maximum input length |
| `option.max_output_len` | No | Maximum output length |
"""
OTHER_DOCS = """# Configurations

| option.my_stale_key | No | a key documented for another engine |

### TensorRT-LLM

| option.kv_cache_free_gpu_mem_fraction | No | fraction |
"""

JAVA = "engines/python/src/main/java/ai/djl/python/engine/"
WLM = "wlm/src/main/java/ai/djl/serving/wlm/util/WlmConfigManager.java"
PY = "engines/python/setup/djl_python/"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def fake_djl_serving(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Two releases: the v0.19.0 tag, and a 0.20.0-dlc branch that wins over the v0.20.0 tag; master beyond."""
    repo = tmp_path_factory.mktemp("djl-serving")
    _git(repo, "init", "-q", "-b", "master")
    first = _commit(
        repo,
        {
            JAVA + "PyModel.java": PY_MODEL,
            JAVA + "DsEngineProvider.java": PROVIDER,
            WLM: WORKERS,
            "serving/src/main/java/ai/djl/serving/http/Handler.java": HTTP,
            PY + "huggingface.py": HANDLER_V1,
            PY + "inputs.py": INPUTS,
            PY + "properties_manager/properties.py": PROPERTIES_V1,
            PY + "tests/test_x.py": 'properties.get("test_only")\n',
        },
        "0.19",
    )
    _git(repo, "tag", "v0.19.0")
    _git(repo, "tag", "v0.20.0")  # an older ref than the dlc branch: the branch must win
    second = _commit(
        repo,
        {
            PY + "properties_manager/properties.py": PROPERTIES_V2,
            "serving/docs/lmi/user_guides/trt_llm_user_guide.md": TRT_DOCS,
            "serving/docs/configurations_large_model_inference_containers.md": OTHER_DOCS,
        },
        "0.20",
    )
    _git(repo, "branch", "0.20.0-dlc")
    head = _commit(repo, {"README.md": "newer\n"}, "master moves on")
    return repo, {"0.19.0": first, "0.20.0": second, "master": head}


def test_update_catalog_reads_each_release(fake_djl_serving: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, commits = fake_djl_serving
    out = tmp_path / "keys.json"
    argv = ["--djl-serving", str(repo), "--versions", "0.20.0", "0.19.0", "0.21.0", "--output", str(out)]
    assert update_catalog.main(argv) == 0
    releases = json.loads(out.read_text())["releases"]
    assert list(releases) == ["0.19.0", "0.20.0", "0.21.0"]
    old, new, missing = releases["0.19.0"], releases["0.20.0"], releases["0.21.0"]
    assert (old["ref"], old["commit"], old["exact"]) == ("v0.19.0", commits["0.19.0"], True)
    assert (new["ref"], new["commit"], new["exact"]) == ("0.20.0-dlc", commits["0.20.0"], True)
    assert (missing["ref"], missing["commit"], missing["exact"]) == ("master", commits["master"], False)
    assert old["keys"] == {
        "cpu.minWorkers": ["server"],
        "gpu.minWorkers": ["server"],
        "job_queue_size": ["server"],
        "minWorkers": ["server"],
        "option.device_map": ["handler"],
        "option.dtype": ["handler"],
        "option.entryPoint": ["server"],
        "option.max_model_len": ["properties"],
        "option.model_id": ["handler"],
        "option.model_id_or_path": ["properties"],
        "option.predict_timeout": ["server"],
        "option.rolling_batch": ["handler"],
        "option.s3url": ["server"],
        "option.tensor_parallel_degree": ["properties"],
    }
    # the closed if-chain gives rolling_batch its values; the open one (no raise) gives dtype none
    assert old["values"] == {"engine": ["DeepSpeed"], "option.rolling_batch": ["scheduler", "vllm"]}
    assert new["values"]["option.rolling_batch"] == ["disable", "vllm"]  # the enum, not the handler's chain
    assert new["values"]["option.layout"] == ["BSH", "SBH"]
    assert "option.dtype" not in new["values"]  # declared as str: open, though a handler's chain is closed
    assert new["keys"]["option.quantization"] == ["properties"]  # a Field alias
    assert new["extra_keys_to"] == ["VllmRbProperties"]
    # each class on its own, with what it inherits: empty is a key the class takes any value for
    assert new["class_values"]["Properties"] == {
        "option.dtype": [],
        "option.layout": ["BSH", "SBH"],
        "option.rolling_batch": ["disable", "vllm"],
    }
    assert new["class_values"]["VllmRbProperties"] == {
        **new["class_values"]["Properties"],
        "option.quantization": [],
        "option.quantize": [],
    }
    assert old["class_values"]["VllmRbProperties"]["option.tensor_parallel_degree"] == []
    # declared by VllmRbProperties in 0.19.0, gone from it in 0.20.0, which passes unknown keys on to vLLM
    assert new["keys"]["option.max_model_len"] == ["passthrough"]
    assert new["keys"]["option.max_output_len"] == ["docs"]
    assert new["keys"]["option.kv_cache_free_gpu_mem_fraction"] == ["docs"]
    assert "option.my_stale_key" not in new["keys"]  # not a TensorRT-LLM table


def test_update_catalog_is_deterministic_and_reads_bare_clones(
    fake_djl_serving: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    repo, _ = fake_djl_serving
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    outputs = []
    for source, name in ((repo, "a.json"), (bare, "b.json")):
        out = tmp_path / name
        assert update_catalog.main(["--djl-serving", str(source), "--versions", "0.19.0", "--output", str(out)]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_update_catalog_refuses_a_bad_checkout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keys.json"
    assert update_catalog.main(["--djl-serving", str(tmp_path / "nope"), "--output", str(out)]) == 2
    assert update_catalog.main(["--djl-serving", str(tmp_path), "--versions", "0.28", "--output", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"error: --djl-serving {tmp_path / 'nope'}: not a git checkout or bare clone of djl-serving",
        "error: --versions '0.28': expected X.Y.Z, e.g. 0.28.0",
    ]
    assert not out.exists()


def test_catalog_covers_every_supported_version_with_its_release() -> None:
    assert key_catalog.versions() == containers.all_versions()
    for version in key_catalog.versions():
        release = key_catalog.release(version)
        assert re.fullmatch(r"[0-9a-f]{40}", release.commit)
        if version != "0.38.0":
            assert release.exact and release.ref in (f"{version}-dlc", f"{version}-lmi27-dlc")
    assert key_catalog.release("0.36.0").ref == "0.36.0-lmi27-dlc"  # the branch the 0.36.0-lmi27.0.0 image is from
    assert not key_catalog.release("0.38.0").exact  # no 0.38.0 branch or tag upstream yet


@pytest.mark.parametrize(
    ("key", "read_in", "not_read_in"),
    [
        ("option.batch_size", ["0.25.0", "0.29.0"], []),  # Transformers-NeuronX's static batch
        ("option.max_sparsity", ["0.25.0"], ["0.24.0", "0.36.0"]),  # scheduler keys
        ("option.max_splits", ["0.25.0"], ["0.24.0"]),
        ("option.disable_flash_attn", ["0.24.0", "0.25.0"], ["0.23.0"]),
        ("option.decoding_strategy", ["0.24.0", "0.25.0"], ["0.36.0"]),
        ("option.quantize", ["0.23.0"], ["0.19.0"]),
        ("option.revision", ["0.23.0"], ["0.19.0"]),
        ("option.trust_remote_code", ["0.23.0"], ["0.19.0"]),
        ("option.enforce_eager", ["0.27.0", "0.36.0"], ["0.26.0"]),  # 0.35+ through vLLM's engine args
        ("option.gpu_memory_utilization", ["0.27.0", "0.36.0"], ["0.24.0"]),
        ("option.max_output_len", ["0.25.0", "0.33.0"], ["0.24.0"]),  # TensorRT-LLM toolkit, from the docs
        ("gpu.reserved_memory_mb", ["0.21.0", "0.36.0"], ["0.19.0"]),
        ("option.s3url", ["0.20.0", "0.26.0"], ["0.19.0", "0.27.0"]),
    ],
)
def test_catalog_spans_match_the_source(key: str, read_in: list[str], not_read_in: list[str]) -> None:
    for version in read_in:
        assert key_catalog.upstream_reads(key, version), (key, version)
    for version in not_read_in:
        assert not key_catalog.upstream_reads(key, version), (key, version)


def test_catalog_values_and_overlay() -> None:
    assert "DeepSpeed" in (key_catalog.allowed_values("engine", "0.19.0") or ())  # DsEngineProvider at 0.19.0
    assert "deepspeed" in (key_catalog.allowed_values("option.rolling_batch", "0.25.0") or ())
    assert key_catalog.allowed_values("option.rolling_batch", "0.36.0") == ("auto", "disable", "trtllm", "vllm")
    assert key_catalog.allowed_values("option.rolling_batch", "0.22.1") is None
    assert key_catalog.allowed_values("option.quantize", "0.33.0") is None  # vLLM takes any string there
    assert key_catalog.accepts_extra_keys("0.36.0") == ["TensorRtLlmProperties", "VllmRbProperties"]
    # lmi-deploy's own handler options: read by lmi-deploy's handler, never upstream
    assert known_keys.where_read("option.kv_cache", "0.28.0") == [known_keys.LMI_DEPLOY_HANDLER]
    assert not key_catalog.upstream_reads("option.kv_cache", "0.28.0")
    assert key_catalog.spans(["0.19.0", "0.20.0", "0.21.0", "0.23.0"]) == "0.19.0-0.21.0, 0.23.0"
    with pytest.raises(KeyError, match=r"LMI 0\.37\.0 is not in the key catalog"):
        known_keys.reads("engine", "0.37.0")


@pytest.mark.parametrize(
    ("key", "version", "near", "note"),
    [
        # read by no release, close to a key this version reads: a typo
        ("option.tensor_parallel_degre", "0.28.0", "option.tensor_parallel_degree", "read by no LMI release nor"),
        # vLLM's name, an alias from 0.32.0: a key of other releases, never a typo
        ("option.quantization", "0.28.0", None, "not read by LMI 0.28.0 (read in 0.32.0-0.38.0): it has no effect"),
        ("option.max_sparsity", "0.24.0", None, "not read by LMI 0.24.0 (read in 0.25.0-0.32.0)"),
        ("option.my_own_flag", "0.28.0", None, "unless your model.py reads it, it has no effect"),
        ("option.my_own_flag", "0.36.0", None, "passes unknown options on to the engine (TensorRtLlmProperties, Vll"),
        ("option.gpu_memory_utilisation", "0.36.0", "option.gpu_memory_utilization", "passes unknown options on"),
    ],
)
def test_unread_keys_are_typos_only_when_close_to_a_key_of_this_release(
    key: str, version: str, near: str | None, note: str
) -> None:
    assert not known_keys.reads(key, version)
    assert known_keys.near_miss(key, version) == near
    assert note in known_keys.unread_note(key, version)


def test_value_problems_come_from_the_release_enums() -> None:
    assert key_catalog.value_problem("option.quantize", "awq", "0.27.0") is None
    problem = key_catalog.value_problem("option.quantize", "int4", "0.27.0")
    assert problem is not None and problem.startswith("LMI 0.27.0 accepts awq, bitsandbytes")
    assert key_catalog.value_problem("option.quantize", "int4", "0.33.0") is None  # open: vLLM decides
    assert key_catalog.value_problem("option.rolling_batch", "deepspeed", "0.25.0") is None
    assert key_catalog.value_problem("option.rolling_batch", "scheduler", "0.35.0") == (
        "LMI 0.35.0 accepts auto, disable, trtllm, vllm"
    )
    # pooled over 0.28.0's classes bitsandbytes passes (HuggingFaceProperties has it); vLLM's path refuses it
    vllm = ("HuggingFaceProperties", "VllmRbProperties")
    assert key_catalog.value_problem("option.quantize", "bitsandbytes", "0.28.0") is None
    assert key_catalog.allowed_values("option.quantize", "0.28.0", vllm) == ("awq", "deepspeedfp", "gptq")
    assert key_catalog.allowed_values("option.quantize", "0.28.0", vllm[1:]) == (
        "awq",
        "deepspeedfp",
        "gptq",
        "squeezellm",
    )
    assert key_catalog.value_problem("option.quantize", "bitsandbytes", "0.28.0", vllm[1:]) == (
        "LMI 0.28.0 accepts awq, deepspeedfp, gptq, squeezellm (checked by VllmRbProperties)"
    )
    assert key_catalog.allowed_values("option.quantize", "0.33.0", vllm) is None  # both take any string
    assert key_catalog.allowed_values("option.quantize", "0.24.0", vllm) == key_catalog.allowed_values(
        "option.quantize", "0.24.0"
    )  # no properties classes yet: the pooled values (none)
    # a key the classes do not declare: the release's pooled values (handlers' closed choices included)
    assert key_catalog.allowed_values("engine", "0.28.0", vllm) == key_catalog.allowed_values("engine", "0.28.0")


def _validate(tmp_path: Path, text: str, container: str) -> dict[str, list[tuple[str, str]]]:
    """Run validate.py on a serving.properties as a user would; {errors|warnings: [(rule id, message)]}."""
    path = tmp_path / "serving.properties"
    path.write_text(text)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        validate.main(["--serving-properties", str(path), "--container", container, "--json"])
    report = json.loads(out.getvalue())
    return {level: [(f["rule"], f["message"]) for f in report[level]] for level in ("errors", "warnings")}


def _key_findings(found: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
    """Only the findings of the key and enum rules (LMI802-LMI804, LMI706/707, LMI807)."""
    ids = {"LMI802", "LMI803", "LMI804", "LMI706", "LMI707", "LMI807"}
    return {level: [f for f in findings if f[0] in ids] for level, findings in found.items()}


BASE = "option.model_id=s3://bucket/model/\noption.model_loading_timeout=1200\n"


@pytest.mark.parametrize(
    ("text", "container", "errors", "warnings"),
    [
        # published 0.25.0 scheduler config: every key is one that release reads
        (
            "engine=Python\noption.rolling_batch=scheduler\noption.max_sparsity=0.33\noption.max_splits=3\n"
            "option.decoding_strategy=contrastive\noption.disable_flash_attn=true\n",
            "0.25.0",
            [],
            [],
        ),
        ("engine=DeepSpeed\noption.tensor_parallel_degree=2\n", "0.19.0", [], []),  # DsEngineProvider at 0.19.0
        ("engine=DeepSpeed\noption.rolling_batch=deepspeed\noption.tensor_parallel_degree=2\n", "0.25.0", [], []),
        # a key of other releases: a warning naming them, never a typo
        (
            "engine=Python\noption.max_sparsity=0.33\n",
            "0.24.0",
            [],
            [("LMI803", "line 2: option.max_sparsity is not read by LMI 0.24.0 (read in 0.25.0-0.32.0)")],
        ),
        # read by no release and close to a key this release reads: a typo, a warning naming the key (the container
        # loads without it, as djl-serving's own tests with a bare model_loading_timeout do)
        (
            "engine=Python\noption.tensor_parallel_degre=4\n",
            "0.28.0",
            [],
            [("LMI802", "line 2: option.tensor_parallel_degre is not a key LMI 0.28.0 reads; did you mean ")],
        ),
        (
            "engine=Python\nmodel_loading_timeout=1800\n",
            "0.29.0",
            [],
            [("LMI802", "line 2: model_loading_timeout is not a key LMI 0.29.0 reads; did you mean option.model_")],
        ),
        # read by no release and close to nothing: a warning (a custom model.py may read it)
        (
            "engine=Python\noption.my_own_flag=1\n",
            "0.28.0",
            [],
            [("LMI804", "line 2: option.my_own_flag is read by no LMI release nor lmi-deploy's handler")],
        ),
        (
            "engine=Python\noption.rolling_batch=vllm\noption.my_own_flag=1\n",
            "0.36.0",
            [],
            [("LMI804", "line 3: option.my_own_flag is read by no LMI release; LMI 0.36.0 passes unknown options on")],
        ),
        # the release's enum: quantize is an Enum on 0.27.0, a free string (vLLM decides) on 0.33.0
        (
            "engine=Python\noption.quantize=int4\n",
            "0.27.0",
            [("LMI807", "line 2: option.quantize=int4 with Accelerate: LMI 0.27.0 accepts awq, bitsandbytes, bitsan")],
            [],
        ),
        # each engine's own classes: 0.28.0's Accelerate handler takes bitsandbytes, vLLM's rolling batch does not
        # (djl_python.huggingface builds HuggingFaceProperties, then VllmRbProperties: a value passes both enums)
        ("engine=Python\noption.quantize=bitsandbytes\n", "0.28.0", [], []),
        (
            "engine=Python\noption.rolling_batch=vllm\noption.quantize=bitsandbytes\n",
            "0.28.0",
            [
                (
                    "LMI807",
                    "line 3: option.quantize=bitsandbytes with vLLM: LMI 0.28.0 accepts awq, deepspeedfp, gptq (checked "
                    "by HuggingFaceProperties and VllmRbProperties)",
                )
            ],
            [],
        ),
        ("engine=Python\noption.rolling_batch=vllm\noption.quantize=awq\n", "0.28.0", [], []),
    ],
)
def test_key_rules_on_real_files(
    tmp_path: Path,
    text: str,
    container: str,
    errors: list[tuple[str, str]],
    warnings: list[tuple[str, str]],
) -> None:
    found = _key_findings(_validate(tmp_path, text + BASE, container))
    for level, expected in (("errors", errors), ("warnings", warnings)):
        assert len(found[level]) == len(expected), found
        for (rule_id, message), (want_id, want_start) in zip(found[level], expected, strict=True):
            assert rule_id == want_id and message.startswith(want_start), (rule_id, message)


def test_enum_of_the_engine_applies_to_djl_serving_handlers_only(tmp_path: Path) -> None:
    """djl_python.huggingface builds vLLM's two classes; a model.py of the user's own builds neither."""
    text = "engine=Python\noption.rolling_batch=vllm\noption.quantize=bitsandbytes\n" + BASE
    assert _key_findings(_validate(tmp_path, text, "0.29.0"))["errors"] == [
        (
            "LMI807",
            "line 3: option.quantize=bitsandbytes with vLLM: LMI 0.29.0 accepts awq, awq_marlin, deepspeedfp, "
            "fbgemm_fp8, fp8, gptq, gptq_marlin, gptq_marlin_24, marlin, squeezellm (checked by "
            "HuggingFaceProperties and VllmRbProperties)",
        )
    ]
    (tmp_path / "model.py").write_text("def handle(inputs):\n    return None\n")
    assert _key_findings(_validate(tmp_path, text, "0.29.0"))["errors"] == []
