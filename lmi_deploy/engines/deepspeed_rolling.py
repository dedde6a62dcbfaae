"""DeepSpeed rolling batch: DJL's ``DeepSpeedRollingBatch`` (requests join and leave a running batch) on DeepSpeed's
kernel-injected model, ``engine=DeepSpeed`` with ``option.rolling_batch=deepspeed``, in the djl-deepspeed images
0.25.0-0.27.0.

From djl-serving v0.25.0-v0.27.0: ``djl_python/deepspeed.py`` builds the rolling batch when rolling batch is on and
refuses a model without kernel injection (its ``OPTIMIZED_MODEL_TYPES``: the decoder LLMs below);
``properties_manager/ds_properties.py`` accepts ``rolling_batch`` auto or deepspeed under engine=DeepSpeed; the batch
holds ``option.max_rolling_batch_size`` sequences (default 4) of ``option.max_tokens`` tokens (default 1024); the dtype
defaults to bf16 where the GPU has it, else fp16. DJL's own integration tests serve gpt-neox-20b, open-llama-7b and
gpt2 this way. DeepSpeed left LMI with 0.28.0.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmi_deploy.engines.base import DECODER_TYPES, Engine, ImageLine, register
from lmi_deploy.engines.deepspeed import DeepSpeed


@dataclass(frozen=True)
class DeepSpeedRolling(DeepSpeed):
    """DeepSpeed's keys and dtype default (option.max_tokens sizes the batch's sequences), recognised by its
    rolling batch."""

    def recognises(self, entry_point: str, server_engine: str, rolling_batch: str) -> bool:
        return rolling_batch == "deepspeed" and (server_engine == "DeepSpeed" or "deepspeed" in entry_point)


SPEC = register(
    DeepSpeedRolling(
        engine=Engine.DEEPSPEED_ROLLING,
        images=(ImageLine("djl-deepspeed", "0.25.0", "0.27.0"),),
        server_engine="DeepSpeed",
        builtin_entry_point="djl_python.deepspeed",
        custom_template=None,
        rolling_batch="deepspeed",
        dtypes=("fp16", "bf16"),
        model_types=DECODER_TYPES,  # kernel injection: the rolling batch refuses any other model
        summary="DeepSpeed's rolling batch on engine=DeepSpeed, 0.25.0-0.27.0",
        aliases=("deepspeed-rolling-batch", "deepspeed_rolling", "ds-rolling"),
        rolling_batch_names=("deepspeed",),
        recognition_order=4,
    )
)
