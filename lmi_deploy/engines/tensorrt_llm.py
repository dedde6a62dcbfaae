"""TensorRT-LLM: the model compiled into a TensorRT engine (at startup, or ahead of time from 0.26.0), rolling batch
``trtllm``, in the djl-tensorrtllm images 0.25.0-0.33.0."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmi_deploy.engines.base import Engine, EngineSpec, ImageLine, Properties, Reads, register, version_key
from lmi_deploy.rules.registry import Example, rule

if TYPE_CHECKING:
    from lmi_deploy.rules.derive import Derived
    from lmi_deploy.rules.view import View

PARTITION_SCRIPT = "/opt/djl/partition/trt_llm_partition.py"
PARTITION_FIRST = "0.26.0"  # trt_llm_partition.py arrives in the 0.26.0 image


def lengths(sequence: int, version: str, reads: Reads) -> Properties:
    """The length limits the TensorRT-LLM engine is built with, in the keys this release passes on.

    A quarter of the sequence for the output, the rest for the prompt. Up to 0.32 the tensorrt_llm_toolkit builds the
    engine from ``max_input_len`` and ``max_output_len``. From 0.33 the startup build (``trt_llm_partition.py``)
    turns each option into a ``--key value`` flag of TensorRT-LLM's build parser, which has ``--max_input_len`` and
    ``--max_seq_len`` (input + output) but no ``--max_output_len``: that key would be dropped and the engine built
    with the default limit, so the total goes in ``max_seq_len`` (also a field of 0.33's TensorRtLlmProperties).
    """
    output = sequence // 4
    limits = [("option.max_input_len", str(sequence - output))]
    if reads("option.max_seq_len", version):
        return [*limits, ("option.max_seq_len", str(sequence))]
    return [*limits, ("option.max_output_len", str(output))]


@dataclass(frozen=True)
class TensorRtLlm(EngineSpec):
    def implied_handler(self, version: str) -> str | None:
        return "djl_python.tensorrt_llm"

    def length_properties(
        self, sequence: int, batch: int | None, version: str, custom: bool, reads: Reads
    ) -> Properties:
        return lengths(sequence, version, reads)

    def partition_command(self, tp: int, script: str, code_dir: str, output_dir: str) -> list[str]:
        """The container's own compiler on our rendered serving.properties (the job's code input)."""
        return [
            "python3",
            PARTITION_SCRIPT,
            "--properties_dir",
            code_dir,
            "--trt_llm_model_repo",
            output_dir,
            "--tensor_parallel_degree",
            str(tp),
        ]

    def partition_problem(self, version: str) -> str | None:
        if version_key(version) >= version_key(PARTITION_FIRST):
            return None
        return (
            f"TensorRT-LLM ahead-of-time compilation (trt_llm_partition.py) needs lmi_version "
            f"{PARTITION_FIRST} or later (this is {version}): set lmi_version={PARTITION_FIRST} or "
            "later, or partitioned=false"
        )


SPEC = register(
    TensorRtLlm(
        engine=Engine.TENSORRT_LLM,
        images=(ImageLine("djl-tensorrtllm", "0.25.0", "0.33.0"),),
        server_engine="MPI",
        builtin_entry_point=None,
        custom_template=None,
        rolling_batch="trtllm",
        dtypes=("fp16", "bf16"),
        model_types=None,
        summary="0.25.0-0.33.0, no 0.31.0",
        aliases=("trtllm", "tensorrt_llm", "tensorrtllm", "trt-llm"),
        compiles_at_startup=True,
        compile_seconds=(120, 600),
        partitionable=True,
        partition_reads_properties=True,
        handler_marks=("tensorrt_llm", "trtllm"),
        rolling_batch_names=("trtllm",),
        recognition_order=2,
        dtype_from_model=True,
    )
)


@rule(
    "LMI713",
    title="rolling_batch=trtllm outside the TensorRT-LLM image",
    why="rolling_batch=trtllm makes the server convert the checkpoint with TensorRT-LLM, which only the tensorrtllm "
    "image ships; the other images' handlers have no trtllm rolling batch.",
    fix="Use the TensorRT-LLM image (…-tensorrtllm…), or another rolling batch.",
    example=Example(
        properties="engine=MPI\noption.model_id=s3://bucket/llama/\noption.rolling_batch=trtllm\n"
        "option.tensor_parallel_degree=4\noption.model_loading_timeout=1200\n",
        container="0.26.0-deepspeed0.12.6-cu121",
    ),
    needs=("properties",),
    gate=True,
    concern="handlers",
)
def trtllm_needs_its_image(view: View, derived: Derived) -> Iterator[str]:
    tag = view.image_tag
    if view.rolling_batch == "trtllm" and tag and "tensorrtllm" not in tag:
        yield (
            f"option.rolling_batch=trtllm on the {tag} image: only the TensorRT-LLM image (…-tensorrtllm…) ships "
            "TensorRT-LLM; use that image, or another rolling batch"
        )


TURING_DROPPED = (0, 14)  # TensorRT-LLM no longer supports the T4 from its 0.14 release (NVIDIA/TensorRT-LLM#2620)


def bundled_trtllm_version(view: View) -> tuple[int, ...] | None:
    """The TensorRT-LLM release inside this LMI image (``0.33.0-tensorrtllm0.21.0-cu128`` -> (0, 21, 0))."""
    from lmi_deploy import containers

    tag = view.image_tag
    if not tag:
        try:
            tag = containers.image_tag(Engine.TENSORRT_LLM, view.version)
        except KeyError:  # the engine does not ship in this release (another rule says so)
            return None
    _, marker, rest = tag.partition("tensorrtllm")
    numbers = rest.split("-")[0].split(".") if marker else []
    return tuple(int(n) for n in numbers) if numbers and all(n.isdigit() for n in numbers) else None


@rule(
    "LMI714",
    title="TensorRT-LLM 0.14 or later on a T4 (ml.g4dn)",
    why="TensorRT-LLM stopped supporting the T4 (Turing) from its 0.14 release (NVIDIA's maintainers in "
    "NVIDIA/TensorRT-LLM#2620); lmi_version 0.33.0 ships TensorRT-LLM 0.21, so its engine build fails on ml.g4dn.",
    fix="Use an Ampere or newer GPU (ml.g5, ml.g6, ml.g6e, ml.p4d, ml.p5), an LMI release whose TensorRT-LLM is "
    "older than 0.14 (0.32.0 ships 0.12), or engine vLLM.",
    example=Example(
        settings={
            "engine": "tensorrt-llm",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "lmi_version": "0.33.0",
            "instance_type": "ml.g4dn.12xlarge",
            "dtype": "fp16",
        },
    ),
    needs=("engine", "instance"),
    gate=True,
    concern="hardware",
)
def trtllm_without_turing(view: View, derived: Derived) -> Iterator[str]:
    if view.engine is not Engine.TENSORRT_LLM or view.instance is None or view.instance.accelerator != "T4":
        return
    bundled = bundled_trtllm_version(view)
    if bundled is not None and bundled >= TURING_DROPPED:
        release = ".".join(map(str, bundled))
        yield (
            f"TensorRT-LLM {release} (lmi_version {view.version}) does not support the T4 GPUs of "
            f"{view.instance.name} (dropped in 0.14): use an Ampere or newer instance (ml.g5, ml.g6, ml.g6e), "
            "lmi_version 0.32.0 (TensorRT-LLM 0.12), or engine vLLM"
        )
