"""A prompt pass's all-reduces under tensor parallelism: NCCL, or symmetric memory's two-shot sum where this machine
sums faster with it, timed at load.

A prompt pass sums rows x width partial products after each row-wise layer: flan-ul2's encoder at batch 4 x 128
tokens sums 8 MB of fp32, 64 times a request. In the prompt pass's CUDA graph on 2 x H200 NCCL took ~49 us a sum
(its ring in the LL protocol; docs/benchmarks/tp2-h200-ul2-8-layers-profile.txt): 3 ms of a 30 ms prompt pass. The
two-shot sum moves the same bytes in one kernel. Which is faster depends on the link and the size, so both are timed
at load on the largest prompt pass of option.warm_shapes, in CUDA graphs as they will serve, and the faster is kept
(rank 0's timing decides for every rank). Tried only where the one-shot sum passed its own check (GPUs with peer
access, ``option.tp_all_reduce=one_shot``); the two-shot sum must also leave NCCL's sum.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from . import gemv
from .fast_decode import _power_of_two
from .tensor_parallel import Ranks, TwoShotAllReduce, _sums_as_nccl

MAX_VALUES = 16 << 20  # fp32 values per buffer (64 MB; two buffers): a larger prompt pass keeps NCCL
_SUMS_PER_GRAPH = 8


def largest_values(shapes: list[tuple[int, int, int]], width: int) -> int:
    """Values summed by the largest prompt pass among these (rows, prompt, new) shapes: its bucket's rows (batch
    and prompt rounded up to powers of two, as the static-cache decoder pads them) times the model's width."""
    return max((_power_of_two(rows, 2) * _power_of_two(length, 16) * width for rows, length, _ in shapes), default=0)


def graph_us(function: Callable[[], Any], calls: int = 1, replays: int = 5) -> float:
    """Microseconds per call of ``function``, captured ``calls`` times in one CUDA graph and replayed (the median of
    ``replays``), as ``gemv`` times its products."""
    return gemv._time_ms(lambda _: function(), [None] * calls, repeats=replays) * 1e3


def choose(ranks: Ranks, values: int) -> dict[str, Any] | None:
    """Give ``ranks`` the two-shot sum for tensors above the one-shot's size up to ``values`` (at most MAX_VALUES)
    where it sums as NCCL does and, timed here, faster; what was measured (None where it was not tried). A
    collective: every rank takes the same path."""
    if ranks.backend != "nccl" or ranks.one_shot is None or values <= ranks.one_shot.capacity:
        return None
    values = min(values, MAX_VALUES)
    two_shot: TwoShotAllReduce | None = None
    works = False
    try:
        two_shot = TwoShotAllReduce(ranks, values)
        works = _sums_as_nccl(two_shot, ranks, values)
    except Exception as error:  # no two-shot kernel in this torch, or memory: NCCL sums the prompt pass
        logging.info("tensor parallel: two-shot all-reduce unavailable (%s)", error)
    if not ranks.agree(works) or two_shot is None:
        return {"values": values, "chosen": "nccl", "why": "the two-shot sum failed its check on a rank"}
    probe = torch.ones(values, dtype=torch.float32, device=ranks.device)
    nccl_us = graph_us(lambda: torch.distributed.all_reduce(probe), _SUMS_PER_GRAPH)
    two_shot_us = graph_us(lambda: two_shot(probe), _SUMS_PER_GRAPH)
    chosen = "two_shot" if ranks.rank_zero_value(int(two_shot_us < nccl_us)) else "nccl"
    ranks.two_shot = two_shot if chosen == "two_shot" else None
    logging.info(
        "tensor parallel: a prompt pass's sums of up to %d values: NCCL %.1f us, two-shot %.1f us (rank %d): %s",
        values,
        nccl_us,
        two_shot_us,
        ranks.rank,
        chosen,
    )
    return {"values": values, "nccl_us": round(nccl_us, 1), "two_shot_us": round(two_shot_us, 1), "chosen": chosen}
