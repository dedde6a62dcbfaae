"""Attention of one new token over the KV cache in one Triton kernel, for the decode step (option.compile's kernels).

A decode step's attention is a few kilobytes of work per head, but as the model writes it (transformers' sdpa or
eager path) it is five to ten kernels: the K cache transposed and scaled, the scores, the position bias and mask
added, a softmax, the product with V, a transpose back. On flan-t5-xxl that was about 30 µs of a 190 µs decoder
layer, measured on an H200. Here one kernel per attention reads q, the cached K and V, adds T5's position bias and
the mask, and writes the output in the layout the output projection reads; the softmax is computed in float32.
Where there are few (row, head) pairs for the GPU (flan-ul2 at TP 2: 32 of them, 256-wide), the cache is split into
chunks whose partial results the last chunk to finish combines (12-19 → ~7 µs a call on an H200).

``install(model)`` registers it (and the mask the model's own implementation takes: boolean for sdpa, additive for
eager) under transformers' ``AttentionInterface`` and points the model's configs at it.
It serves only a single new token on CUDA with no dropout, softcap, sliding window or attention sinks; everything
else (the prompt pass, CPU, training) goes to the implementation the model had. ``check`` compares the kernel with
``reference`` (the same arithmetic in torch) at load, and the fast decoder's self-check compares the tokens with
``generate()``'s before the kernel serves. Models that do not call the attention interface (transformers 4's T5)
never reach it and keep their own attention.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import torch

from . import custom_ops

NAMES = {"sdpa": "lmi_decode", "eager": "lmi_decode_eager"}  # by the implementation the model had: its mask kind
DEVICES = ("cuda",)  # where the kernel runs
MAX_HEAD_DIM = 256
_UNSUPPORTED = ("softcap", "sliding_window", "s_aux", "sinks")  # kwargs of attention variants the kernel lacks
calls = 0  # decode attentions routed to the kernel since the last install, outside compiled code (the tests read it)

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only images
    triton = None


def reference(query: Any, key: Any, value: Any, bias: Any, mask: Any, scaling: float) -> Any:
    """What the kernel computes, in torch: softmax(q·kᵀ·scaling + bias + mask)·v in float32, output [B, 1, H, D].

    ``mask`` is boolean (True: attend) or additive; ``bias`` additive (T5's position bias); both broadcast over
    [B, H, 1, L]. Key/value heads are shared by groups of query heads (grouped-query attention). A row that may attend
    to nothing gets zeros, as torch's safe softmax gives.
    """
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1).float()
    value = value.repeat_interleave(groups, dim=1).float()
    scores = query.float() @ key.transpose(-1, -2) * scaling
    if bias is not None:
        scores = scores + bias.float()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return (weights @ value).transpose(1, 2).to(query.dtype)


_launch: Callable[..., Any] | None = None

if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]
    def _attend(  # type: ignore[no-untyped-def]
        q, k_row, v_row, b_row, m_row, begin, end, scaling, skl, svl, sbl, sml, dims,
        D: tl.constexpr, BLOCK_L: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
        BOOL_MASK: tl.constexpr,
    ):  # fmt: skip
        """Online softmax of one query over keys [begin, end) in blocks of BLOCK_L: (max score, sum, weighted V)."""
        best = tl.full((), float("-inf"), tl.float32)
        total = tl.zeros((), tl.float32)
        acc = tl.zeros(dims.shape, tl.float32)
        for start in tl.range(begin, end, BLOCK_L):
            keys = start + tl.arange(0, BLOCK_L)
            inside = keys < end
            tile = inside[:, None] & (dims[None, :] < D)
            k = tl.load(k_row + keys[:, None] * skl + dims[None, :], mask=tile, other=0.0)
            scores = tl.sum(k.to(tl.float32) * q[None, :], axis=1) * scaling
            if HAS_BIAS:
                scores += tl.load(b_row + keys * sbl, mask=inside, other=0.0).to(tl.float32)
            if HAS_MASK:
                if BOOL_MASK:
                    allowed = tl.load(m_row + keys * sml, mask=inside, other=0)
                    scores = tl.where(allowed != 0, scores, float("-inf"))
                else:
                    scores += tl.load(m_row + keys * sml, mask=inside, other=0.0).to(tl.float32)
            scores = tl.where(inside, scores, float("-inf"))
            new_best = tl.maximum(best, tl.max(scores, axis=0))
            shift = tl.where(new_best == float("-inf"), 0.0, new_best)  # nothing attended yet: no NaN from -inf - -inf
            weights = tl.exp(scores - shift)
            rescale = tl.exp(best - shift)
            v = tl.load(v_row + keys[:, None] * svl + dims[None, :], mask=tile, other=0.0)
            acc = acc * rescale + tl.sum(weights[:, None] * v.to(tl.float32), axis=0)
            total = total * rescale + tl.sum(weights, axis=0)
            best = new_best
        return best, total, acc

    @triton.jit
    def _normalized(acc, total):  # type: ignore[no-untyped-def]
        """The weighted V over the softmax's sum; zeros for a query that may attend to nothing (torch's safe
        softmax)."""
        return tl.where(total > 0, acc / tl.where(total > 0, total, 1.0), 0.0)

    @triton.jit  # type: ignore[untyped-decorator]
    def _combine(parts, SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):  # type: ignore[no-untyped-def]
        """The output from SPLITS partial results (weighted V, then max score and sum, per row of ``parts``)."""
        splits = tl.arange(0, BLOCK_S)
        dims = tl.arange(0, BLOCK_D)
        rows = parts + splits * (BLOCK_D + 2)
        valid = splits < SPLITS
        bests = tl.load(rows + BLOCK_D, mask=valid, other=float("-inf"), cache_modifier=".cg")
        totals = tl.load(rows + BLOCK_D + 1, mask=valid, other=0.0, cache_modifier=".cg")
        accs = tl.load(rows[:, None] + dims[None, :], mask=valid[:, None], other=0.0, cache_modifier=".cg")
        top = tl.max(bests, axis=0)
        scale = tl.exp(bests - tl.where(top == float("-inf"), 0.0, top))
        total = tl.sum(totals * scale, axis=0)
        return _normalized(tl.sum(accs * scale[:, None], axis=0), total)

    @triton.jit  # type: ignore[untyped-decorator]
    def _decode_kernel(  # type: ignore[no-untyped-def]
        q_ptr, k_ptr, v_ptr, b_ptr, m_ptr, o_ptr, part_ptr, count_ptr, L, CHUNK, scaling,
        sqb, sqh, skb, skh, skl, svb, svh, svl, sbb, sbh, sbl, smb, smh, sml,
        HEADS: tl.constexpr, GROUPS: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
        SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
        BOOL_MASK: tl.constexpr,
    ):  # fmt: skip
        """One (batch row, head) and one of SPLITS chunks of the cache. Split, each chunk's partial result goes to
        ``part_ptr``; the last chunk to finish (a counter per row and head, reset for the next call) combines them."""
        pid = tl.program_id(0)
        row, head = pid // HEADS, pid % HEADS
        dims = tl.arange(0, BLOCK_D)
        q = tl.load(q_ptr + row * sqb + head * sqh + dims, mask=dims < D, other=0.0).to(tl.float32)
        begin = tl.program_id(1) * CHUNK
        best, total, acc = _attend(
            q, k_ptr + row * skb + (head // GROUPS) * skh, v_ptr + row * svb + (head // GROUPS) * svh,
            b_ptr + row * sbb + head * sbh, m_ptr + row * smb + head * smh, begin, tl.minimum(begin + CHUNK, L),
            scaling, skl, svl, sbl, sml, dims, D, BLOCK_L, HAS_BIAS, HAS_MASK, BOOL_MASK,
        )  # fmt: skip
        out_row = o_ptr + pid * D + dims
        if SPLITS == 1:
            tl.store(out_row, _normalized(acc, total).to(o_ptr.dtype.element_ty), mask=dims < D)
        else:
            parts = part_ptr + pid * SPLITS * (BLOCK_D + 2)
            mine = parts + tl.program_id(1) * (BLOCK_D + 2)
            tl.store(mine + dims, acc)
            tl.store(mine + BLOCK_D, best)
            tl.store(mine + BLOCK_D + 1, total)
            tl.debug_barrier()  # every thread's stores, before the release below publishes them
            if tl.atomic_add(count_ptr + pid, 1, sem="acq_rel", scope="gpu") == SPLITS - 1:
                out = _combine(parts, SPLITS, BLOCK_S, BLOCK_D)
                tl.store(out_row, out.to(o_ptr.dtype.element_ty), mask=dims < D)
                tl.atomic_xchg(count_ptr + pid, 0, sem="relaxed", scope="gpu")

    def _launch_triton(query: Any, key: Any, value: Any, bias: Any, mask: Any, scaling: float) -> Any:
        batch, heads, _, dim = query.shape
        length = key.shape[2]
        out = torch.empty((batch, 1, heads, dim), dtype=query.dtype, device=query.device)
        block_d = triton.next_power_of_2(dim)
        block_l = max(16, min(64, 4096 // block_d))  # a [BLOCK_L, BLOCK_D] tile of K and one of V in registers
        splits, chunk = _splits(query.device, batch * heads, length, block_l)
        counts = _counters(query.device, batch * heads) if splits > 1 else None
        if counts is None:
            splits, chunk = 1, length
        parts = out  # unsplit: the kernel never reads or writes the partial results
        if splits > 1:
            parts = torch.empty((batch * heads, splits, block_d + 2), dtype=torch.float32, device=query.device)
        bias_strides = _broadcast_strides(bias, batch, heads, length)
        mask_strides = _broadcast_strides(mask, batch, heads, length)
        with custom_ops.on_device(query):
            _decode_kernel[(batch * heads, splits)](
                query, key, value, bias if bias is not None else query, mask if mask is not None else query, out,
                parts, counts if counts is not None else parts, length, chunk, float(scaling), query.stride(0),
                query.stride(1), key.stride(0), key.stride(1), key.stride(2), value.stride(0), value.stride(1),
                value.stride(2), *bias_strides, *mask_strides, HEADS=heads, GROUPS=heads // key.shape[1], D=dim,
                BLOCK_D=block_d, BLOCK_L=block_l, SPLITS=splits, BLOCK_S=triton.next_power_of_2(splits),
                HAS_BIAS=bias is not None, HAS_MASK=mask is not None,
                BOOL_MASK=mask is not None and mask.dtype == torch.bool, num_warps=4,
            )  # fmt: skip
        return out

    _launch = _launch_triton


def _broadcast_strides(tensor: Any, batch: int, heads: int, length: int) -> tuple[int, int, int]:
    """(batch, head, key) strides of a [B|1, H|1, 1, L] tensor, 0 along a broadcast dimension."""
    if tensor is None:
        return 0, 0, 0
    sizes, strides = tensor.shape, tensor.stride()
    return (
        strides[0] if sizes[0] == batch and batch > 1 else 0,
        strides[1] if sizes[1] == heads and heads > 1 else 0,
        strides[3],
    )


_COUNTERS: dict[Any, Any] = {}  # device -> int32 counters the split kernel leaves at zero after every call


def _splits(device: Any, programs: int, length: int, block: int) -> tuple[int, int]:
    """(chunks, keys per chunk) of the cache (where Triton is): enough programs for four per multiprocessor (one
    (row, head) each was too few for a wide head: flan-ul2's 4 x 8 per rank left most of an H200 idle, 12-19 µs an
    attention), each chunk whole blocks."""
    wanted = 4 * _multiprocessors(device.index) if device.type == "cuda" else 64
    splits = max(1, min(triton.cdiv(length, block), triton.cdiv(wanted, programs)))
    chunk = triton.cdiv(triton.cdiv(length, splits), block) * block
    return triton.cdiv(length, chunk), chunk


@functools.cache
def _multiprocessors(index: int | None) -> int:
    """The GPU's multiprocessor count, asked once (each launch outside a CUDA graph would ask again)."""
    return int(
        torch.cuda.get_device_properties(
            index if index is not None else torch.cuda.current_device()
        ).multi_processor_count
    )


def _counters(device: Any, needed: int) -> Any:
    """The device's zeroed counters (at least ``needed``), or None where they would have to be allocated while a
    CUDA graph is captured (the caller then runs unsplit). Launches on one device run in stream order: a decode
    step's attentions follow each other."""
    counts = _COUNTERS.get(device)
    if counts is None or counts.numel() < needed:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return None
        counts = _COUNTERS[device] = torch.zeros(max(needed, 4096), dtype=torch.int32, device=device)
    return counts


_OPERATOR: Any = None


def _fake(q: Any, k: Any, v: Any, bias: Any, mask: Any, scaling: float) -> Any:
    return q.new_empty((q.shape[0], 1, q.shape[1], q.shape[3]))


def _operator() -> Any:
    """``lmi_handlers::decode_attention``: the kernel behind one opaque operator (compiled code calls it as it is)."""
    global _OPERATOR
    if _OPERATOR is None:
        schema = "(Tensor q, Tensor k, Tensor v, Tensor? bias, Tensor? mask, float scaling) -> Tensor"
        _OPERATOR = custom_ops.operator("decode_attention", __name__, "_launch", schema, _fake)
    return _OPERATOR


def _serves(
    module: Any, query: Any, key: Any, value: Any, bias: Any, mask: Any, dropout: float, kwargs: dict[str, Any]
) -> bool:
    """Whether the kernel computes this call exactly as the model asks: one new token, on CUDA, nothing it lacks."""
    if query.dim() != 4 or query.shape[2] != 1 or query.device.type not in DEVICES or query.shape[3] > MAX_HEAD_DIM:
        return False
    if (dropout and module.training) or kwargs.get("output_attentions"):
        return False
    if any(kwargs.get(name) is not None for name in _UNSUPPORTED) or query.shape[1] % key.shape[1]:
        return False
    if any(tensor.stride(-1) != 1 for tensor in (query, key, value)):  # each head's vector is read contiguously
        return False
    length = key.shape[2]
    for extra in (bias, mask):
        if extra is not None and (extra.dim() != 4 or extra.shape[2] != 1 or extra.shape[3] != length):
            return False
    return mask is None or mask.dtype == torch.bool or mask.is_floating_point()


def _fallback(module: Any, name: str | None) -> Callable[..., Any]:
    """The implementation the model had: a registered one, else the eager function of the model's own module."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name is not None and name != "eager" and name in ALL_ATTENTION_FUNCTIONS:
        return ALL_ATTENTION_FUNCTIONS[name]  # type: ignore[no-any-return]
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise RuntimeError(f"decode attention: no eager attention for {type(module).__name__}")
    return eager  # type: ignore[no-any-return]


def attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None,
    dropout: float = 0.0, **kwargs: Any,
) -> tuple[Any, Any]:  # fmt: skip
    """transformers' attention-function signature: the kernel for a decode step, the model's own otherwise."""
    global calls
    bias = kwargs.get("position_bias")
    if _launch is not None and _serves(module, query, key, value, bias, attention_mask, dropout, kwargs):
        if not torch.compiler.is_compiling():  # a counter read in traced code would be guarded on: recompiles
            calls += 1
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        return _operator()(query, key, value, bias, attention_mask, float(scale)), None
    original = getattr(module, "_lmi_attention_before", None)
    result: tuple[Any, Any] = _fallback(module, original)(
        module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
    )
    return result


def unavailable(device: Any) -> str | None:
    """Why the kernel cannot serve here, or None."""
    if device.type not in DEVICES:
        return f"the model is on {device.type}"
    if _launch is None:
        return "Triton is not importable"
    if not hasattr(torch.library, "custom_op") or not hasattr(torch.compiler, "is_compiling"):
        return f"torch {torch.__version__} has no torch.library.custom_op"
    try:
        from transformers import AttentionInterface  # noqa: F401
        from transformers.masking_utils import AttentionMaskInterface  # noqa: F401
    except ImportError:
        return "this transformers has no AttentionInterface"
    return None


def _no_skip_mask(*args: Any, **kwargs: Any) -> Any:
    """transformers' boolean (sdpa) mask, never left out: the kernel has no is_causal shortcut to fall back on."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def check(device: Any, dtype: Any, heads: int, kv_heads: int, dim: int) -> str | None:
    """The kernel against ``reference`` on random inputs of the model's head shapes: None, or what differed."""
    generator = torch.Generator(device=device).manual_seed(0)
    for length, batch in ((5, 1), (64, 4), (131, 3)):
        q = torch.randn((batch, heads, 1, dim), generator=generator, device=device).to(dtype)
        k, v = (torch.randn((batch, kv_heads, length, dim), generator=generator, device=device).to(dtype) for _ in "kv")
        bias = torch.randn((1, heads, 1, length), generator=generator, device=device).to(dtype)
        mask = (torch.arange(length, device=device) < length - 2).view(1, 1, 1, length).expand(batch, 1, 1, length)
        mask = mask.clone()
        mask[0, ..., 1] = False
        for extra, causal in ((bias, mask), (None, torch.where(mask, 0.0, -1e9).to(dtype)), (None, None)):
            scale = dim**-0.5
            want = reference(q, k, v, extra, causal, scale)
            got = _operator()(q, k, v, extra, causal, scale)
            if not torch.allclose(got.float(), want.float(), rtol=2e-2, atol=2e-2):
                error = (got.float() - want.float()).abs().max().item()
                return f"{length} keys, batch {batch}: differs from the reference by up to {error:.3g}"
    return None


def _configs(model: Any) -> list[Any]:
    from transformers import PretrainedConfig

    found: dict[int, Any] = {}
    for module in [model, *model.modules()]:
        config = getattr(module, "config", None)
        if isinstance(config, PretrainedConfig):
            found.setdefault(id(config), config)
    return list(found.values())


def install(model: Any) -> Callable[[], None] | str:
    """Route the model's attention through ``attention`` (the kernel for decode steps): the undo, or why not."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    global calls
    before = {id(c): (c, c._attn_implementation) for c in _configs(model)}
    kinds = {name or "eager" for _, name in before.values()}
    if len(kinds) != 1 or not kinds <= set(NAMES):
        return f"the model's attention is {', '.join(sorted(kinds))}, not one of {', '.join(NAMES)}"
    name = NAMES[kinds.pop()]
    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, eager_mask if name == NAMES["eager"] else _no_skip_mask)
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and id(config) in before:
            module._lmi_attention_before = before[id(config)][1]
    for config, _ in before.values():
        config._attn_implementation_internal = name  # the setter would re-validate against the model's class
    calls = 0
    _operator()  # registered now, eagerly, not first while torch.compile traces a step

    def restore() -> None:
        for config, name in before.values():
            config._attn_implementation_internal = name

    return restore
