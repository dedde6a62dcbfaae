"""Tensor-parallel sharding: each rank's shard read from the safetensors files, row-wise outputs all-reduced.

The model is built at one rank's size (``tp_plans``: heads and FFN width divided by the degree in a copy of its
config), so every layer is a plain ``nn.Linear`` holding plain tensors: the static KV cache is sized per rank, and the
fused projections, CUDA graphs and compile of the single-GPU handler work per rank unchanged. The only new operations
are the all-reduce after each row-wise projection and after an LM head split by vocabulary (captured in the decode
step's CUDA graph with the rest: no host sync). PyTorch's ``parallelize_module`` with ColwiseParallel/RowwiseParallel
computes the same products, but its DTensor parameters put a Python dispatch and a placement check on every product,
and the handler's fused projections and direct loading work on plain tensors; plain shards keep the same math without
either.

Each tensor's split follows from shapes: the one dimension where the shard's parameter is smaller than the checkpoint's
is cut into ``degree`` equal parts and rank r reads part r, through safetensors' slices (only those bytes are read).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch

from . import gemv_all_reduce
from .fast_load import _ParametersOnMeta, safetensors_files, tie_weights_not_loaded
from .hf_generate import DTYPE_ARGUMENT
from .tensor_parallel import OneShotAllReduce, Ranks, enable_one_shot
from .tp_plans import PLANS, Plan, plan_problem, shard_config


def _checkpoint_index(location: str) -> dict[str, str]:
    """Tensor name -> the file that holds it."""
    files = safetensors_files(location)
    index_path = os.path.join(location, "model.safetensors.index.json")
    if os.path.isfile(index_path):
        with open(index_path) as handle:
            weight_map = json.load(handle)["weight_map"]
        return {name: os.path.join(location, file) for name, file in weight_map.items()}
    from safetensors import safe_open

    with safe_open(files[0], framework="pt") as handle:
        names = handle.keys()
    return {name: files[0] for name in names}


def _shard_slice(name: str, full: list[int], local: tuple[int, ...], ranks: Ranks) -> tuple[slice, ...]:
    """The part of a checkpoint tensor of shape ``full`` that this rank's parameter of shape ``local`` holds."""
    if len(full) != len(local):
        raise ValueError(f"{name}: the checkpoint's shape {full} does not match the model's {list(local)}")
    parts = []
    for size, mine in zip(full, local):
        if size == mine:
            parts.append(slice(None))
        elif size == mine * ranks.world:
            parts.append(slice(ranks.rank * mine, (ranks.rank + 1) * mine))
        else:
            raise ValueError(f"{name}: {size} in the checkpoint does not split into {ranks.world} parts of {mine}")
    if sum(part != slice(None) for part in parts) > 1:
        raise ValueError(f"{name}: split along more than one dimension")
    return tuple(parts)


def read_shard(where: dict[str, str], parameters: dict[str, Any], ranks: Ranks, dtype: Any) -> dict[str, Any]:
    """This rank's part of every checkpoint tensor the model has (``where``: the checkpoint's index), on its device,
    in ``dtype`` (floats)."""
    from safetensors import safe_open

    by_file: dict[str, list[str]] = {}
    for name in parameters:
        if name in where:
            by_file.setdefault(where[name], []).append(name)
    state: dict[str, Any] = {}
    for path, names in sorted(by_file.items()):
        with safe_open(path, framework="pt") as handle:
            for name in names:
                piece = handle.get_slice(name)
                part = piece[_shard_slice(name, piece.get_shape(), tuple(parameters[name].shape), ranks)]
                target = dtype if part.is_floating_point() else part.dtype
                state[name] = part.to(device=ranks.device, dtype=target)
    return state


ONE_SHOT_ROWS = 16  # decode steps of up to this many rows sum through the one-shot all-reduce


class RowParallelLinear(torch.nn.Linear):  # type: ignore[misc]
    """A row-wise projection: this rank's partial product, summed over the ranks, in fp32 on a GPU in 16 bits (the
    product written in fp32 by cuBLAS, the sum rounded once, as one GPU's single product rounds once: the tokens
    stay those of one GPU), then cast back. A class of its own, so the fused projections, which take plain
    ``nn.Linear`` layers, leave it alone. A decode step's product and sum run in one kernel where gemv_all_reduce
    chose that for this matrix; otherwise the product goes through the streaming kernel (writing float32) where that
    won its timing (``row_wise_matrices``), then the ranks' sum."""

    ranks: Ranks
    wide = False  # partial products in fp32

    def forward(self, x: Any) -> Any:
        if not self.wide:
            partial = torch.nn.functional.linear(x, self.weight)
            self.ranks.all_reduce(partial)
            return partial
        flat = x.reshape(-1, x.shape[-1])
        if gemv_all_reduce.serves(self.weight):  # the product and its sum in one kernel where that was chosen
            summed = gemv_all_reduce.summed_product(flat, self.weight)
        else:  # the streaming kernel where it won, then the sum
            summed = gemv_all_reduce.summed_apart(self.ranks, flat, self.weight)
        return summed.to(x.dtype).view(*x.shape[:-1], summed.shape[-1])


class VocabParallelHead(torch.nn.Linear):  # type: ignore[misc]
    """The LM head split by vocabulary (Megatron's vocab-parallel output layer): this rank holds rows
    ``[rank * out_features, (rank + 1) * out_features)`` of the checkpoint's head and computes those logits; each rank
    places its part among zeros and one all-reduce leaves every rank the whole row of logits, as the unsplit head would
    return them (same values, same dtype: with one rank's value and zeros, even a 16-bit sum is exact). Each rank
    reads 1/degree of the head per token instead of all of it: flan-t5-xxl's 32128 x 4096 head is 263 MB a token,
    4 ms of a 64-token request on an H200 and more on an A10G's 600 GB/s."""

    ranks: Ranks
    vocab: int  # the whole vocabulary: what callers see as the head's output width
    one_shot: OneShotAllReduce | None = None  # its own buffer: the row-wise sums' turns per step stay as they were

    def forward(self, x: Any) -> Any:
        rows = self.weight.shape[0]
        start = self.ranks.rank * rows
        whole = torch.nn.functional.pad(torch.nn.functional.linear(x, self.weight), (start, self.vocab - start - rows))
        if self.one_shot is not None and whole.numel() <= self.one_shot.capacity:  # its buffers hold fp32
            return self.one_shot(whole.float()).to(dtype=x.dtype, copy=True)  # a copy: the next step reuses the buffer
        # NCCL in the model's dtype, exact: each logit is one rank's value plus zeros (half the bytes of fp32 on PCIe)
        self.ranks.all_reduce(whole)
        return whole


def _head_one_shot(head: VocabParallelHead, ranks: Ranks) -> None:
    """A one-buffer one-shot sum for the head's logits (up to ONE_SHOT_ROWS rows) where the row-wise sums got one
    (it passed its check against NCCL): a decode step's rows of logits in a few microseconds, where NCCL's ring takes
    tens. A collective: every rank takes the same path."""
    made: OneShotAllReduce | None = None
    try:
        made = OneShotAllReduce(ranks, ONE_SHOT_ROWS * head.vocab, buffers=1)
        made.copying = ranks.one_shot.copying
    except Exception as error:  # memory: NCCL sums the logits
        logging.info("tensor parallel: the LM head's logits are summed by NCCL (%s)", error)
        made = None
    head.one_shot = made if ranks.agree(made is not None) else None


def split_head_by_vocabulary(model: Any, in_checkpoint: set[str], ranks: Ranks) -> bool:
    """Swap the model's (meta, not yet loaded) LM head for its VocabParallelHead part, where the checkpoint holds the
    head's own weights (flan-t5, Llama 2: not tied to the input embeddings) and the vocabulary divides into the
    degree; whether it did. The config cannot say: transformers 5 declares every T5 head tied. A tied head is split
    once loaded (``split_tied_head``)."""
    head = model.get_output_embeddings()
    if not _splittable(head, ranks):
        return False
    name = next(name for name, module in model.named_modules() if module is head)
    if f"{name}.weight" not in in_checkpoint:  # tied: the head is the embeddings
        return False
    _install_part(model, head, ranks, head.weight.device)
    return True


def split_tied_head(model: Any, ranks: Ranks) -> bool:
    """Where the loaded LM head is the input embeddings (tied: T5 v1.0, Llama 3.2, the small Qwen2.5), make it a
    VocabParallelHead over this rank's rows of them, a view: the embeddings stay whole for the input and nothing is
    copied, and each token reads 1/degree of the head (Llama 3.2 3B's 128256 x 3072 is 788 MB); whether it did."""
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if not _splittable(head, ranks) or head.weight is not getattr(embeddings, "weight", None):
        return False
    weight: Any = head.weight
    part = _install_part(model, head, ranks, "meta")
    rows = part.out_features
    part.weight = torch.nn.Parameter(weight.detach()[ranks.rank * rows : (ranks.rank + 1) * rows], requires_grad=False)
    return True


def _splittable(head: Any, ranks: Ranks) -> bool:
    """Whether the head is a plain bias-free Linear whose vocabulary the degree divides."""
    return type(head) is torch.nn.Linear and head.bias is None and head.out_features % ranks.world == 0


def _install_part(model: Any, head: Any, ranks: Ranks, device: Any) -> VocabParallelHead:
    """The model's head replaced by this rank's VocabParallelHead part of it (its weight made on ``device``)."""
    part = VocabParallelHead(
        head.in_features, head.out_features // ranks.world, bias=False, device=device, dtype=head.weight.dtype
    )
    part.ranks, part.vocab = ranks, head.out_features
    model.set_output_embeddings(part)
    return part


def _row_parallel(layer: Any, ranks: Ranks) -> None:
    """Make ``layer`` a RowParallelLinear in place (its parameters stay where they are)."""
    layer.__class__ = RowParallelLinear
    layer.ranks = ranks
    probe = torch.zeros((1, layer.in_features), dtype=layer.weight.dtype, device=layer.weight.device)
    if layer.weight.device.type == "cuda" and layer.weight.dtype in (torch.bfloat16, torch.float16):
        try:
            torch.mm(probe, layer.weight.t(), out_dtype=torch.float32)
            layer.wide = True
        except (RuntimeError, TypeError):  # a torch without mm's out_dtype: sums in the model's dtype
            layer.wide = False


def row_wise_layers(model: Any, plan: Plan) -> list[Any]:
    """The Linear layers whose partial outputs are summed over the ranks."""
    return [
        module
        for name, module in model.named_modules()
        if name.split(".")[-1] in plan.row_wise and isinstance(module, torch.nn.Linear)
    ]


def row_wise_matrices(model: Any, seq2seq: bool) -> dict[tuple[int, int], list[Any]]:
    """The weights of the decoder's row-wise layers, by shape: what gemv.choose times for a decode step."""
    root = model.get_decoder() if seq2seq else model
    found: dict[tuple[int, int], list[Any]] = {}
    for module in root.modules():
        if isinstance(module, RowParallelLinear) and module.wide:
            found.setdefault((module.out_features, module.in_features), []).append(module.weight)
    return found


def load_shard(location: str, model_class: Any, config: Any, dtype: Any, ranks: Ranks, one_shot: bool = False) -> Any:
    """The model at this rank's size with its shard of the weights, row-wise outputs all-reduced; or ValueError.

    ``one_shot`` (``option.tp_all_reduce=one_shot``, the default) sums a decode step's partial products through
    symmetric memory where that checks out; NCCL otherwise."""
    if not safetensors_files(location):
        raise ValueError(f"{location} holds no .safetensors weights to read shards from")
    plan = PLANS[config.model_type]
    local = shard_config(config, ranks.world)
    with _ParametersOnMeta():
        model = model_class.from_config(local, **{DTYPE_ARGUMENT: dtype})
        where = _checkpoint_index(location)
        head_split = split_head_by_vocabulary(model, set(where), ranks)
    parameters = dict(model.named_parameters(remove_duplicate=False))
    state = read_shard(where, parameters, ranks, dtype)
    model.load_state_dict(state, strict=False, assign=True)
    tie_weights_not_loaded(model, set(state))
    head_split = head_split or split_tied_head(model, ranks)
    missing = [name for name, param in model.named_parameters() if param.device.type == "meta"]
    if missing:
        raise ValueError(f"{', '.join(missing[:3])}... are not in the checkpoint")
    layers = row_wise_layers(model, plan)
    if not layers or any(layer.bias is not None for layer in layers):
        raise ValueError("its row-wise layers are missing or carry a bias (it would be summed once per rank)")
    for layer in layers:
        _row_parallel(layer, ranks)
    if one_shot and ranks.device.type == "cuda":  # a decode step's all-reduces: up to 16 rows of the model's width
        enable_one_shot(ranks, ONE_SHOT_ROWS * layers[0].out_features)
        if head_split and ranks.one_shot is not None:
            _head_one_shot(model.get_output_embeddings(), ranks)
    logging.info(
        "tensor parallel: rank %d holds 1/%d of the heads, the FFN%s (%d all-reduced layers)",
        ranks.rank,
        ranks.world,
        " and the LM head's vocabulary" if head_split else " (the LM head whole)",
        len(layers),
    )
    return model.to(ranks.device).eval()


IDLE = "idle"  # what a rank holds when the model fell back to device_map on the answering rank


def load_tensor_parallel(
    location: str, model_class: Any, config: Any, dtype: Any, ranks: Ranks, one_shot: bool = False
) -> Any:
    """This rank's shard of the model; where tensor parallelism does not apply (logged), None on the answering rank
    (which then spreads the model over the GPUs with device_map) and IDLE on the others."""
    problem = plan_problem(config, ranks.world)
    if problem is None:
        return load_shard(location, model_class, config, dtype, ranks, one_shot)
    logging.warning(
        "tensor parallel does not apply (%s): device_map over the GPUs of rank %d", problem, ranks.world - 1
    )
    return None if ranks.answering else IDLE
