"""The Accelerate handler's fast path on the CPU: direct safetensors loading and the static-cache decode loop.

CUDA graphs and torch.compile need a GPU (scripts/bench_handler.py measures them there); everything else of the fast
path runs here on tiny models made in the tests and is checked token for token against plain ``generate``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy.config import ConfigError, load_config
from lmi_deploy.render import render
from lmi_deploy.runtime import load_handler
from scripts import bench_handler

PROMPTS = [
    "summarize: the quick brown fox jumps over the lazy dog",
    "question: what is the capital of France? answer:",
    "x",
]


def rendered(tiny_models: dict[str, Path], kind: str, out: Path, **options: str) -> Any:
    context = {
        "engine": "accelerate",
        "handler": "custom",
        "model_id": str(tiny_models[kind]),
        "instance_type": "ml.g5.xlarge",
        "tensor_parallel_degree": "1",
        "dtype": "fp32",
        "deployment": f"fast-{kind}",
        **options,
    }
    code = render(load_config(context), out)
    return code, load_handler(code.directory / "model.py")


def shipped(module: str) -> Any:
    """A module of the lmi_handlers/ package the rendered model.py imported (as the container imports it)."""
    return importlib.import_module(f"lmi_handlers.{module}")


def plain_generate(model: Any, tokenizer: Any, seq2seq: bool, prompts: list[str], **kwargs: Any) -> list[list[int]]:
    import torch

    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        ids = model.generate(**encoded, pad_token_id=tokenizer.pad_token_id, **kwargs)
    ids = ids[:, 1:] if seq2seq else ids[:, encoded["input_ids"].shape[1] :]
    return [
        row[: row.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in row else row for row in ids.tolist()
    ]


@pytest.mark.parametrize("kind", ["t5", "llama"])
def test_fast_path_loads_directly_and_decodes_like_generate(
    kind: str, tiny_models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    code, handler = rendered(tiny_models, kind, tmp_path)
    properties = dict(
        line.split("=", 1) for line in (code.directory / "serving.properties").read_text().splitlines()[1:]
    )
    options = {k.removeprefix("option."): v for k, v in properties.items() if k.startswith("option.")}
    assert {k: options[k] for k in ("kv_cache", "cuda_graphs", "compile", "fuse_projections", "fast_load")} == {
        "kv_cache": "static",
        "cuda_graphs": "true",
        "compile": "true",
        "fuse_projections": "true",
        "fast_load": "true",
    }
    # the tiny T5 knows no positions limit (2048 by default), the tiny Llama 256; batches up to 8 by default
    long = "1536x512" if kind == "t5" else "192x64"
    assert options["warm_shapes"] == ",".join(f"{r}x{n}" for n in ("128x64", long) for r in (1, 2, 4, 8))
    options["model_id"] = str(tiny_models[kind])
    with caplog.at_level(logging.INFO):
        model, tokenizer, seq2seq = handler.HANDLER.load_model(options)
        # direct load: every weight is a view into the one buffer its shard was read into
        storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
        assert len(storages) == len(list(tiny_models[kind].glob("*.safetensors"))) == 1
        fast = handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, options)
    reference = type(model).from_pretrained(tiny_models[kind])
    assert all(  # fused projections keep the checkpoint's names and values
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True)
    )
    assert fast is not None and not fast.graphs, caplog.text  # no GPU: static cache, eager steps, no compile
    assert "fused projections on): agrees with generate()" in caplog.text
    # the decoder's q|k|v (and Llama's gate|up) are one matrix each; the cross-attention's are not
    fused = {
        name.rsplit(".", 1)[-1]
        for name, m in model.named_modules()
        if isinstance(m, shipped("fused_projections")._FusedLinear)
    }
    assert fused == ({"q"} if kind == "t5" else {"q_proj", "gate_proj"})
    assert not fast.warm  # nothing to compile or capture on the CPU: buckets are made on first use

    # greedy: token for token what generate() gives, across batch buckets, padding and lengths
    for prompts, new in ((PROMPTS, 20), (PROMPTS[:1], 3), (PROMPTS * 2, 33)):
        settings = fast.settings({"max_new_tokens": new})
        encoded = tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            ids = fast.generate_ids(encoded, settings).tolist()
        mine = [row[: row.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in row else row for row in ids]
        assert mine == plain_generate(model, tokenizer, seq2seq, prompts, max_new_tokens=new)

    # through the handler: the same answer with and without the fast path; sampling is served by it too
    plain = handler.HANDLER.generate(model, tokenizer, seq2seq, PROMPTS, {"max_new_tokens": 12})
    assert handler.HANDLER.generate(model, tokenizer, seq2seq, PROMPTS, {"max_new_tokens": 12}, fast) == plain
    sampled = {"max_new_tokens": 9, "do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.9, "seed": 4}
    assert fast.settings({k: v for k, v in sampled.items() if k != "seed"}) is not None
    first = handler.HANDLER.generate(model, tokenizer, seq2seq, PROMPTS, sampled, fast)
    assert first == handler.HANDLER.generate(model, tokenizer, seq2seq, PROMPTS, sampled, fast)  # seeded: repeatable
    assert all(1 <= n <= 9 for n in first["generated_tokens"])
    # what only generate() does is left to it
    for kwargs in ({"max_new_tokens": 5, "num_beams": 2}, {"max_new_tokens": 5, "repetition_penalty": 1.3}, {}):
        assert fast.settings(kwargs) is None


def test_fast_path_switches_itself_off_when_it_disagrees(
    tiny_models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    _, handler = rendered(tiny_models, "t5", tmp_path)
    options = {"model_id": str(tiny_models["t5"]), "dtype": "fp32"}
    model, tokenizer, seq2seq = handler.HANDLER.load_model(options)
    original = shipped("fast_decode").FastDecoder.generate_ids
    monkeypatch.setattr(shipped("fast_decode").FastDecoder, "generate_ids", lambda self, *a: original(self, *a) + 1)
    with caplog.at_level(logging.WARNING):
        assert handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, options) is None
    assert "disagrees with generate()" in caplog.text and "kv_cache=static is off" in caplog.text
    assert "fused projections on) disagrees" in caplog.text and "fused projections off) disagrees" in caplog.text
    # generate() serves with the checkpoint's own layers again
    assert not [m for m in model.modules() if isinstance(m, shipped("fused_projections")._SlicedLinear)]
    assert type(model.decoder.block[0].layer[0].SelfAttention.q) is torch.nn.Linear
    assert handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, dict(options, kv_cache="dynamic")) is None


def test_compile_happens_at_load_and_never_on_a_request(
    tiny_models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """option.compile on the CPU (dynamo without inductor): compiled at load, warm buckets ready; after load a request
    is served by a warm bucket or uncompiled, never compiled, token for token."""
    import torch
    from torch._dynamo.utils import counters

    _, handler = rendered(tiny_models, "t5", tmp_path)
    options = {"model_id": str(tiny_models["t5"]), "dtype": "fp32", "warm_shapes": "1x20x10,4x20x10,bad"}
    model, tokenizer, seq2seq = handler.HANDLER.load_model(options)
    monkeypatch.setattr(
        shipped("fast_decode"), "COMPILE_BACKEND", "eager"
    )  # dynamo's guards and stance, no code generation
    monkeypatch.setattr(shipped("accelerate"), "COMPILE_DEVICES", ("cuda", "cpu"))
    torch._dynamo.reset()
    with caplog.at_level(logging.INFO):
        fast = handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, options)
    assert fast is not None and fast.compiled_forward is not None and fast.loaded, caplog.text
    assert "compile on, fused projections on): agrees with generate()" in caplog.text
    assert "'bad' is not ROWSxPROMPTxNEW" in caplog.text
    assert fast.warm == {(2, 32, 32), (4, 32, 32)}  # batch 1 shares batch 2's bucket: no size-1 specialisation
    assert all(fast.shapes[key].compiled for key in fast.warm)

    compiled_at_load = counters["stats"]["unique_graphs"]
    for prompts in (PROMPTS[:1], PROMPTS):  # the warm buckets
        mine = handler.HANDLER.generate(model, tokenizer, seq2seq, prompts, {"max_new_tokens": 10}, fast)
        assert mine == handler.HANDLER.generate(model, tokenizer, seq2seq, prompts, {"max_new_tokens": 10})
    assert counters["stats"]["unique_graphs"] == compiled_at_load and set(fast.shapes) >= fast.warm

    # a shape a warm bucket holds (batch 3 of short prompts in (4, 32, 32)): served by it, padded, compiled
    before = set(fast.shapes)
    short = ["x", "y z", "a b c"]
    mine = handler.HANDLER.generate(model, tokenizer, seq2seq, short, {"max_new_tokens": 7}, fast)
    assert mine == handler.HANDLER.generate(model, tokenizer, seq2seq, short, {"max_new_tokens": 7})
    assert set(fast.shapes) == before
    # one no warm bucket holds: its own bucket, uncompiled
    with caplog.at_level(logging.INFO):
        mine = handler.HANDLER.generate(model, tokenizer, seq2seq, PROMPTS * 3, {"max_new_tokens": 12}, fast)
    assert mine == handler.HANDLER.generate(model, tokenizer, seq2seq, PROMPTS * 3, {"max_new_tokens": 12})
    assert "bucket (16, 32, 32) is not among the warm shapes; its step runs uncompiled" in caplog.text
    assert not fast.shapes[(16, 32, 32)].compiled and counters["stats"]["unique_graphs"] == compiled_at_load
    torch._dynamo.reset()


def test_direct_load_is_from_pretrained_and_rejects_truncated_shards(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """The weights from_pretrained gives, converted to the model's dtype; flan-t5's own LM head stays its own (a bare
    tie_weights() under transformers 5 would swap it for the input embeddings)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from lmi_deploy import tiny_models as make_tiny

    rendered(tiny_models, "llama", tmp_path / "code")  # imports the shipped lmi_handlers
    flan = make_tiny.make(tmp_path / "flan-t5", "flan-t5")  # lm_head.weight beside shared.weight, as published
    for folder, kind in ((tiny_models["llama"], AutoModelForCausalLM), (flan, AutoModelForSeq2SeqLM)):
        config = AutoConfig.from_pretrained(folder)
        model = shipped("fast_load").load_direct(str(folder), kind, config, torch.bfloat16, torch.device("cpu"))
        reference = kind.from_pretrained(folder, dtype=torch.bfloat16)
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
        mine, theirs = model.state_dict(), reference.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), folder
    assert not torch.equal(model.lm_head.weight, model.shared.weight)

    folder = tiny_models["llama"]
    config = AutoConfig.from_pretrained(folder)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shard = next(broken.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(OSError, match="is 100 bytes shorter than its header says"):
        shipped("fast_load").read_safetensors(str(shard), torch.device("cpu"))
    assert (
        shipped("fast_load").load_direct(
            str(tmp_path), AutoModelForCausalLM, config, torch.float32, torch.device("cpu")
        )
        is None
    )


def test_handler_options_are_validated() -> None:
    base = {"engine": "accelerate", "handler": "custom", "model_id": "google/flan-t5-xxl", "dtype": "bf16"}
    config = load_config({**base, "compile": "true", "fast_load": "false"})
    assert (config.compile, config.fast_load, config.kv_cache) == (True, False, None)
    with pytest.raises(ConfigError, match=r"kv_cache, cuda_graphs tune lmi-deploy's own Accelerate model\.py"):
        load_config(
            {
                **base,
                "engine": "vllm",
                "handler": "builtin",
                "model_id": "meta-llama/Llama-2-7b-hf",
                "kv_cache": "static",
                "cuda_graphs": "false",
            }
        )
    with pytest.raises(ConfigError, match="compile=true speeds up the static-cache decode step"):
        load_config({**base, "kv_cache": "dynamic", "compile": "true"})
    with pytest.raises(ConfigError, match="fuse_projections=true speeds up the static-cache decode step"):
        load_config({**base, "kv_cache": "dynamic", "fuse_projections": "true"})
    with pytest.raises(ConfigError, match="kv_cache"):
        load_config({**base, "kv_cache": "paged"})

    # the startup timeout covers the handler's compilation and the warm shapes' captures (lmi_deploy.warm_shapes)
    g6e = {**base, "instance_type": "ml.g6e.xlarge"}
    notes = {
        extra: next(n for n in load_config({**g6e, **dict([extra])}).resolved.notes if "startup" in n)
        for extra in (("compile", "true"), ("compile", "false"), ("kv_cache", "dynamic"))
    }
    assert "+ 270 s handler compile/capture of warm shapes" in notes[("compile", "true")]  # 150 + 6 buckets x 20
    assert "+ 8 s handler compile/capture" in notes[("compile", "false")]  # 8 buckets (batch 1 too) x 1
    assert "handler compile" not in notes[("kv_cache", "dynamic")]
    assert load_config(g6e).resolved.container_startup_health_check_timeout == 660
    with pytest.raises(ConfigError, match=r"container_startup_health_check_timeout=400 is shorter than the 660 s"):
        load_config({**g6e, "container_startup_health_check_timeout": "400"})


def test_bench_handler_runs_end_to_end_on_the_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU benchmark's every step on a two-layer T5 (its figures mean nothing on a CPU; its plumbing does), and
    nothing left behind: its checkpoint folder and cold compiler caches are temporary."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    tiny = {
        "model_type": "t5",
        "vocab_size": 320,
        "d_model": 32,
        "d_ff": 64,
        "d_kv": 8,
        "num_heads": 4,
        "num_layers": 2,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
    }
    (tmp_path / "config.json").write_text(json.dumps(tiny))
    argv = ["--device", "cpu", "--model-config", str(tmp_path / "config.json"), "--batches", "2", "--repeats", "2"]
    argv += ["--input-tokens", "16", "--new-tokens", "8"]
    argv += ["--generate-repeats", "1", "--variant", "fuse_projections=false", "--out", str(tmp_path / "out")]
    argv += ["--no-disk-cold"]  # dropping the page cache is for the GPU machine (bench_load is tested on its own)
    assert bench_handler.main(argv) == 0
    report = json.loads((tmp_path / "out" / "handler-cpu.json").read_text())
    row = report["batches"]["2"]
    assert (
        row["handler_tokens_match"] and row["fuse_projections=false_tokens_match"] and row["static_peer_tokens_match"]
    )
    startup = report["handler_startup"]
    assert startup["handler"]["decoder"] == "static cache, cuda_graphs off, compile off, fused projections on"
    assert startup["fuse_projections=false"]["decoder"].endswith("fused projections off")
    for key in ("generate_p50_ms", "static_peer_p50_ms", "handler_p50_ms", "handler_first_request_ms", "bound_ms"):
        assert row[key] > 0
    assert startup["handler"]["startup_s"] >= startup["handler"]["load_s"] > 0 and report["versions"]["torch"]
    assert "vs static" in capsys.readouterr().out
    assert not list(scratch.iterdir())  # the checkpoint and the caches are gone
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ and "TRITON_CACHE_DIR" not in os.environ
    # its checkpoint's random head answers only ids the tokenizer spells (no special ones): greedy answers are text,
    # so setups can be told apart by what they answer
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tiny.update(vocab_size=400)  # the published vocabulary is larger than the tokenizer made here
    bench_handler.build_checkpoint(tmp_path / "ckpt", tiny, None, "cpu")
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ckpt").float()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    head = model.get_output_embeddings().weight
    live = head.abs().sum(-1) > 0
    assert live.tolist() == [max(tokenizer.all_special_ids) < i < len(tokenizer) for i in range(400)]
    assert head.data_ptr() != model.get_input_embeddings().weight.data_ptr()  # flan's own head, as published
    encoded = tokenizer(["summarize: the quick brown fox", "x y z"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        ids = model.generate(**encoded, max_new_tokens=8, do_sample=False)
    assert all(tokenizer.batch_decode(ids, skip_special_tokens=True)) and ids.shape[1] == 9  # text, no early end
