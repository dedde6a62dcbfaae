"""How the weights reach the container: partitioned ahead of time, or placed by SageMaker (ModelDataSource)."""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy import containers
from lmi_deploy.containers import ENGINES, Engine
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View
from lmi_deploy.runtime.versions import S3_WEIGHTS_DOWNLOAD, STREAM_CONTENT, Release


def partition_problems(engine: Engine, version: str) -> list[tuple[str, str]]:
    """(rule id, message) of what keeps lmi-deploy from partitioning this engine and version ahead of time; used
    by validation (``partitioned=true``) and by the partition job (``lmi_deploy.partition``)."""
    if engine not in containers.PARTITIONABLE:
        offered = containers.PARTITIONABLE
        names = f"{', '.join(e.value for e in offered[:-1])} and {offered[-1].value}"
        return [
            (
                "LMI901",
                f"ahead-of-time partitioning (partitioned=true) is offered for {names} only; {engine.value} builds its "
                "engine when the container starts (the startup timeout includes it): set partitioned=false",
            )
        ]
    problem = ENGINES[engine].partition_problem(version)
    return [("LMI902", problem)] if problem else []


@rule(
    "LMI901",
    title="partitioned=true for an engine lmi-deploy does not partition",
    why="The endpoint would load a partitioned/ prefix that the partition job never fills.",
    fix="Set partitioned=false (the engine builds at startup), or use FasterTransformer, DeepSpeed or TensorRT-LLM.",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "partitioned": "true"}),
    needs=("config",),
    gate=True,
)
def partitionable_engine(view: View, derived: Derived) -> Iterator[str]:
    if view.partitioned:
        yield from (m for rule_id, m in partition_problems(view.config.engine, view.version) if rule_id == "LMI901")


@rule(
    "LMI902",
    title="partitioned=true with TensorRT-LLM before 0.26.0",
    why="The 0.25.0 image has no trt_llm_partition.py, so the partition job cannot run and the endpoint would point at "
    "a prefix that is never filled.",
    fix="Use lmi_version 0.26.0 or later, or partitioned=false.",
    example=Example(
        settings={
            "engine": "tensorrt-llm",
            "lmi_version": "0.25.0",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "partitioned": "true",
        }
    ),
    needs=("config",),
    gate=True,
)
def trt_llm_partition_version(view: View, derived: Derived) -> Iterator[str]:
    if view.partitioned:
        yield from (m for rule_id, m in partition_problems(view.config.engine, view.version) if rule_id == "LMI902")


@rule(
    "LMI903",
    title="weights_delivery=sagemaker before 0.27.0",
    why="SageMaker-placed weights need the settings as OPTION_* environment variables, which set the engine only "
    "from LMI 0.27.0.",
    fix="Use weights_delivery=container, or lmi_version 0.27.0 or later.",
    example=Example(
        settings={
            "engine": "vllm",
            "lmi_version": "0.26.0",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "weights_delivery": "sagemaker",
        }
    ),
    needs=("config",),
    gate=True,
)
def sagemaker_delivery_version(view: View, derived: Derived) -> Iterator[str]:
    if view.weights_delivery == "sagemaker" and not view.at_least("0.27.0"):
        yield (
            "weights_delivery=sagemaker configures the container through OPTION_* environment variables, which set "
            f"the engine only from LMI 0.27.0 (this is {view.version}): use weights_delivery=container, or "
            "lmi_version 0.27.0 or later"
        )


@rule(
    "LMI904",
    title="weights_delivery=sagemaker with a custom handler",
    why="SageMaker places only the weights under /opt/ml/model, so a rendered model.py cannot ship with them.",
    fix="Use handler=builtin, or weights_delivery=container.",
    example=Example(settings={"engine": "accelerate", "weights_delivery": "sagemaker", "handler": "custom"}),
    needs=("config",),
    gate=True,
)
def sagemaker_delivery_builtin(view: View, derived: Derived) -> Iterator[str]:
    if view.weights_delivery == "sagemaker" and view.handler == "custom":
        yield (
            "weights_delivery=sagemaker places only the weights under /opt/ml/model, so a custom model.py cannot ship "
            "with them: use handler=builtin, or weights_delivery=container"
        )


@rule(
    "LMI905",
    title="A release that cannot load staged weights",
    why="LMI 0.19.0's server downloads nothing from S3 (no option.s3url, no s3:// model_id) and reads no OPTION_* "
    "variables, so the staged weights never reach the model.",
    fix=f"Use lmi_version {S3_WEIGHTS_DOWNLOAD.since} or later.",
    example=Example(settings={"engine": "accelerate", "lmi_version": "0.19.0", "model_id": "google/flan-t5-large"}),
    needs=("config",),
    gate=True,
)
def release_loads_staged_weights(view: View, derived: Derived) -> Iterator[str]:
    if not Release(view.version).has(S3_WEIGHTS_DOWNLOAD):
        yield (
            f"LMI {view.version} cannot load staged weights: its server downloads nothing from S3 (no option.s3url, "
            "no s3:// model_id) and reads no OPTION_* variables (weights_delivery=sagemaker); use lmi_version "
            f"{S3_WEIGHTS_DOWNLOAD.since} or later"
        )


@rule(
    "LMI906",
    title="lmi-deploy's Accelerate handler cannot stream before 0.22.1",
    why="Output.add_stream_content arrives in 0.22.1; earlier the handler is rendered without streaming.",
    fix="Use lmi_version 0.22.1 or later to stream.",
    example=Example(settings={"engine": "accelerate", "lmi_version": "0.21.0", "model_id": "google/flan-t5-large"}),
    level="warning",
    needs=("config",),
)
def accelerate_streaming_release(view: View, derived: Derived) -> Iterator[str]:
    config = view.config
    if (
        ENGINES[config.engine].handler_options
        and config.handler == "custom"
        and not Release(view.version).has(STREAM_CONTENT)
    ):
        yield (
            f"LMI {view.version} has no Output.add_stream_content (from {STREAM_CONTENT.since}): the handler is "
            'rendered without streaming and answers "stream": true with a 400 that says so'
        )
