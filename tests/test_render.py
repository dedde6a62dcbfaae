"""Rendered model code, as a matrix: it compiles and lints, parses back, leaves nothing unrendered, packs the same."""

from __future__ import annotations

import ast
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from lmi_deploy import containers, known_keys
from lmi_deploy.commands import render as render_script
from lmi_deploy.config import load_config
from lmi_deploy.containers import Engine
from lmi_deploy.render import (
    HANDLERS_PACKAGE,
    handler_keys,
    handler_tensor_parallel,
    render,
    render_files,
    serving_properties,
)
from lmi_deploy.rules.check import check_serving_properties
from lmi_deploy.rules.properties_view import from_properties
from tests.conftest import ruff_py39


def parse_properties(text: str) -> dict[str, str]:
    """serving.properties as DJL reads it (java.util.Properties for our subset: no escapes, no continuations)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        result[key.strip()] = value.lstrip()
    return result


# Per engine: the models it serves in the matrix, the instance, and the TP degrees to try.
_GPU = "ml.g5.48xlarge"  # 8 x A10G
_MATRIX_MODELS = {
    Engine.FASTER_TRANSFORMER: (("google/flan-t5-xxl", "EleutherAI/gpt-j-6b"), _GPU, (4, 8)),
    Engine.DEEPSPEED: (("EleutherAI/gpt-j-6b",), _GPU, (2, 8)),
    Engine.DEEPSPEED_ROLLING: (("EleutherAI/gpt-j-6b", "meta-llama/Llama-2-7b-hf"), _GPU, (1, 8)),
    Engine.ACCELERATE: (("google/flan-t5-xxl", "meta-llama/Llama-2-7b-hf"), _GPU, (4, 8)),
    Engine.LMI_DIST: (("meta-llama/Llama-2-7b-hf",), _GPU, (1, 8)),
    Engine.VLLM: (("mistralai/Mistral-7B-Instruct-v0.2",), _GPU, (1, 8)),
    Engine.TENSORRT_LLM: (("meta-llama/Llama-2-7b-hf",), _GPU, (1, 8)),
    Engine.NEURONX: (("EleutherAI/gpt-j-6b", "meta-llama/Llama-2-7b-hf"), "ml.inf2.24xlarge", (4,)),
}


def test_the_matrix_covers_every_engine() -> None:
    missing = set(Engine) - set(_MATRIX_MODELS)
    assert not missing, (
        f"add {sorted(missing)} to _MATRIX_MODELS (models, instance, TP degrees) in tests/test_render.py"
    )


# (engine, release, model owner) whose image pins a transformers without the model's family: llama from 4.28
# (0.22.1), mistral from 4.34 (0.24.0).
_FAMILY_TOO_NEW = {
    (Engine.ACCELERATE, "0.20.0", "meta-llama"),
    (Engine.ACCELERATE, "0.21.0", "meta-llama"),
    (Engine.VLLM, "0.23.0", "mistralai"),
}


def _matrix() -> list[tuple[Engine, str, str, str, str, int]]:
    rows = []
    for engine, (models, _, tps) in _MATRIX_MODELS.items():
        spec = containers.ENGINES[engine]
        handlers = ("builtin", "custom") if spec.custom_template else ("builtin",)
        for version in containers.versions(engine):
            if version == "0.19.0":
                continue  # refused: it cannot load staged weights (tests/test_release_renders.py)
            for model_id in models:
                if engine is Engine.NEURONX and version in ("0.22.1", "0.23.0") and "llama" in model_id.lower():
                    continue  # llama on NeuronX starts at 0.24.0 (a refused combination, in the corpus)
                if (engine, version, model_id.split("/")[0]) in _FAMILY_TOO_NEW:
                    continue  # the image's transformers predates the family (refused: LMI106)
                for dtype in spec.dtypes:
                    t5 = "t5" in model_id
                    if dtype == "int8" or (t5 and dtype == "fp16"):
                        continue  # refused, see the bad-input corpus
                    if engine is Engine.NEURONX and dtype == "bf16" and version in ("0.22.1", "0.23.0"):
                        continue
                    if dtype == "fp32" and engine in (Engine.DEEPSPEED, Engine.NEURONX, Engine.ACCELERATE) and not t5:
                        continue  # fits, but not worth the matrix time: fp32 paths are covered by FT and T5
                    for handler in handlers:
                        for tp in tps:
                            rows.append((engine, version, handler, dtype, model_id, tp))
    return rows


MATRIX = _matrix()
HANDLERS_DIR = Path(__file__).resolve().parent.parent / "lmi_deploy" / "handlers"
# lmi_deploy/handlers/ ships beside every rendered model.py
HANDLER_FILES = tuple(f"{HANDLERS_PACKAGE}/{path.name}" for path in sorted(HANDLERS_DIR.glob("*.py")))


@pytest.mark.parametrize(
    ("engine", "version", "handler", "dtype", "model_id", "tp"),
    MATRIX,
    ids=[f"{e.value}-{v}-{h}-{d}-{m.split('/')[-1]}-tp{t}" for e, v, h, d, m, t in MATRIX],
)
def test_render_matrix(
    tmp_path: Path, engine: Engine, version: str, handler: str, dtype: str, model_id: str, tp: int
) -> None:
    config = load_config(
        {
            "engine": engine.value,
            "lmi_version": version,
            "handler": handler,
            "dtype": dtype,
            "model_id": model_id,
            "tensor_parallel_degree": tp,
            "instance_type": _MATRIX_MODELS[engine][1],
        }
    )
    spec = containers.ENGINES[engine]
    code = render(config, tmp_path)
    properties = parse_properties((code.directory / "serving.properties").read_text())
    assert properties == dict(serving_properties(config))
    # 0.20-0.22 download S3 weights named by option.s3url; 0.19.0 reads no s3url at all.
    weights_key = "option.s3url" if (0, 20, 0) <= containers.version_key(version) < (0, 23, 0) else "option.model_id"
    if handler_tensor_parallel(config):  # our handler splits every layer over the ranks mpirun starts
        assert (properties["engine"], tp > 1, engine) == ("MPI", True, Engine.ACCELERATE)
    else:
        assert properties["engine"] == containers.server_engine(engine, version)
        assert properties["engine"] in (spec.server_engine, "Python")
    assert properties[weights_key] == config.weights_s3_uri
    assert properties["option.tensor_parallel_degree"] == str(tp)
    dtype_key = "option.dtype" if handler == "custom" else containers.dtype_key(version)
    assert dtype_key is not None
    assert properties[dtype_key] == dtype
    assert properties["option.model_loading_timeout"] == str(config.resolved.container_startup_health_check_timeout)
    assert properties.get("option.rolling_batch") == spec.rolling_batch  # never "disable"
    expected_entry = containers.entry_point(engine, version) if handler == "builtin" else None
    assert properties.get("option.entryPoint") == expected_entry
    for key in properties:
        assert known_keys.reads(key, version) or (handler == "custom" and key in handler_keys(version)), key
    file = from_properties(  # the rendered file passes every rule the registry runs on files
        (code.directory / "serving.properties").read_text(),
        version,
        container_tag=config.image_tag,
        instance_type=config.instance_type,
        facts=config.facts,
        startup_timeout=config.resolved.container_startup_health_check_timeout,
        has_model_py="model.py" in code.files,
    )
    _, findings = check_serving_properties(file)
    version_warnings = {"LMI525", "LMI710", "LMI711"}  # estimates and known bugs of the release, said as warnings
    version_warnings |= {"LMI804"} if handler == "custom" else set()  # our model.py's own keys: unknown to DJL
    assert [f for f in findings if f.level == "error" or f.rule not in version_warnings] == []
    for name in code.files:
        text = (code.directory / name).read_text()
        assert "{{" not in text and "{%" not in text and "{#" not in text, name
    if handler == "custom":
        assert code.files == (*HANDLER_FILES, "model.py", "serving.properties")
        source = (code.directory / "model.py").read_text()
        ast.parse(source, feature_version=(3, 9))  # older LMI containers run Python 3.9
        compile(source, "model.py", "exec")
    else:
        assert code.files == ("serving.properties",)


def test_rendered_handlers_lint_clean(tmp_path: Path) -> None:
    """One ruff run over each handler template and model family (the rest of the matrix renders the same)."""
    paths = []
    for engine, model_id in (
        ("FasterTransformer", "google/flan-t5-xxl"),
        ("FasterTransformer", "EleutherAI/gpt-j-6b"),
        ("DeepSpeed", "EleutherAI/gpt-j-6b"),
        ("Accelerate", "google/flan-t5-xxl"),
    ):
        context = {"engine": engine, "model_id": model_id, "deployment": f"{engine.lower()}-{model_id[:6].lower()}"}
        code = render(load_config(context), tmp_path)
        paths.append(str(code.directory / "model.py"))
    result = ruff_py39(*paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tarball_is_deterministic_and_laid_out_like_the_seed(tmp_path: Path) -> None:
    config = load_config({})
    first = render(config, tmp_path / "a").tarball.read_bytes()
    second_code = render(config, tmp_path / "b")
    second = second_code.tarball.read_bytes()
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    assert first[4:8] == b"\0\0\0\0"  # gzip MTIME field
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
        names = [*HANDLER_FILES, "model.py", "serving.properties"]
        assert [m.name for m in members] == [f"flan-t5-xxl/{name}" for name in names]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
        shipped = tar.extractfile("flan-t5-xxl/model.py")
        assert shipped is not None
        assert shipped.read() == (second_code.directory / "model.py").read_bytes()
        module = tar.extractfile(f"flan-t5-xxl/{HANDLERS_PACKAGE}/request.py")
        assert module is not None and module.read() == (HANDLERS_DIR / "request.py").read_bytes()
    changed = render(load_config({"dtype": "bf16"}), tmp_path / "c").tarball.read_bytes()
    assert changed != first


def test_rerender_replaces_the_folder_whole(tmp_path: Path) -> None:
    render(load_config({"handler": "custom"}), tmp_path)
    code = render(load_config({"handler": "builtin"}), tmp_path)
    # A stale model.py would win over option.entryPoint inside the container.
    assert sorted(p.name for p in code.directory.iterdir()) == ["serving.properties"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flan-t5-xxl", "flan-t5-xxl.tar.gz"]


def test_render_script(tmp_path: Path, deployment_file, capsys: pytest.CaptureFixture[str]) -> None:
    path = deployment_file("handler: builtin\nlmi_version: 0.24.0\n")
    assert render_script.main(["--config", str(path), "-c", "dtype=bf16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}/flan-t5-xxl/serving.properties" in out
    properties = parse_properties((tmp_path / "flan-t5-xxl" / "serving.properties").read_text())
    assert properties["option.dtype"] == "bf16"
    assert properties["option.entryPoint"] == "djl_python.fastertransformer"

    assert render_script.main(["-c", "tensor_parallel_degree=8", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("lmi-deploy: LMI302 tensor_parallel_degree=8 does not fit ml.g5.12xlarge")
    assert not (tmp_path / "x").exists()
    assert render_script.main(["-c", "dtype"]) == 2
    assert "must look like KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "deployments").glob("*.yaml")))
def test_example_deployments_validate_and_render(tmp_path: Path, path: Path) -> None:
    from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
    from lmi_deploy.multi_render import render_multi

    config = load_deployment({"config": str(path)})
    if isinstance(config, MultiModelDeployment):  # several models: a folder and an archive each
        rendered = render_multi(config, tmp_path)
        assert all((m.directory / "serving.properties").exists() and m.tarball.stat().st_size for m in rendered.models)
        return
    code = render(config, tmp_path)
    assert (code.directory / "serving.properties").exists()
    assert code.tarball.stat().st_size > 0


def test_seed_deployment_file_equals_the_defaults() -> None:
    seed = Path(__file__).resolve().parent.parent / "deployments" / "flan-t5-xxl.yaml"
    from_file, defaults = load_config({"config": str(seed)}), load_config({})
    assert render_files(from_file) == render_files(defaults)
    assert from_file.resolved.model_data_download_timeout == defaults.resolved.model_data_download_timeout == 600
    assert from_file.resolved.container_startup_health_check_timeout == 600
    assert (from_file.instance_type, from_file.instance_count) == (defaults.instance_type, defaults.instance_count)
