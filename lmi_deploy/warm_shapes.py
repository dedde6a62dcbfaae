"""The request shapes the Accelerate handler prepares at load (``option.warm_shapes``), and what that costs at startup.

The handler serves each request from static buffers of one shape bucket (batch, prompt and new tokens rounded up to
powers of two). With ``compile`` it compiles its decode step once, at load, with dynamic shapes, then captures each
bucket named here as CUDA graphs, so the first request of those shapes runs at steady-state speed. The set follows
the deployment's limits: every power-of-two batch up to ``max_batch_size``, each with a short request (128 prompt /
64 new tokens, or less where the limits are lower) and the longest one (``max_sequence_length`` split three quarters
prompt, one quarter new tokens, the TensorRT-LLM split this project renders too). After load nothing compiles: another
shape is served by a larger warm bucket (at most 4x its cells) or by its own bucket, uncompiled.
"""

from __future__ import annotations

SHORT_PROMPT, SHORT_NEW = 128, 64
# Measured on flan-t5-xxl (24 + 24 layers, one H200, torch 2.11, empty compile caches; docs/benchmarks/
# handler-h200-variants.log): the self-check's dynamic-shape compilation ~120 s; each bucket's capture ~16 s compiled
# (Triton specialises kernels per shape) and ~0.3 s uncompiled. Rounded up for slower CPUs and deeper models.
COMPILE_S = 150
CAPTURE_COMPILED_S = 20
CAPTURE_S = 1


def _power_of_two(value: int, floor: int) -> int:
    size = floor
    while size < value:
        size *= 2
    return size


def warm_shapes(max_batch: int, max_sequence: int) -> list[tuple[int, int, int]]:
    """(rows, prompt tokens, new tokens) to prepare at load, smallest first."""
    new = max(1, max_sequence // 4)
    prompt = max(1, max_sequence - new)
    lengths = [(min(SHORT_PROMPT, prompt), min(SHORT_NEW, new)), (prompt, new)]
    rows = sorted({min(1 << i, max_batch) for i in range(max_batch.bit_length() + 1)})
    return [(r, p, n) for p, n in dict.fromkeys(lengths) for r in rows]


def property_value(shapes: list[tuple[int, int, int]]) -> str:
    """``option.warm_shapes``: ``ROWSxPROMPTxNEW`` items, comma-separated."""
    return ",".join(f"{r}x{p}x{n}" for r, p, n in shapes)


def startup_seconds(shapes: list[tuple[int, int, int]], compiled: bool, graphs: bool) -> float:
    """Seconds the handler spends at load compiling and capturing these shapes' buckets."""
    floor = 2 if compiled else 1  # the handler's batch buckets start at 2 when compiled
    buckets = {(_power_of_two(r, floor), _power_of_two(p, 16), _power_of_two(n, 32)) for r, p, n in shapes}
    if compiled:
        return COMPILE_S + CAPTURE_COMPILED_S * len(buckets)
    return CAPTURE_S * len(buckets) if graphs else 0.0
