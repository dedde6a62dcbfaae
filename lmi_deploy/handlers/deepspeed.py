"""lmi-deploy's handler on DeepSpeed inference (tensor parallel, kernel injection).

Runs under MPI: every rank loads the model on the CPU and joins ``deepspeed.init_inference`` with the deployment's
tensor-parallel degree; the server answers with the last rank's output. One batched ``generate`` per request,
answered ``{"outputs": [str, ...], "generated_tokens": [int, ...]}``; past ``option.request_timeout`` generation stops
and the request gets a 504. Under MPI the ranks agree on when the deadline passed (``SharedDeadline``, over a gloo
group), so every rank stops at the same step and none is left waiting in a collective.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from . import hf_generate
from .handler import Handler, weights_location
from .hf_generate import DTYPE_ARGUMENT, load_tokenizer, torch_dtype
from .request import Answers, Deadline, DeadlineExceeded, RequestRules, read_body, request_timeout
from .tensor_parallel import Ranks, SharedDeadline, world_size


class DeepSpeedHandler(Handler):
    """One deployment's handler: its rendered tensor-parallel degree and dtype (the properties override them)."""

    def __init__(
        self,
        rules: RequestRules,
        answers: Answers,
        *,
        tensor_parallel_degree: int,
        dtype: str,
        request_timeout_s: float = 60.0,
        hub_token_secret: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(rules, answers, hub_token_secret)
        self.tensor_parallel_degree = tensor_parallel_degree
        self.dtype = dtype
        self.request_timeout_s = request_timeout_s
        self.ranks: Ranks | None = None  # the MPI ranks, once deepspeed has joined them (None: one process)
        self.deadline_applies = True  # False where the ranks could not agree on a deadline (then none applies)

    def load(self, properties: dict[str, str]) -> tuple[Any, Any]:
        """Load on the CPU, then let DeepSpeed shard it over the ranks with its fused kernels."""
        import deepspeed  # in the DeepSpeed container only
        from transformers import AutoModelForCausalLM

        location = weights_location(properties)
        local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", "0")))
        degree = int(properties.get("tensor_parallel_degree", self.tensor_parallel_degree))
        dtype = torch_dtype(properties, self.dtype)
        model = AutoModelForCausalLM.from_pretrained(
            location, revision=properties.get("revision"), low_cpu_mem_usage=True, **{DTYPE_ARGUMENT: dtype}
        )
        logging.info("rank %d: deepspeed.init_inference tp=%d dtype=%s", local_rank, degree, dtype)
        engine = deepspeed.init_inference(
            model,
            tensor_parallel={"tp_size": degree},
            dtype=dtype,
            replace_with_kernel_inject=True,
            max_tokens=int(properties.get("max_tokens", "1024")),
        )
        self.request_timeout_s = request_timeout(properties, self.request_timeout_s)
        self.ranks, self.deadline_applies = _deadline_ranks(local_rank)
        return engine.module, load_tokenizer(location, properties, False)

    def answer(self, loaded: tuple[Any, Any], inputs: Any) -> Any:
        model, tokenizer = loaded
        prompts, kwargs = self.rules.parse(read_body(inputs))
        deadline: Any = Deadline(inputs, self.request_timeout_s) if self.deadline_applies else None
        if self.ranks is not None:  # each rank reads its own clock: they agree every few steps
            deadline = SharedDeadline(deadline, self.ranks)
        limit = self.rules.max_sequence_length
        try:
            answer = hf_generate.generate(
                model, tokenizer, False, prompts, kwargs, deadline=deadline, max_sequence_length=limit
            )
        except DeadlineExceeded as error:
            return self.answers.error(504, "Gateway Timeout", str(error))
        return self.answers.json(answer)


def _deadline_ranks(local_rank: int) -> tuple[Ranks | None, bool]:
    """The ranks deepspeed joined, with a gloo group for agreeing on deadlines (a collective: every rank loads), and
    whether a deadline can apply: ranks that cannot agree must not stop on their own clocks (one rank stopping alone
    would leave the others waiting in a collective), so they get none, logged."""
    import torch

    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = torch.distributed.get_world_size() if initialized else world_size()
    if world <= 1:
        return None, True
    if initialized:
        try:
            control = torch.distributed.new_group(backend="gloo")
            return Ranks(torch.distributed.get_rank(), world, local_rank, "nccl", control), True
        except Exception as error:  # no gloo in this torch build
            logging.warning("request deadline off: the %d ranks cannot agree on it (%s)", world, error)
            return None, False
    logging.warning("request deadline off: %d ranks without a torch.distributed group to agree on it", world)
    return None, False
