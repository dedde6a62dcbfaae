"""The compile cache, the streaming-kernel choice and the Accelerate partition job, on the CPU.

The GPU measures what they buy (scripts/bench_handler.py); here: that a staged cache is found by its name and loaded
before the warm-up, that a damaged one never fails a start, that the kernel is kept only where it computes the same
thing faster, that a streamed model is served only when it agrees with generate(), and that the partition job runs
the deployment's own handler and writes the cache where the handler looks.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy import partition
from lmi_deploy.config import load_config
from lmi_deploy.render import render
from lmi_deploy.runtime import load_handler
from scripts import bench_load
from tests.conftest import ruff_py39


def shipped(module: str) -> Any:
    return importlib.import_module(f"lmi_handlers.{module}")


def t5_handler(tiny_models: dict[str, Path], out: Path) -> Any:
    context = {"engine": "accelerate", "model_id": str(tiny_models["t5"]), "instance_type": "ml.g5.xlarge"}
    config = load_config({**context, "tensor_parallel_degree": "1", "dtype": "fp32", "deployment": "speedups"})
    return load_handler(render(config, out).directory / "model.py")


def cpu_product(x: Any, weight: Any, tiling: Any) -> Any:
    return x @ weight.T


def test_gemv_keeps_the_kernel_only_where_it_is_right_and_faster(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    import torch

    t5_handler(tiny_models, tmp_path)
    gemv = shipped("gemv")
    fast_weight, slow_weight = torch.randn(8, 16), torch.randn(24, 16)

    def timing(function: Any, weights: list[Any], repeats: int = 3) -> float:
        kernel = getattr(function, "func", None) is gemv._kernel
        return (0.5 if weights[0] is fast_weight else 2.0) if kernel else 1.0

    monkeypatch.setattr(gemv, "_time_ms", timing)
    monkeypatch.setattr(gemv, "launch", cpu_product)
    report = gemv.choose({(8, 16): [fast_weight], (24, 16): [slow_weight]}, [1, 4, 32])
    assert set(gemv.CHOICES) == {(8, 16)} and set(gemv.CHOICES[(8, 16)]) == {1, 4}  # 32 rows: never
    assert report["24x16"][4]["chosen"] == "cublas" and report["8x16"][4]["kernel_ms"] == 0.5
    x = torch.randn(2, 3, 16)
    assert torch.allclose(gemv.linear(x, fast_weight, None), x @ fast_weight.T, atol=1e-5)  # through the operator
    monkeypatch.setattr(gemv, "launch", lambda x, weight, tiling: x @ weight.T + 1)  # a wrong kernel
    gemv.choose({(8, 16): [fast_weight]}, [4])
    assert not gemv.CHOICES  # computed something else: never a candidate, however fast
    assert gemv.unavailable(torch.device("cpu")) == "the model is on cpu"


@pytest.mark.parametrize("correct", [True, False], ids=["agrees", "disagrees"])
def test_streamed_projections_serve_only_when_they_agree(
    correct: bool,
    tiny_models: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = t5_handler(tiny_models, tmp_path)
    gemv = shipped("gemv")
    monkeypatch.setattr(gemv, "unavailable", lambda device: None)
    monkeypatch.setattr(gemv, "launch", cpu_product if correct else (lambda x, w, t: x @ w.T * 1.5))

    def choose(matrices: dict[tuple[int, int], list[Any]], rows: list[int]) -> dict[str, Any]:
        for shape in matrices:
            gemv.CHOICES[shape] = dict.fromkeys(range(1, 17), (16, 64, 4, 2))
        return {f"{n}x{k}": {} for n, k in matrices}

    monkeypatch.setattr(gemv, "choose", choose)
    options = {"model_id": str(tiny_models["t5"]), "dtype": "fp32"}
    model, tokenizer, seq2seq = handler.HANDLER.load_model(options)
    with caplog.at_level(logging.INFO):
        fast = handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, options)
    assert fast is not None and fast.fused
    if correct:
        assert fast.kernels and "fused projections on, gemv kernel on): agrees with generate()" in caplog.text
        prompts = ["summarize: the quick brown fox", "x"]
        mine = handler.HANDLER.generate(model, tokenizer, seq2seq, prompts, {"max_new_tokens": 9}, fast)
        gemv.CHOICES.clear()
        assert mine == handler.HANDLER.generate(model, tokenizer, seq2seq, prompts, {"max_new_tokens": 9})
    else:
        assert not fast.kernels and not gemv.CHOICES
        assert "gemv kernel on) disagrees with generate()" in caplog.text
        assert "fused projections on): agrees with generate()" in caplog.text
    gemv.CHOICES.clear()


def test_a_model_split_by_device_map_decodes_uncompiled_without_the_streaming_kernel(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """device_map over several GPUs: no CUDA graph spans them, accelerate's per-layer device hooks make torch.compile
    recompile past its limit (slower than eager on 2 x H200), and the kernel's timing cannot run one device's input
    over every layer's matrix. As if on GPUs: compile and the kernel were on offer; each is declined and logged."""
    handler = t5_handler(tiny_models, tmp_path)
    accelerate, gemv = shipped("accelerate"), shipped("gemv")
    monkeypatch.setattr(accelerate, "COMPILE_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(gemv, "unavailable", lambda device: None)
    options = {"model_id": str(tiny_models["t5"]), "dtype": "fp32", "compile": "true"}
    model, tokenizer, seq2seq = handler.HANDLER.load_model(options)
    assert accelerate._devices_spanned(model) == 1
    model.hf_device_map = {"shared": 0, "encoder": 0, "decoder": 1, "lm_head": 1}
    with caplog.at_level(logging.INFO):
        fast = handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, options)
    assert fast is not None and fast.compiled_forward is None and not fast.graphs
    assert "cuda_graphs and compile: off for a model split over 2 devices (device_map)" in caplog.text
    assert "gemv: not tried (the model is split over several devices (device_map))" in caplog.text
    assert not gemv.CHOICES


def test_compile_cache_is_found_by_its_name_and_never_fails_a_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tiny_models: dict[str, Path]
) -> None:
    import torch

    t5_handler(tiny_models, tmp_path / "code")
    cache = shipped("compile_cache")
    assert cache.FOLDER == partition.COMPILE_CACHE_FOLDER  # where the job writes is where the handler looks
    loaded: list[bytes] = []
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", loaded.append)
    weights = tmp_path / "weights"
    with caplog.at_level(logging.INFO):
        assert not cache.load(str(weights))
    assert "none staged" in caplog.text
    folder = weights / cache.FOLDER
    folder.mkdir(parents=True)
    (folder / "torch-0.0-other-gpu.bin").write_bytes(b"made elsewhere")
    assert not cache.load(str(weights)) and not loaded  # another torch or GPU: would not hit, never loaded
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"artifacts", None))
    saved = cache.save(str(folder))
    assert saved == str(folder / cache.cache_name()) and cache.load(str(weights)) and loaded == [b"artifacts"]

    def damaged(data: bytes) -> None:
        raise RuntimeError("bad magic")

    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", damaged)
    with caplog.at_level(logging.WARNING):
        assert not cache.load(str(weights))
    assert "could not be loaded (bad magic); compiling from scratch" in caplog.text
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: None)
    assert cache.save(str(tmp_path / "nothing")) is None and not (tmp_path / "nothing").exists()


def test_accelerate_partition_job_runs_the_handler_and_stages_its_cache(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runpy

    import torch

    context = {"engine": "accelerate", "model_id": "google/flan-t5-xxl", "account": "111122223333"}
    config = load_config({**context, "dtype": "bf16", "instance_type": "ml.g6e.xlarge", "tensor_parallel_degree": "1"})
    files = partition.partition_files(config)
    assert {"partition.py", "model.py", "serving.properties", "lmi_handlers/compile_cache.py"} <= set(files)
    request = partition.job_request(config, "arn:aws:iam::111122223333:role/p", "s3://b/code/", now=0)
    target = request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert target.endswith("/models/google/flan-t5-xxl/main/partitioned/compile-cache/")
    code = tmp_path / "code"
    for name, text in files.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(text)
    assert ruff_py39(code / "partition.py").returncode == 0
    script = files["partition.py"]
    for constant, path in (("INPUT_DIR", tiny_models["t5"]), ("OUTPUT_DIR", tmp_path / "out"), ("CODE_DIR", code)):
        default = getattr(partition, constant)
        script = script.replace(f"{constant} = {default!r}", f"{constant} = {str(path)!r}")
    (code / "partition.py").write_text(script)
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"compiled here", None))
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setitem(sys.modules, "djl_python", None)  # a job's python3 without the server's path: names only
    with pytest.raises(SystemExit) as finished:
        runpy.run_path(str(code / "partition.py"), run_name="__main__")
    assert finished.value.code == 0
    assert sys.modules.pop("model").Output is object  # the rendered handler, imported by the job
    name = shipped("compile_cache").cache_name()
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == {name: b"compiled here"}

    no_compile = load_config({**context, "compile": "false", "dtype": "bf16", "instance_type": "ml.g6e.xlarge"})
    with pytest.raises(Exception, match="compile is off here: set compile=true"):
        partition.partition_files(no_compile)


def test_disk_cold_reports_the_disk_beside_the_load(tmp_path: Path) -> None:
    shard = tmp_path / "model.safetensors"
    shard.write_bytes(b"\0" * (8 << 20))
    calls: list[str] = []
    result = bench_load.disk_cold([shard], lambda: calls.append("load"), lambda: calls.append("free"), system=False)
    assert calls == ["load", "free"] and result["evicted_by"] == "fadvise"
    assert result["disk_read_gb_s"] > 0 and result["load_vs_disk"] > 0
