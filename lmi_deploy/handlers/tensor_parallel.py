"""Tensor parallelism under the container's MPI mode: the ranks, and what they must decide together.

With ``engine=MPI`` the LMI server starts ``mpirun -np <tensor_parallel_degree>`` per model copy, one process per
GPU, each running this handler (``Connection.getPythonStartCmd``). Its engine turns Open MPI's
``OMPI_COMM_WORLD_RANK`` / ``_SIZE`` / ``_LOCAL_RANK`` into ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; mpirun exports
``MASTER_ADDR`` and ``MASTER_PORT`` (the worker's own port, free: MPI mode talks over unix sockets) and
``CUDA_VISIBLE_DEVICES`` listing the copy's GPUs, so rank r drives GPU ``LOCAL_RANK``. Every rank receives every
request and the server answers with the last rank's output (``PyProcess.predict``; from 0.35 only when
``option.use_passive_workers=false``, which lmi-deploy renders: passive workers would leave the other ranks out of
the collectives). All ranks therefore run the same steps on the same inputs and compute the same tokens (every
row-parallel product ends in an all-reduce, so every rank holds the same logits); rank 0 leads what could differ
between processes: the random seed, when a request's deadline stops it, and which decode variant serves.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch

# every this many calls of SharedDeadline.expired() the ranks agree on it (one small host collective)
_AGREE_EVERY = 8
_REASONS = ("", "cancelled", "deadline")  # MAX over ranks: a deadline anywhere stops every rank


@dataclass
class Ranks:
    """This process's place in the model copy: its rank, how many ranks, its device and the process groups."""

    rank: int
    world: int
    device: Any
    backend: str
    control: Any  # a gloo group for host-side decisions (the NCCL group reduces device tensors)
    one_shot: Any = None  # OneShotAllReduce where it passed its check (GPUs with peer access), else NCCL
    two_shot: Any = None  # TwoShotAllReduce for a prompt pass's larger sums where it checked out and beat NCCL

    @property
    def answering(self) -> bool:
        """Whether the server returns this rank's output (the last rank's, see the module's docstring)."""
        return self.rank == self.world - 1

    def all_reduce(self, tensor: Any) -> None:
        """Sum ``tensor`` over the ranks in place (NCCL on GPUs: capturable in a CUDA graph)."""
        torch.distributed.all_reduce(tensor)

    def summed(self, tensor: Any) -> Any:
        """``tensor`` summed over the ranks: the one-shot path for a decode step's small tensors, the two-shot path for
        a prompt pass's where it was chosen (``prompt_sums.choose``), else NCCL. The result may sit in a buffer the
        next sums reuse: read it (or copy it) before summing more."""
        if self.one_shot is not None and tensor.numel() <= self.one_shot.capacity:
            return self.one_shot(tensor)
        # not inside a compiled decode step: the two-shot kernel sums in place, and was checked and timed as the
        # prompt pass runs it (eagerly and in CUDA graphs), not in the compiler's graph
        if self.two_shot is not None and tensor.numel() <= self.two_shot.capacity and not torch.compiler.is_compiling():
            return self.two_shot(tensor)
        self.all_reduce(tensor)
        return tensor

    def agree(self, ok: bool) -> bool:
        """True only where every rank says True: a decision the ranks must take together (host, gloo)."""
        flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN, group=self.control)
        return bool(flag.item())

    def most(self, value: int) -> int:
        flag = torch.tensor([value], dtype=torch.int64)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self.control)
        return int(flag.item())

    def rank_zero_value(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        flag = torch.tensor([value], dtype=torch.int64)
        torch.distributed.broadcast(flag, src=0, group=self.control)
        return int(flag.item())


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return int(value)
    return None


ALL_REDUCE_MODES = ("one_shot", "nccl")  # option.tp_all_reduce; the first is the default


def all_reduce_mode(properties: dict[str, str]) -> str:
    """option.tp_all_reduce: ``one_shot`` (the default: a decode step's partial sums through symmetric memory where
    that checks out against NCCL at load, NCCL elsewhere; with it, gemv_all_reduce's kernel where that wins) or
    ``nccl``. On 2 x H200 the one-shot sum took 7.9 us against NCCL's 17.4 us in a CUDA graph, with the same tokens
    (docs/benchmarks/tp2-h200.json); 6.9-7.4 us with the copy inside its kernel (tp2-h200-fused.json)."""
    mode = str(properties.get("tp_all_reduce") or ALL_REDUCE_MODES[0]).strip().lower()
    if mode not in ALL_REDUCE_MODES:
        raise ValueError(f"option.tp_all_reduce={mode!r} is not one of {', '.join(ALL_REDUCE_MODES)}")
    return mode


def world_size() -> int:
    """How many ranks mpirun started for this model copy (1 outside MPI mode)."""
    return _env_int("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE") or 1


def init_ranks(degree: int, properties: dict[str, str]) -> Ranks | None:
    """Join the model copy's process group (None when this process runs alone).

    A world that is not the rendered ``tensor_parallel_degree`` is refused: the weights would be split wrongly.
    """
    world = world_size()
    if world <= 1:
        return None
    if world != degree:
        raise RuntimeError(
            f"mpirun started {world} ranks but option.tensor_parallel_degree={degree}: re-render the deployment"
        )
    if str(properties.get("use_passive_workers", "")).strip().lower() == "true":
        raise RuntimeError(
            "option.use_passive_workers=true sends requests to rank 0 only, but every rank takes part in each "
            "token: set option.use_passive_workers=false (lmi-deploy renders it)"
        )
    rank = _env_int("RANK", "OMPI_COMM_WORLD_RANK") or 0
    local = _env_int("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK")
    local = rank if local is None else local
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not torch.distributed.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        torch.distributed.init_process_group(backend, rank=rank, world_size=world, **kwargs)
    control = torch.distributed.new_group(backend="gloo") if backend == "nccl" else torch.distributed.group.WORLD
    ranks = Ranks(rank, world, device, backend, control)
    # the same random stream on every rank: sampled tokens agree without exchanging them
    torch.manual_seed(ranks.rank_zero_value(int(torch.initial_seed()) % (1 << 62)))
    logging.info("tensor parallel: rank %d of %d on %s (%s)", rank, world, device, backend)
    return ranks


class SharedDeadline:
    """A request's Deadline that every rank reads the same: they agree on it every few calls of ``expired()``.

    Each rank's own clock (and the local runtime's client cancel) could stop one rank a token before another, which
    would leave the others waiting in a collective. Every rank calls ``expired()`` the same number of times (the
    decode steps are the same), so agreeing at the same calls keeps them in step; once expired, it stays expired.
    """

    def __init__(self, deadline: Any, ranks: Ranks) -> None:
        self.deadline = deadline
        self.ranks = ranks
        self.calls = 0
        self.reason = ""
        self.seconds = deadline.seconds

    def expired(self) -> bool:
        self.calls += 1
        if not self.reason and self.calls % _AGREE_EVERY == 0:
            self.deadline.expired()
            self.reason = _REASONS[self.ranks.most(_REASONS.index(self.deadline.reason))]
            self.deadline.reason = self.reason
        return bool(self.reason)

    def check(self, generated: int) -> None:
        self.deadline.reason = self.reason
        self.deadline.check(generated)


class OneShotAllReduce:
    """A decode step's small all-reduce through PyTorch's symmetric memory: each rank copies its partial sum into a
    buffer the others can read over NVLink, and one kernel (a barrier, then each rank reads and adds every peer's
    buffer) leaves the sum on every rank: a few microseconds where NCCL's ring takes tens for [batch, d_model].
    Two buffers are used in turn, so a rank never overwrites the buffer a slower peer may still be reading (every
    call starts with the barrier); one buffer does where another collective always runs between two calls (the LM
    head's sum, once a step, after the layers' sums). Where torch has ``one_shot_all_reduce_copy`` the copy happens
    inside that kernel (72 kernels fewer per flan-t5-xxl token). Used only where it matches NCCL's sum, eagerly and in
    a CUDA graph (``enable_one_shot``).
    """

    def __init__(self, ranks: Ranks, capacity: int, buffers: int = 2) -> None:
        import torch.distributed._symmetric_memory as symm_mem

        self.group_name = torch.distributed.group.WORLD.group_name
        enable = getattr(symm_mem, "enable_symm_mem_for_group", None)
        if enable is not None:  # needed before torch 2.10, a deprecated no-op after
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                enable(self.group_name)
        self.capacity = capacity
        self.buffers = [symm_mem.empty(capacity, dtype=torch.float32, device=ranks.device) for _ in range(buffers)]
        for buffer in self.buffers:
            symm_mem.rendezvous(buffer, self.group_name)
        self.turn = 0
        self.copying = hasattr(torch.ops.symm_mem, "one_shot_all_reduce_copy")  # torch 2.8 on

    def _next_buffer(self, tensor: Any) -> Any:
        """The next buffer in turn, as a view shaped like ``tensor``."""
        buffer = self.buffers[self.turn][: tensor.numel()].view(tensor.shape)
        self.turn = (self.turn + 1) % len(self.buffers)
        return buffer

    def __call__(self, tensor: Any) -> Any:
        buffer = self._next_buffer(tensor)
        if self.copying:  # the copy into the buffer inside the all-reduce's kernel: one kernel, not two
            return torch.ops.symm_mem.one_shot_all_reduce_copy(buffer, tensor, "sum", self.group_name)
        buffer.copy_(tensor)
        return torch.ops.symm_mem.one_shot_all_reduce(buffer, "sum", self.group_name)


class TwoShotAllReduce(OneShotAllReduce):
    """A prompt pass's all-reduce of megabytes (its rows x the model's width, fp32) through symmetric memory's
    two-shot algorithm: the tensor is copied into this rank's buffer, each rank sums its 1/N of it from every peer's
    buffer over NVLink and writes that part of the sum into every peer's buffer. Each value crosses the link twice,
    as in NCCL's ring, with one kernel and no ring steps. The same two buffers in turn as the one-shot sum."""

    def __call__(self, tensor: Any) -> Any:
        buffer = self._next_buffer(tensor)
        buffer.copy_(tensor)
        torch.ops.symm_mem.two_shot_all_reduce_(buffer, "sum", self.group_name)
        return buffer


def _sums_as_nccl(one_shot: OneShotAllReduce, ranks: Ranks, capacity: int) -> bool:
    """Whether ``one_shot`` (or a two-shot sum) leaves NCCL's sum on this rank, eagerly and replayed from a CUDA
    graph."""
    probe = torch.arange(capacity // 2, dtype=torch.float32, device=ranks.device) * (ranks.rank + 1)
    expected = probe.clone()
    torch.distributed.all_reduce(expected)
    eager = one_shot(probe).clone()  # a two-shot sum leaves it in a buffer the next calls reuse
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        one_shot(probe)
        one_shot(probe)
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        first = one_shot(probe)
        second = one_shot(first / ranks.world)  # the other buffer, summed again: the same sum
    graph.replay()
    torch.cuda.synchronize()
    works = bool(torch.equal(eager, expected)) and bool(torch.equal(first, expected))
    return works and bool(torch.allclose(second, expected))


def enable_one_shot(ranks: Ranks, capacity: int) -> None:
    """Give ``ranks`` the one-shot all-reduce where every rank can build it and it sums as NCCL does, eagerly and
    replayed from a CUDA graph (with the copy inside its kernel where torch has that, else beside it); NCCL
    otherwise (logged). A collective: every rank takes the same path."""
    if ranks.backend != "nccl":
        return
    try:
        one_shot: OneShotAllReduce | None = OneShotAllReduce(ranks, capacity)
    except Exception as error:  # no symmetric memory here (an older torch, no peer access): NCCL it is
        logging.info("tensor parallel: one-shot all-reduce unavailable (%s)", error)
        one_shot = None
    for copying in (True, False) if one_shot is not None and one_shot.copying else (False,):
        works = False
        if one_shot is not None:
            one_shot.copying = copying
            try:
                works = _sums_as_nccl(one_shot, ranks, capacity)
            except Exception as error:  # a driver or torch that cannot run it
                logging.info("tensor parallel: one-shot all-reduce failed (%s)", error)
        if ranks.agree(works):
            ranks.one_shot = one_shot
            how = "copy in its kernel" if copying else "copy beside it"
            logging.info("tensor parallel: one-shot all-reduce (symmetric memory, %s), up to %d values", how, capacity)
            return
    logging.info("tensor parallel: NCCL all-reduce")
