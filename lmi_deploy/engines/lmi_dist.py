"""lmi-dist: LMI's own rolling-batch backend under the MPI engine, 0.23.0-0.32.0 (vLLM took its place in 0.33)."""

from __future__ import annotations

from lmi_deploy.engines.base import Engine, ImageLine, ModelLenEngine, register

SPEC = register(
    ModelLenEngine(
        engine=Engine.LMI_DIST,
        images=(ImageLine("djl-deepspeed", "0.23.0", "0.27.0"), ImageLine("djl-lmi", "0.28.0", "0.32.0")),
        server_engine="MPI",
        builtin_entry_point=None,
        custom_template=None,
        rolling_batch="lmi-dist",
        dtypes=("fp16", "bf16"),
        model_types=None,
        summary="rolling batch, 0.23.0-0.32.0",
        aliases=("lmi_dist", "lmidist", "mpi"),
        # T5 too: 0.23's rolling_batch=auto picks lmi-dist for T5 under MPI; DJL tests flan-t5-xxl on it
        encoder_decoder=True,
        handler_marks=("lmi_dist",),
        rolling_batch_names=("lmi-dist",),
        recognition_order=4,
        dtype_from_model=True,
        serves_lora=True,
        # djl_python.huggingface builds HuggingFaceProperties(**properties) first (0.25.0 on); LmiDistRbProperties
        # is left out: from 0.33.0 the server rewrites rolling_batch=lmi-dist to vllm, which validates with vLLM's
        properties_classes=("HuggingFaceProperties",),
    )
)
