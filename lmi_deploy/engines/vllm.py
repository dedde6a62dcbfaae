"""vLLM: the rolling-batch backend on the Python engine, 0.23.0 onward (the lmi image's default from 0.33)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from lmi_deploy.engines.base import Engine, ImageLine, ModelLenEngine, register
from lmi_deploy.rules.registry import Example, rule

if TYPE_CHECKING:
    from lmi_deploy.rules.derive import Derived
    from lmi_deploy.rules.view import View

SPEC = register(
    ModelLenEngine(
        engine=Engine.VLLM,
        images=(ImageLine("djl-deepspeed", "0.23.0", "0.27.0"), ImageLine("djl-lmi", "0.28.0")),
        server_engine="Python",
        builtin_entry_point=None,
        custom_template=None,
        rolling_batch="vllm",
        dtypes=("fp16", "bf16"),
        model_types=None,
        summary="rolling batch, 0.23.0 onward",
        handler_marks=("vllm",),
        rolling_batch_names=("vllm",),
        recognition_order=3,
        dtype_from_model=True,
        serves_lora=True,
        # djl_python.huggingface (rolling batch) and, from 0.33.0, vllm_async_service both build
        # HuggingFaceProperties(**properties), then VllmRbProperties(**properties) (from 0.26.0)
        properties_classes=("HuggingFaceProperties", "VllmRbProperties"),
    )
)


@rule(
    "LMI712",
    title="vLLM under engine=MPI",
    why="vLLM's rolling batch needs the Python engine ('Need python engine to start vLLM RollingBatcher', 0.26.0 "
    "on); from 0.33.0 rolling_batch=lmi-dist is rewritten to vllm, so an lmi-dist file under MPI fails the same way.",
    fix="Set engine=Python (and option.mpi_mode=false).",
    example=Example(
        properties="engine=MPI\noption.model_id=s3://bucket/llama/\noption.rolling_batch=vllm\n"
        "option.tensor_parallel_degree=1\noption.model_loading_timeout=1200\n",
        container="0.28.0",
    ),
    needs=("properties",),
    gate=True,
    concern="handlers",
)
def vllm_needs_python_engine(view: View, derived: Derived) -> Iterator[str]:
    vllm = view.rolling_batch == "vllm" or (view.rolling_batch == "lmi-dist" and view.at_least("0.33.0"))
    if vllm and view.server_engine == "MPI" and view.at_least("0.26.0"):
        rewritten = " (0.33.0 on rewrites lmi-dist to vllm)" if view.rolling_batch == "lmi-dist" else ""
        yield (
            f"option.rolling_batch={view.rolling_batch} under engine=MPI{rewritten}: vLLM needs the Python engine "
            "('Need python engine to start vLLM RollingBatcher'); set engine=Python"
        )
