"""Timeouts: SageMaker's download and startup health-check limits vs the load, and the model loading timeout."""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.estimates import SAGEMAKER_TIMEOUT_MAX_S
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View

_DEFAULT_LOADING = "the default is 240 s in code, 1200 s in the container, 1800 s in the docs"


def _timeouts(view: View, derived: Derived) -> list[tuple[str, int | str | None, int | None, int | None, str]]:
    """(name, as set, as derived, needed, how needed was derived) of SageMaker's two timeouts."""
    load = derived.load
    return [
        (
            "model_data_download_timeout",
            view.download_timeout,
            derived.download_timeout,
            load.download_s if load else None,
            load.how_download if load else "",
        ),
        (
            "container_startup_health_check_timeout",
            view.startup_timeout,
            derived.startup_timeout,
            load.startup_s if load else None,
            load.how_startup if load else "",
        ),
    ]


@rule(
    "LMI521",
    title="The load needs longer than SageMaker's longest timeout",
    why="SageMaker allows at most 3600 s for the download and for the startup health check; a load that needs more "
    "never becomes healthy.",
    fix="Stage partitioned/compiled weights ahead of time, or use a larger instance.",
    example=Example(
        settings={
            "engine": "neuronx",
            "model_id": "acme/llama-70b",
            "model_type": "llama",
            "instance_type": "ml.inf2.48xlarge",
            "dtype": "fp16",
        }
    ),
    needs=("config", "parameters"),
)
def auto_timeout_within_limit(view: View, derived: Derived) -> Iterator[str]:
    for name, asked, seconds, _, how in _timeouts(view, derived):
        if asked == "auto" and seconds is not None and seconds > SAGEMAKER_TIMEOUT_MAX_S:
            yield (
                f"{name}=auto needs {seconds} s ({how}), beyond SageMaker's {SAGEMAKER_TIMEOUT_MAX_S} s: stage "
                "partitioned/compiled weights ahead of time or use a larger instance"
            )


@rule(
    "LMI522",
    title="A timeout shorter than the load needs",
    why="SageMaker fails the endpoint when the download or the startup takes longer than its timeout.",
    fix="Raise the timeout to the value the message gives, or leave it as auto.",
    example=Example(
        settings={
            "engine": "tensorrt-llm",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "container_startup_health_check_timeout": "60",
        }
    ),
    needs=("config", "parameters"),
)
def timeout_long_enough(view: View, derived: Derived) -> Iterator[str]:
    for name, asked, seconds, needed, how in _timeouts(view, derived):
        if isinstance(asked, int) and needed and asked < needed:
            yield (
                f"{name}={seconds} is shorter than the {needed} s this load needs ({how}): raise it to at least "
                f"{min(needed, SAGEMAKER_TIMEOUT_MAX_S)}, or leave it as auto"
            )


@rule(
    "LMI523",
    title="model_loading_timeout longer than the startup health check",
    why="SageMaker fails the endpoint at the startup timeout, before DJL's own loading timeout is reached.",
    fix="Raise the startup timeout or lower the loading timeout.",
    example=Example(
        settings={
            "engine": "vllm",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "container_startup_health_check_timeout": "600",
            "model_loading_timeout": "900",
        }
    ),
)
def loading_within_startup(view: View, derived: Derived) -> Iterator[str]:
    loading, startup = derived.model_loading_timeout, derived.startup_timeout
    if loading is None or startup is None or loading <= min(startup, SAGEMAKER_TIMEOUT_MAX_S):
        return
    if view.source == "deployment":
        yield (
            f"model_loading_timeout={loading} exceeds container_startup_health_check_timeout={startup}: SageMaker "
            "would fail the endpoint before the model loads; raise the startup timeout or lower the loading timeout"
        )
    else:
        yield (
            f"option.model_loading_timeout={loading} exceeds the startup health-check timeout {startup}: the "
            "endpoint fails before the model loads; raise the startup timeout or lower option.model_loading_timeout"
        )


@rule(
    "LMI524",
    title="option.model_loading_timeout unset",
    why=f"Its default differs by layer ({_DEFAULT_LOADING}), so the effective limit is a guess.",
    fix="Write option.model_loading_timeout explicitly.",
    example=Example(properties="engine=Python\noption.model_id=s3://bucket/model/\n", container="0.28.0"),
    level="warning",
    needs=("properties",),
)
def loading_timeout_explicit(view: View, derived: Derived) -> Iterator[str]:
    if "option.model_loading_timeout" not in view.values:
        yield f"option.model_loading_timeout is not set: {_DEFAULT_LOADING}; write it explicitly"


@rule(
    "LMI525",
    title="option.model_loading_timeout below the estimated load time",
    why="DJL gives up loading at this timeout; the estimate assumes conservative disk and compile throughputs.",
    fix="Raise option.model_loading_timeout to the estimate, if the load is as slow as assumed.",
    example=Example(
        properties="engine=MPI\noption.model_id=s3://bucket/llama-2-7b/\noption.rolling_batch=trtllm\n"
        "option.tensor_parallel_degree=4\noption.model_loading_timeout=120\n",
        container="0.26.0",
        model_config={
            "model_type": "llama",
            "hidden_size": 4096,
            "num_attention_heads": 32,
            "num_hidden_layers": 32,
            "intermediate_size": 11008,
            "vocab_size": 32000,
            "torch_dtype": "float16",
        },
    ),
    level="warning",
    needs=("properties", "parameters"),
)
def loading_timeout_covers_estimate(view: View, derived: Derived) -> Iterator[str]:
    loading, load = derived.model_loading_timeout, derived.load
    if loading is not None and load is not None and loading < load.startup_s:
        yield (
            f"option.model_loading_timeout={loading} is below the estimated {load.startup_s} s load "
            f"({load.how_startup}); raise it if the load is that slow"
        )
