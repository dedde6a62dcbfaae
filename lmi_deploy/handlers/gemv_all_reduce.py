"""A row-wise tensor-parallel projection and the sum of its output over the ranks in one Triton kernel (decode steps).

A row-wise layer (attention output, FFN output) leaves each rank a partial product that the ranks must add up. Apart,
that is a product kernel and then an all-reduce kernel (PyTorch's one-shot sum: 7.4 µs each on 2 x H200 in a CUDA
graph, 72 per flan-t5-xxl token). Here each block of the streaming product (gemv's tiling: a block owns a slice of
the output columns over every row), once its slice is computed, writes it over NVLink into every peer's symmetric
memory (its own slot there), raises its flag in every peer's flag array, waits for every peer's flag for the same
block, and adds the slices its peers wrote into its own memory to its own, in rank order, so that every rank ends
with the same bits. One kernel instead of two, and a block's wait overlaps the other blocks' weight reads. Writing
to the peers rather than reading from them saves a round trip over NVLink after the flags (on 2 x H200 in CUDA
graphs: 13.3 → 12.1 µs on 4096x2048, 20.5 → 18.4 µs on 4096x5120).

Flags follow the zero-reset protocol of PyTorch's symmetric-memory barriers: the sender swaps 0 for 1 (waiting while
the peer has not yet taken its last flag), the receiver swaps 1 for 0; release and acquire at system scope order the
slices before and after them. Two data buffers are used in turn, so a rank never overwrites a slice a slower peer may
still be reading (to write into a peer's buffer again, a rank must have passed a later call's flags, which that peer
raises only after its kernel that read the buffer has ended). A CUDA graph replays the buffers it captured, so a
decode step's graph with an odd number of fused calls would put its last call and the next replay's first on one
buffer: ``choose`` keeps the calls of a step even (where they would be odd, the odd shape with the fewest matrices
stays apart), and every graph then starts on the same buffer. Blocks wait only for the same block on their peers;
GPUs start blocks in order, so the lowest unfinished block is always running on every rank.

``choose`` (a collective: every rank runs it) checks the kernel against the product in float32 summed by NCCL, with
the same bits on every rank, and times it against the product and the one-shot sum apart, replayed from CUDA graphs;
a row count and matrix shape is served by it only where every rank found it right and rank 0 found it faster, with
rank 0's tiling on every rank: blocks pair up across ranks by index, so ranks that each took their own fastest
tiling (another block width) would wait forever for flags their peers' blocks never raise.
Without Triton, a GPU, symmetric memory with peer access, or a power-of-two world, nothing changes.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Callable

import torch

from . import custom_ops, gemv

FLAG_BLOCKS = 2048  # flag slots per rank and peer: the most output blocks one product may have
_MIN_GAIN = 0.95  # the kernel must take at most this share of the product-then-sum time to be chosen

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only images
    triton = None

# (outputs, inputs) -> {rows: tiling}: where the kernel was right and faster, measured at load
CHOICES: dict[tuple[int, int], dict[int, tuple[int, int, int, int]]] = {}
ACTIVE: Any = None  # the GemvAllReduce of this process's rank, where choose() kept anything

if triton is not None:

    @triton.jit
    def _thread_index():  # type: ignore[no-untyped-def]
        return tl.inline_asm_elementwise("mov.u32 $0, %tid.x;", "=r", [], dtype=tl.int32, is_pure=True, pack=1)

    @triton.jit  # type: ignore[untyped-decorator]
    def _swap_flags(addresses, SEM: tl.constexpr, OLD: tl.constexpr, NEW: tl.constexpr):  # type: ignore[no-untyped-def]
        """Swap OLD for NEW at each address at system scope, spinning until it holds OLD. Raising a flag is
        (release, 0, 1): this block's writes are seen first, and a flag the peer has not yet taken is waited for;
        taking one is (acquire, 1, 0): the peer's writes are seen after."""
        tl.inline_asm_elementwise(
            "{"  # a scope of its own: the registers and the label, once per use
            f"""
            .reg .u32 %was;
            .reg .pred %swapped;
            again:
            atom.global.{SEM}.sys.cas.b32 %was, [$1], {OLD}, {NEW};
            setp.eq.u32 %swapped, %was, {OLD};
            @!%swapped bra again;
            """
            "}",
            "=r, l", [addresses], dtype=tl.int32, is_pure=False, pack=1,
        )  # fmt: skip

    @triton.jit(do_not_specialize=["M"])  # type: ignore[untyped-decorator]
    def _gemv_sum_kernel(  # type: ignore[no-untyped-def]
        x_ptr, w_ptr, y_ptr, buffers, flags, M, N, stride_xm, stride_wn, slot, K: tl.constexpr,
        RANK: tl.constexpr, WORLD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        """y[:M, n-block] = sum over ranks of x_r[:M, :] @ w_r[n-block, :]^T, in float32."""
        block = tl.program_id(0)
        rows = tl.arange(0, BLOCK_M)
        cols = block * BLOCK_N + tl.arange(0, BLOCK_N)
        total = gemv.tile_product(x_ptr, w_ptr, M, N, stride_xm, stride_wn, rows, cols, K, BLOCK_M, BLOCK_N, BLOCK_K)
        inside = (rows[:, None] < M) & (cols[None, :] < N)
        at = rows[:, None] * N + cols[None, :]
        buffers = buffers.to(tl.pointer_type(tl.uint64))
        for peer in tl.static_range(WORLD):  # this rank's slot in every peer's buffer
            if peer != RANK:
                tl.store(tl.load(buffers + peer).to(tl.pointer_type(tl.float32)) + RANK * slot + at, total, mask=inside)
        ranks = tl.arange(0, WORLD)
        flags = flags.to(tl.pointer_type(tl.uint64))
        theirs = tl.load(flags + ranks).to(tl.pointer_type(tl.uint32)) + block * WORLD + RANK
        mine = tl.load(flags + RANK).to(tl.pointer_type(tl.uint32)) + block * WORLD + ranks
        tl.debug_barrier()  # every thread's part of the slice is written before the flags go up
        if _thread_index() < WORLD:  # thread r raises this block's flag at rank r, then takes rank r's
            _swap_flags(theirs, "release", 0, 1)
            _swap_flags(mine, "acquire", 1, 0)
        tl.debug_barrier()
        summed = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        own = tl.load(buffers + RANK).to(tl.pointer_type(tl.float32))
        for peer in tl.static_range(WORLD):  # rank order: the same bits on every rank
            if peer == RANK:
                summed += total
            else:  # written by the peer before its flag: read past the caches
                summed += tl.load(own + peer * slot + at, mask=inside, other=0.0, volatile=True)
        tl.store(y_ptr + at, summed, mask=inside)


class GemvAllReduce:
    """This rank's symmetric buffers (a slot of ``capacity`` floats per rank, two buffers used in turn) and flags for
    the kernel, and its launch."""

    def __init__(self, ranks: Any, capacity: int) -> None:
        import torch.distributed._symmetric_memory as symm_mem

        group = torch.distributed.group.WORLD.group_name
        self.ranks, self.capacity = ranks, capacity
        self.buffers, self.pointers = [], []
        for _ in range(2):
            buffer = symm_mem.empty(capacity * ranks.world, dtype=torch.float32, device=ranks.device)
            handle = symm_mem.rendezvous(buffer, group)
            self.buffers.append(buffer)
            self.pointers.append(torch.tensor(list(handle.buffer_ptrs), dtype=torch.int64, device=ranks.device))
        self.flags = symm_mem.empty(FLAG_BLOCKS * ranks.world, dtype=torch.int32, device=ranks.device)
        self.flags.zero_()
        handle = symm_mem.rendezvous(self.flags, group)
        self.flag_pointers = torch.tensor(list(handle.buffer_ptrs), dtype=torch.int64, device=ranks.device)
        torch.cuda.synchronize(ranks.device)
        torch.distributed.barrier()  # every rank's flags are zero before any rank raises one
        self.turn = 0

    def launch(self, x: Any, weight: Any, tiling: tuple[int, int, int, int], compile_only: bool = False) -> Any:
        """Σ over ranks of x @ weight^T in float32 ([rows, outputs]); ``compile_only``: build the kernel, launch
        nothing (a rank whose build fails must not leave its peers waiting on its flags)."""
        block_n, block_k, warps, stages = tiling
        rows, depth = x.shape
        outputs = weight.shape[0]
        y = torch.empty((rows, outputs), dtype=torch.float32, device=x.device)
        grid = (triton.cdiv(outputs, block_n),)
        if rows * outputs > self.capacity or grid[0] > FLAG_BLOCKS:
            raise ValueError(f"{rows}x{outputs} outputs in {grid[0]} blocks exceed the buffers")
        arguments = [x, weight, y, self.pointers[self.turn], self.flag_pointers, rows, outputs]
        arguments += [x.stride(0), weight.stride(0), self.capacity]
        options = dict(K=depth, RANK=self.ranks.rank, WORLD=self.ranks.world, BLOCK_M=gemv.MAX_ROWS, BLOCK_N=block_n)
        options.update(BLOCK_K=block_k, num_warps=warps, num_stages=stages)
        with custom_ops.on_device(x):
            if compile_only:
                _gemv_sum_kernel.warmup(*arguments, grid=grid, **options)
                return y
            self.turn ^= 1
            _gemv_sum_kernel[grid](*arguments, **options)
        return y


def summed_apart(ranks: Any, x: Any, weight: Any) -> Any:
    """Σ over ranks of x @ weight^T in float32 without the kernel: the product (the streaming kernel where gemv chose
    it), then the ranks' sum (one-shot or NCCL)."""
    return ranks.summed(gemv.wide_linear(x, weight))


def _product_sum(x: Any, weight: Any) -> Any:
    """The kernel for a row count it was chosen for (``choose``); else the product, then the ranks' usual sum."""
    tiling = gemv.chosen_tiling(CHOICES, weight, x.shape[0])
    if tiling is not None:
        return ACTIVE.launch(x.contiguous(), weight, tiling)
    return summed_apart(ACTIVE.ranks, x, weight)


def _fake(x: Any, weight: Any) -> Any:
    return x.new_empty((x.shape[0], weight.shape[0]), dtype=torch.float32)


def _operator() -> Any:
    """``lmi_handlers::gemv_all_reduce``: _product_sum behind one opaque operator (registered once per process)."""
    schema = "(Tensor x, Tensor weight) -> Tensor"
    return custom_ops.operator("gemv_all_reduce", __name__, "_product_sum", schema, _fake)


def summed_product(x: Any, weight: Any) -> Any:
    """Σ over ranks of x @ weight^T in float32 (rows x outputs), through ``lmi_handlers::gemv_all_reduce``: the
    kernel for the row counts ``choose`` kept for this matrix, the product then the ranks' sum for the others."""
    return _operator()(x, weight)


def serves(weight: Any) -> bool:
    """Whether ``choose`` kept the kernel for this matrix's shape (for some row count)."""
    return ACTIVE is not None and (weight.shape[0], weight.shape[1]) in CHOICES


def unavailable(ranks: Any) -> str | None:
    """Why the kernel cannot serve these ranks, or None."""
    if ranks is None or ranks.backend != "nccl":
        return "not tensor-parallel on GPUs"
    if triton is None or not hasattr(torch.library, "custom_op"):
        return "Triton or torch.library.custom_op is missing"
    if ranks.one_shot is None:
        return "no symmetric memory with peer access here (the one-shot sum is off)"
    if ranks.world & (ranks.world - 1):
        return f"{ranks.world} ranks is not a power of two"
    return None


def _right(fused: GemvAllReduce, ranks: Any, x: Any, weight: Any, tiling: tuple[int, int, int, int]) -> bool:
    """Whether the kernel leaves NCCL's sum of the float32 products (to float32 rounding), the same bits on every
    rank, from both buffers in turn."""
    expected = torch.mm(x, weight.t(), out_dtype=torch.float32)
    torch.distributed.all_reduce(expected)
    bound = 1e-3 * float(expected.abs().max()) + 1e-6
    for _ in range(2):
        got = fused.launch(x, weight, tiling)
        first = got.clone()
        torch.distributed.broadcast(first, src=0)
        if not torch.equal(got, first) or float((got - expected).abs().max()) > bound:
            return False
    return True


def _try(step: Callable[[], Any]) -> Any:
    """``step()``, or False where it raises (logged): every rank then still reaches the next agreement."""
    try:
        return step()
    except Exception as error:  # a tiling this GPU or Triton refuses, a driver without peer atomics
        logging.info("gemv_all_reduce: %s", error)
        return False


def _fused_product(fused: GemvAllReduce, x: Any, tiling: tuple[int, int, int, int], weight: Any) -> Any:
    return fused.launch(x, weight, tiling)


def _best_tiling(fused: GemvAllReduce, ranks: Any, x: Any, weights: list[Any]) -> tuple[float, Any]:
    """The fastest tiling that builds and is right on every rank (inf, None where none is)."""
    best: tuple[float, Any] = (float("inf"), None)
    for tiling in gemv.TILINGS:
        if not ranks.agree(_try(partial(fused.launch, x, weights[0], tiling, True)) is not False):
            continue
        if not ranks.agree(bool(_try(partial(_right, fused, ranks, x, weights[0], tiling)))):
            continue
        took = gemv._time_ms(partial(_fused_product, fused, x, tiling), weights)
        best = min(best, (took, tiling))
    return best


def _keep_calls_even(matrices: dict[tuple[int, int], list[Any]], report: dict[str, Any]) -> None:
    """Per row count, where the kept shapes' matrices (each called once a decode step) are odd in number, leave the
    odd shape with the fewest matrices apart: two calls in a row must not use one buffer (see the module). Every rank
    keeps rank 0's choices, so every rank drops the same."""
    for count in sorted({count for kept in CHOICES.values() for count in kept}):
        shapes = [shape for shape, kept in CHOICES.items() if count in kept]
        if sum(len(matrices[shape]) for shape in shapes) % 2 == 0:
            continue
        dropped = min((shape for shape in shapes if len(matrices[shape]) % 2), key=lambda shape: len(matrices[shape]))
        del CHOICES[dropped][count]
        if not CHOICES[dropped]:
            del CHOICES[dropped]
        row = report[f"{dropped[0]}x{dropped[1]}"][count]
        row.update(chosen="apart", tiling=None, why="an odd number of fused calls a step")


def choose(ranks: Any, matrices: dict[tuple[int, int], list[Any]], rows: list[int]) -> dict[str, Any]:
    """Keep the kernel per (shape, rows) where it is right on every rank and faster on rank 0 than the product then
    the one-shot sum, both timed in CUDA graphs over every layer's matrix. A collective: every rank calls it with the
    same shapes and rows. Returns what was measured, for the log and the benchmark."""
    global ACTIVE
    CHOICES.clear()
    why = unavailable(ranks) or (None if matrices else "no row-wise layers")
    fused = None
    if why is None:
        capacity = gemv.MAX_ROWS * max(outputs for outputs, _ in matrices)
        fused = _try(lambda: GemvAllReduce(ranks, capacity)) or None
        why = None if ranks.agree(fused is not None) else "its buffers could not be made on every rank"
    if why is not None or fused is None:
        logging.info("gemv_all_reduce: not used (%s)", why)
        return {}
    ACTIVE = fused
    report: dict[str, Any] = {}
    for (outputs, inputs), weights in sorted(matrices.items()):
        for count in sorted({r for r in rows if 0 < r <= gemv.MAX_ROWS}):
            x = torch.randn((count, inputs), dtype=weights[0].dtype, device=weights[0].device) * (ranks.rank + 1)
            took, tiling = _best_tiling(fused, ranks, x, weights)
            apart = gemv._time_ms(partial(summed_apart, ranks, x), weights)
            faster = tiling is not None and took <= _MIN_GAIN * apart
            # rank 0's tiling on every rank: the blocks of one call pair up across ranks by index, so ranks with
            # different tilings (each rank's own fastest) would wait for flags that are never raised
            index = ranks.rank_zero_value(gemv.TILINGS.index(tiling) if faster else -1)
            kept = index >= 0
            if kept:
                CHOICES.setdefault((outputs, inputs), {})[count] = gemv.TILINGS[index]
            report.setdefault(f"{outputs}x{inputs}", {})[count] = {
                "apart_ms": round(apart, 4),
                "kernel_ms": round(took, 4) if tiling is not None else None,
                "tiling": list(gemv.TILINGS[index]) if kept else None,  # rank 0's: the one every rank uses
                "chosen": "kernel" if kept else "apart",
            }
    _keep_calls_even(matrices, report)
    logging.info("gemv_all_reduce on rank %d: %s", ranks.rank, report)
    if CHOICES:
        _operator()  # registered now, eagerly, not first while torch.compile traces a step
    return report
