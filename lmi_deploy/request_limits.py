"""What a request may ask of a deployment: parameter ranges, sizes and the per-request deadline.

Decided here, in Python, and passed to the rendered handlers as values (the handler refuses a request outside them
with a 400 before any work) and to the local server (body size, deadline). One request must never be able to take
the endpoint down: ``max_new_tokens`` and the prompt are bounded by the deployment's ``max_sequence_length``, the
number of prompts and beams by fixed ceilings, and generation stops at the deadline.
"""

from __future__ import annotations

# SageMaker's InvokeEndpoint body limit (6 MB; fact sheet §6: "Body ≤ 6,291,456 bytes"): a larger body never reaches a
# real endpoint, so the local server answers it with a 413.
MAX_REQUEST_BYTES = 6_291_456
# SageMaker real-time: the container must answer /invocations within 60 s (fact sheet §6). Async requests may run for
# up to an hour (the InvokeEndpointAsync invocation timeout's ceiling).
REALTIME_REQUEST_TIMEOUT_S = 60
ASYNC_REQUEST_TIMEOUT_S = 3600
# Prompts in one request, and beams per prompt: each multiplies the KV cache; beyond these a request is refused
# rather than left to exhaust memory.
MAX_INPUTS = 256
MAX_BEAMS = 16
# Characters one token can stand for at most, for a handler without a tokenizer (FasterTransformer): a prompt longer
# than max_sequence_length x this cannot fit and is refused without tokenizing it.
CHARS_PER_TOKEN_CEILING = 32
_SEED_MAX = 2**63 - 1

# request parameter -> (lowest, highest, whether the lowest itself is refused); highest None: max_sequence_length.
_BOUNDS: dict[str, tuple[int | float, int | float | None, bool]] = {
    "max_new_tokens": (1, None, False),
    "max_length": (1, None, False),
    "min_new_tokens": (0, None, False),
    "min_length": (0, None, False),
    "no_repeat_ngram_size": (0, None, False),
    "num_beams": (1, MAX_BEAMS, False),
    "top_k": (0, 1_000_000, False),
    "top_p": (0, 1, True),
    "temperature": (0, 100, False),  # 0 is greedy; with do_sample it is refused (see the handler's cross checks)
    "repetition_penalty": (0, 100, True),
    "presence_penalty": (-100, 100, False),
    "length_penalty": (-100, 100, False),
    "diversity_rate": (0, 100, False),
    "seed": (0, _SEED_MAX, False),
}


def parameter_bounds(parameters: list[str], max_sequence_length: int) -> dict[str, list[int | float]]:
    """``[lowest, highest]`` of each request parameter a handler accepts that has a range (booleans have none)."""
    bounds: dict[str, list[int | float]] = {}
    for name in parameters:
        if name in _BOUNDS:
            low, high, _ = _BOUNDS[name]
            bounds[name] = [low, max_sequence_length if high is None else high]
    return bounds


def lowest_excluded(parameters: list[str]) -> list[str]:
    """The parameters whose lowest value is itself refused (``top_p`` 0, ``repetition_penalty`` 0)."""
    return [name for name in parameters if name in _BOUNDS and _BOUNDS[name][2]]


def default_request_timeout(asynchronous: bool) -> int:
    """Seconds a request may run when the deployment does not say: what SageMaker itself allows the invocation."""
    return ASYNC_REQUEST_TIMEOUT_S if asynchronous else REALTIME_REQUEST_TIMEOUT_S
