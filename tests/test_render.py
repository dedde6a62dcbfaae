"""Rendered model code, as a matrix: it compiles and lints, parses back, leaves nothing unrendered, packs the same."""

from __future__ import annotations

import ast
import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from lmi_deploy import containers
from lmi_deploy.config import load_config
from lmi_deploy.containers import Engine
from lmi_deploy.render import render, serving_properties
from scripts import render as render_script


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


MATRIX = [
    (version, handler, dtype, model_id, tp)
    for version in containers.versions(Engine.FASTER_TRANSFORMER)
    for handler in ("custom", "builtin")
    for dtype in ("fp32", "bf16")
    for model_id, tp in (("google/flan-t5-xxl", 4), ("EleutherAI/gpt-j-6b", 2), ("bigscience/bloom-560m", 1))
]


@pytest.mark.parametrize(("version", "handler", "dtype", "model_id", "tp"), MATRIX)
def test_render_matrix(tmp_path: Path, version: str, handler: str, dtype: str, model_id: str, tp: int) -> None:
    config = load_config(
        {"lmi_version": version, "handler": handler, "dtype": dtype, "model_id": model_id, "tensor_parallel_degree": tp}
    )
    code = render(config, tmp_path)
    properties_text = (code.directory / "serving.properties").read_text()
    properties = parse_properties(properties_text)
    weights_key = "option.s3url" if version in ("0.21.0", "0.22.1") else "option.model_id"
    expected = {
        "engine": "FasterTransformer",
        weights_key: config.weights_s3_uri,
        "option.tensor_parallel_degree": str(tp),
        "option.dtype": dtype,
        "option.model_loading_timeout": "600",
    }
    if handler == "builtin":
        expected["option.entryPoint"] = "djl_python.fastertransformer"
    assert properties == expected
    assert properties == dict(serving_properties(config))
    for name in code.files:
        text = (code.directory / name).read_text()
        assert "{{" not in text and "{%" not in text and "{#" not in text, name
    if handler == "custom":
        assert code.files == ("model.py", "serving.properties")
        source = (code.directory / "model.py").read_text()
        ast.parse(source, feature_version=(3, 9))  # the FT container runs Python 3.9
        compile(source, "model.py", "exec")
    else:
        assert code.files == ("serving.properties",)


def test_rendered_handlers_lint_clean(tmp_path: Path) -> None:
    """One ruff run over a custom handler per model family (the rest of the matrix renders the same template)."""
    paths = []
    for model_id in ("google/flan-t5-xxl", "EleutherAI/gpt-j-6b"):
        code = render(
            load_config({"model_id": model_id, "tensor_parallel_degree": 1}), tmp_path / model_id.split("/")[0]
        )
        paths.append(str(code.directory / "model.py"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--target-version",
            "py39",
            "--select",
            "E,F,W,B,UP",
            "--line-length",
            "120",
            *paths,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
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
        assert [m.name for m in members] == ["flan-t5-xxl/model.py", "flan-t5-xxl/serving.properties"]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
        shipped = tar.extractfile("flan-t5-xxl/model.py")
        assert shipped is not None
        assert shipped.read() == (second_code.directory / "model.py").read_bytes()
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
    assert err.strip().startswith("lmi-deploy: tensor_parallel_degree=8 does not fit ml.g5.12xlarge")
    assert not (tmp_path / "x").exists()
    assert render_script.main(["-c", "dtype"]) == 2
    assert "must look like KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "deployments").glob("*.yaml")))
def test_example_deployments_validate_and_render(tmp_path: Path, path: Path) -> None:
    config = load_config({"config": str(path)})
    code = render(config, tmp_path)
    assert (code.directory / "serving.properties").exists()
    assert code.tarball.stat().st_size > 0


def test_seed_deployment_file_equals_the_defaults() -> None:
    seed = Path(__file__).resolve().parent.parent / "deployments" / "flan-t5-xxl.yaml"
    assert load_config({"config": str(seed)}) == load_config({})
