"""The handler's Triton kernels and their guard rails, on the CPU (Triton's interpreter runs the kernels as shipped).

The GPU measures what they buy (scripts/bench_handler.py, scripts/bench_decode_step.py). Here: ``reference`` is the
attention T5 computes (position bias, boolean and additive masks, grouped key/value heads); the decode-attention and
streaming-GEMV kernels compute it and ``x @ w.T``; ``check`` refuses a kernel that computes something else; and the
fast decoder serves with the kernel only where its tokens agree with generate(), the model's own attention restored
otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy.config import load_config
from lmi_deploy.render import render
from lmi_deploy.runtime import load_handler
from tests.test_handler_speedups import shipped


@pytest.fixture
def handler(demo_model: Path, tmp_path: Path) -> Any:
    """The rendered handler for the ``make local`` demo T5 (trained: its answers are words, not padding)."""
    context = {"engine": "accelerate", "model_id": str(demo_model), "instance_type": "ml.g5.xlarge"}
    config = load_config({**context, "tensor_parallel_degree": "1", "dtype": "fp32", "deployment": "attention"})
    return load_handler(render(config, tmp_path).directory / "model.py")


def test_reference_is_the_attention_t5_computes(handler: Any) -> None:
    import torch
    from transformers.models.t5.modeling_t5 import eager_attention_forward

    attention = shipped("decode_attention")
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 1, 8), torch.randn(3, 4, 11, 8), torch.randn(3, 4, 11, 8)
    bias = torch.randn(1, 4, 1, 11)
    allowed = torch.arange(11)[None, None, None, :] < torch.tensor([11, 7, 1])[:, None, None, None]
    additive = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    module = torch.nn.Module().eval()
    want, _ = eager_attention_forward(module, q, k, v, additive, scaling=1.0, position_bias=bias)
    for mask in (allowed, additive):  # the sdpa mask (boolean) and the eager one (additive) mean the same
        assert torch.allclose(attention.reference(q, k, v, bias, mask, 1.0), want, atol=1e-5)
    grouped = attention.reference(q, k[:, :2], v[:, :2], None, None, 0.5)  # 2 query heads per key/value head
    repeated = attention.reference(q, k[:, [0, 0, 1, 1]], v[:, [0, 0, 1, 1]], None, None, 0.5)
    assert torch.allclose(grouped, repeated)
    nothing = torch.zeros_like(allowed)
    assert torch.equal(attention.reference(q, k, v, None, nothing, 1.0), torch.zeros(3, 1, 4, 8))  # no NaN


def test_the_triton_kernels_compute_the_reference(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernels as shipped, run by Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET)."""
    import torch

    attention, gemv = shipped("decode_attention"), shipped("gemv")
    cpu = torch.device("cpu")
    assert attention.unavailable(cpu) == "the model is on cpu"
    monkeypatch.setattr(attention, "DEVICES", ("cuda", "cpu"))
    assert attention.unavailable(cpu) is None  # Triton, custom_op and the attention interfaces are all there
    # grouped key/value heads (8 over 2) in bf16, and T5-XXL's 64-wide heads and flan-ul2's 256-wide ones in fp32
    for dtype, heads, kv_heads, dim in ((torch.bfloat16, 8, 2, 64), (torch.float32, 4, 4, 256)):
        assert attention.check(cpu, dtype, heads, kv_heads, dim) is None
    launch = attention._launch
    monkeypatch.setattr(attention, "_launch", lambda q, k, v, b, m, s: launch(q, k, v, None, m, s))  # bias dropped
    assert "differs from the reference" in (attention.check(cpu, torch.float32, 4, 2, 8) or "")
    x, weight = torch.randn(5, 512), torch.randn(96, 512)  # 5 rows of at most 16, 96 outputs: partial blocks
    for tiling in gemv.TILINGS:
        assert torch.allclose(gemv.launch(x, weight, tiling), x @ weight.T, atol=1e-3, rtol=1e-3), tiling
    # a row-wise tensor-parallel product: 16 bits in, its float32 sum out unrounded, through the operator (fp16:
    # the interpreter's dot computes garbage from bf16, which the GPU's does not)
    x, weight = x.to(torch.float16), weight.to(torch.float16)
    monkeypatch.setitem(gemv.CHOICES, (96, 512), {5: gemv.TILINGS[0]})
    wide = gemv.wide_linear(x, weight)
    want = x.float() @ weight.float().T
    assert wide.dtype == torch.float32 and torch.allclose(wide, want, atol=1e-3, rtol=1e-4)
    assert not torch.equal(wide, want.to(torch.bfloat16).float())  # not rounded to bf16 on the way


@pytest.mark.parametrize("correct", [True, False], ids=["agrees", "disagrees"])
def test_decode_steps_use_the_kernel_only_when_it_agrees(
    correct: bool,
    handler: Any,
    demo_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attention = shipped("decode_attention")
    monkeypatch.setattr(attention, "DEVICES", ("cuda", "cpu"))
    if not correct:  # a kernel with a sign error: its answers change
        launch = attention._launch
        monkeypatch.setattr(attention, "_launch", lambda q, k, v, b, m, s: -launch(q, k, v, b, m, s))
        monkeypatch.setattr(attention, "check", lambda *args: None)  # as if it had passed at load
    options = {"model_id": str(demo_model), "dtype": "fp32"}
    model, tokenizer, seq2seq = handler.HANDLER.load_model(options)
    prompts = ["translate English to German: The house is wonderful.", "question: What is the capital of France?"]
    monkeypatch.setattr(shipped("accelerate"), "SELF_CHECK_PROMPTS", prompts)  # what the demo model was taught
    settings = {"max_new_tokens": 12}
    plain = handler.HANDLER.generate(model, tokenizer, seq2seq, prompts, settings)
    assert all(plain["outputs"])
    with caplog.at_level(logging.INFO):
        fast = handler.HANDLER.fast_decoder(model, tokenizer, seq2seq, options)
    assert fast is not None
    if correct:
        assert "decode attention kernel on): agrees with generate()" in caplog.text and attention.calls > 0
        assert model.config._attn_implementation == "lmi_decode"
        import torch

        encoded = tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            mine = fast.generate_ids(encoded, fast.settings(settings))  # the Triton kernel, interpreted
            theirs = model.generate(**encoded, max_new_tokens=12, do_sample=False)[:, 1:]
        width = min(mine.shape[1], theirs.shape[1])  # generate() stops where every row has ended
        assert width >= 10 and mine[:, :width].tolist() == theirs[:, :width].tolist()
        handler.HANDLER.attention_restore()
    else:
        assert "decode attention kernel on) disagrees with generate()" in caplog.text
        assert handler.HANDLER.attention_restore is None and "kernel on" not in fast.kernels
    assert model.config._attn_implementation == "sdpa"  # the model's own again
    assert model.decoder.config._attn_implementation == "sdpa"


def test_decode_step_profile_needs_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import bench_decode_step

    assert bench_decode_step.main(["--model-py", str(tmp_path / "model.py"), "--work", str(tmp_path)]) == 2
    assert "needs an NVIDIA GPU" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing built or written before the GPU check


def test_the_kernel_splits_a_long_cache_and_leaves_its_counters_at_zero(
    handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few (row, head) pairs over a long cache run as chunks whose partial results the last one combines: the same
    attention as unsplit, chunks with nothing to attend (masked, or a row that may attend to nothing) included, and
    the per-(row, head) counters back at zero for the next call (a CUDA graph replays the same launch)."""
    import torch

    attention = shipped("decode_attention")
    cpu = torch.device("cpu")
    monkeypatch.setattr(attention, "DEVICES", ("cuda", "cpu"))
    torch.manual_seed(0)
    batch, heads, length, dim = 3, 2, 150, 256  # 6 programs over 150 keys in blocks of 16: split in 10
    assert attention._splits(cpu, batch * heads, length, 16) == (10, 16)
    q = torch.randn(batch, heads, 1, dim)
    k, v = torch.randn(batch, heads, length, dim), torch.randn(batch, heads, length, dim)
    bias = torch.randn(1, heads, 1, length)
    allowed = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    allowed[0, ..., :40] = False  # the first chunks of row 0 attend to nothing
    allowed[1] = False  # row 1 attends to nothing at all: zeros
    for _ in range(2):  # twice: the second call finds the counters the first one left
        got = attention._launch(q, k, v, bias, allowed, 0.1)
        assert torch.allclose(got, attention.reference(q, k, v, bias, allowed, 0.1), atol=1e-4)
        assert not attention._COUNTERS[cpu].any()
    assert torch.equal(got[1], torch.zeros_like(got[1]))
