"""Versions and handler names: which handler module, engine= value and rolling-batch value each release reads.

Facts from djl-serving's source at each release's ``X.Y.Z-dlc`` branch: ``PyModel.java`` picks the default
entryPoint (DeepSpeed engine -> djl_python.deepspeed up to 0.27; a Neuron device -> transformers_neuronx, hyphenated
before 0.24; rolling_batch=trtllm (0.25-0.26) or the TensorRT-LLM container (0.27+) -> tensorrt_llm; else
djl_python.huggingface), and ``huggingface.get_rolling_batch_class_from_str`` accepts only auto, scheduler,
lmi-dist and vllm ("Invalid rolling batch type").
"""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy import containers
from lmi_deploy.containers import ENGINES
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View, server_disables_rolling_batch

HUGGINGFACE_ROLLING_BATCH = ("auto", "scheduler", "lmi-dist", "vllm", "disable")


@rule(
    "LMI701",
    title="handler=custom for an engine without a custom handler",
    why="Rolling-batch and compiled engines serve through their built-in handler; lmi-deploy has no model.py for them.",
    fix="Use handler=builtin.",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "handler": "custom"}),
    needs=("config",),
    gate=True,
)
def custom_handler_offered(view: View, derived: Derived) -> Iterator[str]:
    spec = ENGINES[view.config.engine]
    if view.handler == "custom" and spec.custom_template is None:
        yield (
            f"handler=custom is not offered for {spec.engine.value}: its container serves the model through the "
            "built-in rolling-batch/compiled handler; use handler=builtin"
        )


@rule(
    "LMI705",
    title="A handler module this release does not ship",
    why="djl_python.deepspeed left with 0.28.0 and djl_python.fastertransformer ships only in 0.21.0-0.24.0; naming "
    "a module the container lacks fails at load.",
    fix="Use a container version that ships the handler, or another engine (vLLM, lmi-dist).",
    example=Example(
        properties="engine=Python\noption.entryPoint=djl_python.deepspeed\noption.model_id=s3://bucket/gpt-j/\n"
        "option.model_loading_timeout=1200\n",
        container="0.28.0",
    ),
)
def handler_module_shipped(view: View, derived: Derived) -> Iterator[str]:
    entry = view.entry_point or ""
    if entry == "djl_python.deepspeed" and view.at_least("0.28.0"):
        yield (
            f"option.entryPoint={entry}: DeepSpeed left LMI with 0.28.0; use a container <= 0.27.0, or vLLM/lmi-dist"
        )
    if entry == "djl_python.fastertransformer" and not (view.at_least("0.21.0") and not view.at_least("0.25.0")):
        yield f"option.entryPoint={entry}: FasterTransformer ships only in 0.21.0-0.24.0; use one of those containers"


@rule(
    "LMI706",
    title="engine= value this release does not know",
    why="The server refuses to load a model whose engine it has no provider for.",
    fix="Use one of the engines the message lists for the version.",
    example=Example(
        properties="engine=DeepSpeed\noption.model_id=s3://bucket/gpt-j/\noption.model_loading_timeout=1200\n",
        container="0.28.0",
    ),
    needs=("properties",),
    gate=True,
)
def server_engine_known(view: View, derived: Derived) -> Iterator[str]:
    known = containers.server_engines(view.version)
    if view.server_engine is not None and view.server_engine not in known:
        yield f"engine={view.server_engine}: LMI {view.version} knows engine {', '.join(known)}"


@rule(
    "LMI707",
    title="option.rolling_batch value this release does not accept",
    why="The release's RollingBatchEnum refuses other values and the model fails to load.",
    fix="Use one of the values the message lists, or a release that has yours.",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/llama/\noption.rolling_batch=scheduler\n"
        "option.model_loading_timeout=1200\n",
        container="0.33.0",
    ),
    needs=("properties",),
    gate=True,
)
def rolling_batch_value_known(view: View, derived: Derived) -> Iterator[str]:
    allowed = containers.rolling_batch_values(view.version)
    if view.rolling_batch is not None and view.rolling_batch not in allowed:
        accepts = ", ".join(allowed) if allowed else "no option.rolling_batch (it arrived in 0.23.0)"
        yield f"option.rolling_batch={view.rolling_batch}: LMI {view.version} accepts {accepts}"


@rule(
    "LMI708",
    title="option.rolling_batch=disable on 0.23-0.26",
    why="Those releases turn rolling batch on whenever the key is present, even as 'disable'.",
    fix="Delete the line instead of writing disable.",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/llama/\noption.rolling_batch=disable\n"
        "option.model_loading_timeout=1200\n",
        container="0.26.0",
    ),
    needs=("properties",),
    gate=True,
)
def rolling_batch_disable_present(view: View, derived: Derived) -> Iterator[str]:
    if view.rolling_batch == "disable" and containers.rolling_batch_present_means_on(view.version):
        yield (
            f"option.rolling_batch=disable: on LMI {view.version} the key's presence turns rolling batch ON even as "
            "'disable'; delete the line instead"
        )


@rule(
    "LMI709",
    title="A rolling-batch backend the chosen handler does not have",
    why="djl_python.huggingface (engine=Python or MPI) builds only auto, scheduler, lmi-dist and vllm rolling "
    "batches; rolling_batch=deepspeed needs engine=DeepSpeed, trtllm the TensorRT-LLM container, tnx the NeuronX one. "
    "Otherwise the model fails with 'Invalid rolling batch type'.",
    fix="Use the engine or container the value belongs to, or a value the handler builds.",
    example=Example(
        properties="engine=MPI\noption.model_id=s3://bucket/llama-2-7b/\noption.rolling_batch=deepspeed\n"
        "option.tensor_parallel_degree=4\noption.model_loading_timeout=1200\n",
        container="0.26.0",
    ),
    needs=("properties",),
    gate=True,
)
def rolling_batch_fits_handler(view: View, derived: Derived) -> Iterator[str]:
    value = view.rolling_batch
    allowed = containers.rolling_batch_values(view.version)
    if value is None or value not in allowed:
        return
    if value == "deepspeed" and view.server_engine != "DeepSpeed":
        yield (
            f"option.rolling_batch=deepspeed under engine={view.server_engine or 'Python'}: only engine=DeepSpeed "
            "serves it (elsewhere the container answers 'Invalid rolling batch type: deepspeed'); set engine=DeepSpeed"
        )
    elif view.handler_module() == "djl_python.huggingface" and value not in HUGGINGFACE_ROLLING_BATCH:
        owner = {"deepspeed": "engine=DeepSpeed", "trtllm": "the TensorRT-LLM container", "tnx": "a NeuronX container"}
        yield (
            f"option.rolling_batch={value} under engine={view.server_engine or 'Python'} runs djl_python.huggingface, "
            f"which refuses it ('Invalid rolling batch type: {value}'): it needs "
            f"{owner.get(value, 'another handler')}; "
            f"or use one of {', '.join(v for v in HUGGINGFACE_ROLLING_BATCH if v in allowed)}"
        )


def _rolling_batch_off(view: View) -> bool:
    """Whether the handler's properties see rolling_batch=disable: from 0.28.0 the server writes disable itself when
    ``batch_size`` > 1 (``LmiConfigRecommender.setRollingBatch``, which 0.27.0 runs only when it infers the engine);
    up to 0.32 the properties class defaults to disable when the key is unset (0.25-0.26 read a present key as on:
    LMI708)."""
    if server_disables_rolling_batch(view.values, view.version):
        return True
    if view.rolling_batch is None:
        return not view.at_least("0.28.0")
    return view.rolling_batch == "disable" and view.at_least("0.27.0")


@rule(
    "LMI715",
    title="Streaming with dynamic batching (batch_size > 1) and no rolling batch",
    why="From 0.25.0 the Hugging Face and DeepSpeed handlers' properties refuse to stream a dynamic batch: the model "
    "fails to load with 'We cannot enable streaming for dynamic batching'. From 0.28.0 the server itself turns "
    "rolling batch off whenever batch_size > 1.",
    fix="Stream with a rolling batch instead (drop batch_size, set option.rolling_batch and "
    "option.max_rolling_batch_size), or keep batch_size and set option.enable_streaming=false.",
    example=Example(
        properties="engine=Python\noption.entryPoint=djl_python.huggingface\noption.model_id=s3://bucket/llama/\n"
        "option.rolling_batch=disable\nbatch_size=4\noption.enable_streaming=true\n"
        "option.model_loading_timeout=1200\n",
        container="0.31.0",
    ),
    needs=("properties",),
)
def streaming_dynamic_batch(view: View, derived: Derived) -> Iterator[str]:
    streaming = view.values.get("option.enable_streaming", "false").strip().lower()
    handler = view.handler_module()
    if (
        not view.at_least("0.25.0")
        or view.handler == "custom"
        or handler not in ("djl_python.huggingface", "djl_python.deepspeed")
        or streaming in ("false", "")
        or view.dynamic_batch() <= 1
        or not _rolling_batch_off(view)
    ):
        return
    yield (
        f"option.enable_streaming={streaming} with batch_size={view.dynamic_batch()} and no rolling batch: "
        f"{handler} on LMI {view.version} refuses it ('We cannot enable streaming for dynamic batching'); stream "
        "with a rolling batch (drop batch_size, set option.rolling_batch and option.max_rolling_batch_size), "
        "or set option.enable_streaming=false"
    )


@rule(
    "LMI717",
    title="A rolling batch the server turns off because batch_size > 1",
    why="From 0.28.0 (0.27.0 when the file has no engine=) the server's LmiConfigRecommender.setRollingBatch writes "
    "option.rolling_batch=disable whenever batch_size is above 1, before it looks at the file's value ('If dynamic "
    "batch is enabled, we don't enable rolling batch'): the rolling batch asked for never runs, and the handler "
    "serves padded dynamic batches instead (no paged KV cache, no continuous batching).",
    fix="Remove batch_size to keep the rolling batch (size it with option.max_rolling_batch_size), or remove "
    "option.rolling_batch to say that dynamic batching is meant.",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/llama/\noption.rolling_batch=vllm\nbatch_size=8\n"
        "option.model_loading_timeout=1200\n",
        container="0.30.0",
    ),
    level="warning",
    needs=("properties",),
)
def rolling_batch_turned_off(view: View, derived: Derived) -> Iterator[str]:
    asked = view.rolling_batch
    if (
        asked is None
        or asked == "disable"
        or view.handler == "custom"
        or "async_service" in (view.entry_point or "")  # the async services page their own KV cache
        or not server_disables_rolling_batch(view.values, view.version)
    ):
        return
    size = view.values["batch_size"].strip()
    yield (
        f"option.rolling_batch={asked} with batch_size={size}: on LMI {view.version} the server writes "
        "option.rolling_batch=disable whenever batch_size > 1, so no rolling batch runs and requests are served in "
        f"dynamic batches of up to {size}; remove batch_size to keep the rolling batch (size it with "
        "option.max_rolling_batch_size), or remove option.rolling_batch"
    )
