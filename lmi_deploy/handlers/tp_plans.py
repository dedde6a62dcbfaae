"""Which architectures run tensor-parallel and how their config divides (no torch here: the validation rules and
the renderer read it too).

Megatron-style split, the layout PyTorch's ``torch.distributed.tensor.parallel`` names ColwiseParallel and
RowwiseParallel: q/k/v and the FFN input projections column-wise (each rank holds whole heads and a slice of the
FFN), the attention output and FFN output projections row-wise (their partial products summed by one all-reduce),
norms and embeddings replicated, the LM head split by vocabulary (``tp_shards.VocabParallelHead``; a tied one as a
view of the embeddings). A model is built at one rank's size from a copy of its config with the ``divided`` fields
divided by the degree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Plan:
    """How one architecture splits: config fields divided by the degree, and the row-wise (all-reduced) layers."""

    divided: tuple[str, ...]  # config fields that count heads or FFN width
    row_wise: tuple[str, ...]  # names of the Linear layers whose outputs are summed over the ranks
    kept: tuple[str, ...] = ()  # fields derived from divided ones that must keep their full value (head_dim)


_LLAMA_LIKE = Plan(
    divided=("num_attention_heads", "num_key_value_heads", "intermediate_size"),
    row_wise=("o_proj", "down_proj"),
    kept=("head_dim",),
)
PLANS = {
    "t5": Plan(divided=("num_heads", "d_ff"), row_wise=("o", "wo")),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
}


def plan_problem(config: Any, degree: int) -> str | None:
    """Why this model cannot run tensor-parallel at ``degree`` (None when it can)."""
    model_type = getattr(config, "model_type", None)
    plan = PLANS.get(str(model_type))
    if plan is None:
        return f"model_type {model_type!r} is not among the tensor-parallel plans ({', '.join(sorted(PLANS))})"
    for field in plan.divided:
        value = getattr(config, field, None)
        if value is None and field == "num_key_value_heads":
            continue  # defaults to the attention heads
        if not isinstance(value, int) or value % degree:
            return f"{field}={value} is not divisible by tensor_parallel_degree={degree}"
    return None


def shard_config(config: Any, degree: int) -> Any:
    """A copy of ``config`` at one rank's size."""
    plan = PLANS[config.model_type]
    local = copy.deepcopy(config)
    for field in plan.kept:
        if field == "head_dim" and getattr(config, "head_dim", None) is None:
            setattr(local, field, config.hidden_size // config.num_attention_heads)
    for field in plan.divided:
        value: Any = getattr(config, field, None)
        if value is None and field == "num_key_value_heads":
            value = config.num_attention_heads
        setattr(local, field, value // degree)
    return local
