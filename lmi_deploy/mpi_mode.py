"""Whether lmi-deploy's Accelerate handler runs tensor-parallel (``engine=MPI``), or spreads layers with device_map.

``tensor_parallel_degree > 1`` with ``engine=accelerate`` and ``handler=custom`` renders ``engine=MPI``: the LMI
server then starts ``mpirun -np <degree>`` per model copy, one process per GPU (djl-serving
``Connection.getPythonStartCmd``), and the handler splits every layer across them
(``lmi_deploy/handlers/tensor_parallel.py``, ``tp_shards.py``). From 0.30 the server sends requests to rank 0 alone
unless ``use_passive_workers=false`` (``PyProcess``: passive workers by default); every rank takes part in each token,
so lmi-deploy writes that key there. Where tensor parallelism cannot apply the handler keeps the ``engine=Python``
path that spreads whole layers over the GPUs with ``device_map`` (one GPU busy at a time), and validation says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmi_deploy import key_catalog
from lmi_deploy.engines.base import Engine, version_key
from lmi_deploy.handlers.tp_plans import PLANS

if TYPE_CHECKING:
    from lmi_deploy.model_facts import ModelFacts

MPI_ENGINE = "MPI"
PASSIVE_WORKERS_KEY = "use_passive_workers"
PASSIVE_WORKERS_SINCE = (0, 30, 0)
STREAM_REFUSAL = "tensor parallelism answers whole responses"


def fallback_reason(version: str | None, facts: ModelFacts | None, tp: int) -> str | None:
    """Why the Accelerate handler cannot run tensor-parallel at ``tp`` here (None: it can, or the model is unknown
    and the handler decides at load)."""
    if version is not None and MPI_ENGINE not in (key_catalog.allowed_values("engine", version) or ()):
        return f"LMI {version} has no MPI engine (from 0.23.0)"
    if facts is None:
        return None
    if facts.model_type not in PLANS:
        return f"model_type {facts.model_type!r} has no tensor-parallel plan ({', '.join(sorted(PLANS))})"
    for count, what in ((facts.attention_heads, "attention heads"), (facts.kv_heads, "key/value heads")):
        if count is not None and count % tp:
            return f"its {count} {what} do not split into {tp}"
    return None


def tensor_parallel_at(
    engine: Engine | None, handler: str | None, tp: int | None, version: str, facts: ModelFacts | None
) -> bool:
    """Whether lmi-deploy's Accelerate handler runs tensor-parallel under ``engine=MPI`` with these settings."""
    if engine is not Engine.ACCELERATE or handler != "custom" or tp is None or tp <= 1:
        return False
    return fallback_reason(version, facts, tp) is None


def server_entries(version: str) -> list[tuple[str, str]]:
    """The serving.properties keys MPI mode adds after ``engine``: the active-workers switch where it exists."""
    return [(PASSIVE_WORKERS_KEY, "false")] if version_key(version) >= PASSIVE_WORKERS_SINCE else []
