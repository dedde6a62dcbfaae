"""DeepSpeed inference: kernel-injected tensor parallelism, in the djl-deepspeed images 0.19.0-0.27.0."""

from __future__ import annotations

from dataclasses import dataclass

from lmi_deploy import key_catalog
from lmi_deploy.engines.base import DECODER_TYPES, Engine, EngineSpec, ImageLine, Properties, Reads, register


@dataclass(frozen=True)
class DeepSpeed(EngineSpec):
    def unset_dtype(self, bf16_supported: bool, version: str) -> tuple[str, str]:
        return ("bf16", "the GPU supports bf16") if bf16_supported else ("fp16", "no bf16 on this GPU")

    def length_properties(
        self, sequence: int, batch: int | None, version: str, custom: bool, reads: Reads
    ) -> Properties:
        if custom or key_catalog.upstream_reads("option.max_tokens", version):  # not 0.19.0's
            return [("option.max_tokens", str(sequence))]
        return []

    def partitioned_properties(self) -> Properties:
        return [("option.checkpoint", "ds_inference_config.json")]  # written by save_mp_checkpoint_path

    def partition_command(self, tp: int, script: str, code_dir: str, output_dir: str) -> list[str]:
        return ["deepspeed", "--num_gpus", str(tp), script]


SPEC = register(
    DeepSpeed(
        engine=Engine.DEEPSPEED,
        images=(ImageLine("djl-deepspeed", "0.19.0", "0.27.0"),),
        server_engine="DeepSpeed",
        builtin_entry_point="djl_python.deepspeed",
        custom_template="deepspeed_model.py.j2",
        rolling_batch=None,
        dtypes=("fp16", "bf16", "fp32", "int8"),
        # kernel injection (what makes DeepSpeed TP fast) covers these decoder-only families
        model_types=DECODER_TYPES,
        summary="0.19.0-0.27.0",
        aliases=("ds",),
        partitionable=True,
        handler_marks=("deepspeed",),
        recognition_order=5,
    )
)
