"""Weight-streaming products for decode steps (at most 16 rows), in Triton, used only where they beat cuBLAS here.

A decode step multiplies a few rows by every weight matrix of the decoder once: its time is the time to read the
weights. ``choose`` times, at load, on this GPU and on the model's own matrices (every layer's, so the weights come
from memory as in a step, not from L2), cuBLAS against a few tilings of one kernel per (outputs, inputs, rows), and
keeps the kernel only where it is faster; each choice is logged. ``linear`` then routes the projections through one
opaque operator (compiled code calls it as it is, CUDA graphs capture it) that takes the chosen path per row count.
Without Triton, a GPU, or ``torch.library.custom_op`` every projection stays with cuBLAS.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Callable

import torch

from . import custom_ops

MAX_ROWS = 16
# the kernel must take at most this share of cuBLAS's time to be chosen: a choice that flips with timing noise would
# also change the compiled graph from one start to the next, and miss the staged compile cache. On an H200 (timed in
# CUDA graphs) the kernel took 0.84-0.86 of cuBLAS on 4096x4096, 0.90-0.92 on 4096x10240, 0.94-0.98 on the fused
# 12288x4096 and 20480x4096: the threshold sits in the gap
_MIN_GAIN = 0.93
# (BLOCK_N, BLOCK_K, num_warps, num_stages): the tilings tried per shape. The last one (short steps, eight deep) took
# 4096x4096 from 12.5 to 11.4 µs and 4096x8192 from 21.9 to 19.6 on an H200 (cuBLAS: 13.2 and 21.9)
TILINGS = ((16, 512, 4, 3), (32, 256, 4, 4), (64, 128, 4, 4), (32, 512, 8, 3), (32, 128, 4, 8))

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only images
    triton = None

# (outputs, inputs) -> {rows: tiling}: where the kernel won, measured at load
CHOICES: dict[tuple[int, int], dict[int, tuple[int, int, int, int]]] = {}


def _launch_unavailable(x: Any, weight: Any, tiling: tuple[int, int, int, int], out_dtype: Any = None) -> Any:
    raise RuntimeError("gemv: Triton is not available")


launch: Callable[..., Any] = _launch_unavailable

if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]
    def tile_product(  # type: ignore[no-untyped-def]
        x_ptr, w_ptr, M, N, stride_xm, stride_wn, rows, cols,
        K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        """x[rows, :] @ w[cols, :]^T in float32, streaming the block of weight rows along K (gemv_all_reduce's
        kernel computes its partial products with it too)."""
        depth = tl.arange(0, BLOCK_K)
        total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start in tl.range(0, K, BLOCK_K):  # K known at compile time: one kernel per matrix width
            k = start + depth
            x = tl.load(
                x_ptr + rows[:, None] * stride_xm + k[None, :], mask=(rows[:, None] < M) & (k[None, :] < K), other=0.0
            )
            w = tl.load(
                w_ptr + cols[:, None] * stride_wn + k[None, :], mask=(cols[:, None] < N) & (k[None, :] < K), other=0.0
            )
            total += tl.dot(x, tl.trans(w))
        return total

    @triton.jit(do_not_specialize=["M"])  # type: ignore[untyped-decorator]
    def _gemv_kernel(  # type: ignore[no-untyped-def]
        x_ptr, w_ptr, y_ptr, M, N, stride_xm, stride_wn, stride_ym, K: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        """y[:M, n-block] = x[:M, :] @ w[n-block, :]^T, streaming one block of weight rows along K."""
        rows = tl.arange(0, BLOCK_M)
        cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        total = tile_product(x_ptr, w_ptr, M, N, stride_xm, stride_wn, rows, cols, K, BLOCK_M, BLOCK_N, BLOCK_K)
        out = y_ptr + rows[:, None] * stride_ym + cols[None, :]
        tl.store(out, total.to(y_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))

    def _launch_triton(x: Any, weight: Any, tiling: tuple[int, int, int, int], out_dtype: Any = None) -> Any:
        """x (rows x K, rows <= 16, contiguous) times weight (N x K, nn.Linear's layout)^T, in ``out_dtype`` (the
        float32 sum of the products, rounded once to x's dtype by default)."""
        block_n, block_k, warps, stages = tiling
        rows, depth = x.shape
        outputs = weight.shape[0]
        y = torch.empty((rows, outputs), dtype=out_dtype or x.dtype, device=x.device)
        grid = (triton.cdiv(outputs, block_n),)
        with custom_ops.on_device(x):
            _gemv_kernel[grid](
                x, weight, y, rows, outputs, x.stride(0), weight.stride(0), y.stride(0), K=depth,
                BLOCK_M=MAX_ROWS, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages,
            )  # fmt: skip
        return y

    launch = _launch_triton


def chosen_tiling(choices: dict[tuple[int, int], dict[int, Any]], weight: Any, rows: int) -> Any:
    """The tiling ``choices`` (this module's CHOICES, or gemv_all_reduce's) keep for this matrix at this row count,
    or None."""
    return choices.get((weight.shape[0], weight.shape[1]), {}).get(rows)


def _product(x: Any, weight: Any, bias: Any) -> Any:
    """The projection as the chosen path computes it: the kernel for a row count it won, else cuBLAS."""
    flat = x.reshape(-1, x.shape[-1])
    tiling = chosen_tiling(CHOICES, weight, flat.shape[0])
    if tiling is None:
        return torch.nn.functional.linear(x, weight, bias)
    y = launch(flat.contiguous(), weight, tiling)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0])


def _wide_product(x: Any, weight: Any) -> Any:
    """x (rows x K) times weight^T in float32, unrounded (a tensor-parallel rank's partial sum): the kernel for a row
    count it won, else cuBLAS writing float32."""
    tiling = chosen_tiling(CHOICES, weight, x.shape[0])
    if tiling is None:
        return torch.mm(x, weight.t(), out_dtype=torch.float32)
    return launch(x.contiguous(), weight, tiling, torch.float32)


_OPERATORS: dict[str, Any] = {}


def _fake(x: Any, weight: Any, bias: Any) -> Any:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _fake_wide(x: Any, weight: Any) -> Any:
    return x.new_empty((x.shape[0], weight.shape[0]), dtype=torch.float32)


# operator name -> (the function it calls, its schema, its fake)
_OPERATOR_SPECS: dict[str, tuple[str, str, Callable[..., Any]]] = {
    "streamed_linear": ("_product", "(Tensor x, Tensor weight, Tensor? bias) -> Tensor", _fake),
    "streamed_linear_wide": ("_wide_product", "(Tensor x, Tensor weight) -> Tensor", _fake_wide),
}


def _operator(name: str = "streamed_linear") -> Any:
    """``lmi_handlers::streamed_linear`` (_product) or ``streamed_linear_wide`` (_wide_product) behind one opaque
    operator each (registered once per process)."""
    if name not in _OPERATORS and hasattr(torch.library, "custom_op"):
        _OPERATORS[name] = custom_ops.operator(name, __name__, *_OPERATOR_SPECS[name])
    return _OPERATORS.get(name)


def linear(x: Any, weight: Any, bias: Any) -> Any:
    """``F.linear``, through the streaming kernel where ``choose`` found it faster for this matrix."""
    if (weight.shape[0], weight.shape[1]) not in CHOICES:  # filled by choose(), on the GPU it measured
        return torch.nn.functional.linear(x, weight, bias)
    return _operator()(x, weight, bias)


def wide_linear(x: Any, weight: Any) -> Any:
    """x (rows x K) times weight^T with the products summed and kept in float32 (``mm``'s ``out_dtype``): a row-wise
    tensor-parallel layer's partial sum, through the streaming kernel where ``choose`` found it faster."""
    if (weight.shape[0], weight.shape[1]) not in CHOICES:
        return torch.mm(x, weight.t(), out_dtype=torch.float32)
    return _operator("streamed_linear_wide")(x, weight)


def unavailable(device: Any) -> str | None:
    """Why the kernel cannot run here, or None."""
    if device.type != "cuda":
        return f"the model is on {device.type}"
    if triton is None:
        return "Triton is not importable"
    if not hasattr(torch.library, "custom_op"):
        return f"torch {torch.__version__} has no torch.library.custom_op"
    return None


def _cublas(x: Any, weight: Any) -> Any:
    return torch.nn.functional.linear(x, weight)


def _kernel(x: Any, tiling: tuple[int, int, int, int], weight: Any) -> Any:
    return launch(x, weight, tiling)


def _time_ms(function: Callable[[Any], Any], weights: list[Any], repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time of one product, cycling through every layer's matrix.

    Replayed from a CUDA graph, as a decode step runs them: timed as launched from Python, a Triton kernel's launch
    (20-30 µs on the host) hid its work, and the kernel lost where it was faster on the GPU.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        function(weights[0])  # compilation, workspaces: outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for weight in weights:
            function(weight)
    times = []
    for _ in range(repeats + 1):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / len(weights))
    del graph
    ordered = sorted(times[1:])
    return float(ordered[len(ordered) // 2])


def choose(matrices: dict[tuple[int, int], list[Any]], rows: list[int]) -> dict[str, Any]:
    """Time cuBLAS and each tiling on these matrices (by shape, every layer's) for these row counts; keep winners.

    Returns what was measured (shape -> rows -> cuBLAS ms, best kernel ms, chosen), for the log and the benchmark.
    """
    CHOICES.clear()
    report: dict[str, Any] = {}
    for (outputs, inputs), weights in sorted(matrices.items()):
        for count in sorted({r for r in rows if 0 < r <= MAX_ROWS}):
            x = torch.randn((count, inputs), dtype=weights[0].dtype, device=weights[0].device)
            reference = torch.nn.functional.linear(x, weights[0])
            cublas = _time_ms(partial(_cublas, x), weights)
            best: tuple[float, Any] = (float("inf"), None)
            for tiling in TILINGS:
                try:
                    if not torch.allclose(launch(x, weights[0], tiling), reference, rtol=2e-2, atol=2e-2):
                        continue  # a tiling that computes something else is never a candidate
                    best = min(best, (_time_ms(partial(_kernel, x, tiling), weights), tiling))
                except Exception as error:  # a tiling this GPU or Triton version refuses
                    logging.info("gemv: tiling %s on %sx%s refused (%s)", tiling, outputs, inputs, error)
            chosen = best[1] is not None and best[0] <= _MIN_GAIN * cublas
            if chosen:
                CHOICES.setdefault((outputs, inputs), {})[count] = best[1]
            report.setdefault(f"{outputs}x{inputs}", {})[count] = {
                "cublas_ms": round(cublas, 4),
                "kernel_ms": round(best[0], 4) if best[1] is not None else None,
                "tiling": list(best[1]) if best[1] is not None else None,
                "chosen": "kernel" if chosen else "cublas",
                "matrices": len(weights),
            }
    device = weights[0].device if matrices else None
    name = torch.cuda.get_device_name(device) if device is not None and device.type == "cuda" else "this device"
    logging.info("gemv on %s: %s", name, report)
    if CHOICES:  # registered now, eagerly, not first while torch.compile traces a step
        _operator()
        _operator("streamed_linear_wide")
    return report
