"""The handler's Triton kernels as torch operators: registered once per process, launched on their tensors' device.

Behind an opaque operator, compiled code calls a kernel as it is and CUDA graphs capture it (gemv's streamed_linear,
decode_attention's decode_attention).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable

import torch

NAMESPACE = "lmi_handlers"


def on_device(tensor: Any) -> Any:
    """Where to launch a kernel on ``tensor``: its GPU (a model split over GPUs has layers on several), else as it is
    (the CPU: Triton's interpreter)."""
    return torch.cuda.device(tensor.device) if tensor.device.type == "cuda" else contextlib.nullcontext()


def operator(name: str, module: str, attribute: str, schema: str, fake: Callable[..., Any]) -> Any:
    """``lmi_handlers::<name>``: ``attribute`` of ``module`` behind one opaque operator, registered once per process.

    The operator calls the attribute of the module as imported at call time, so a re-imported copy of the module
    (a model.py rendered again, in one process) is served by its own code and settings.
    """
    existing = getattr(getattr(torch.ops, NAMESPACE, None), name, None)
    if existing is not None:
        return existing

    def implementation(*args: Any) -> Any:
        return getattr(sys.modules[module], attribute)(*args)

    registered = torch.library.custom_op(f"{NAMESPACE}::{name}", implementation, mutates_args=(), schema=schema)
    registered.register_fake(fake)
    return registered
