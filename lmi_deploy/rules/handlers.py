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
from lmi_deploy.containers import ENGINES, Engine
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View

HUGGINGFACE_ROLLING_BATCH = ("auto", "scheduler", "lmi-dist", "vllm", "disable")
_NEURONX_OLD, _NEURONX_NEW = "djl_python.transformers-neuronx", "djl_python.transformers_neuronx"


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
    "LMI702",
    title="Options of lmi-deploy's Accelerate handler on another handler",
    why="kv_cache, cuda_graphs, compile and fast_load tune lmi-deploy's own model.py; elsewhere they do nothing.",
    fix="Remove them, or use engine=Accelerate with handler=custom.",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "cuda_graphs": "true"}),
    needs=("config",),
    gate=True,
)
def handler_options_apply(view: View, derived: Derived) -> Iterator[str]:
    config = view.config
    options = [name for name in containers.HANDLER_OPTIONS if getattr(config, name, None) is not None]
    if options and (config.engine is not Engine.ACCELERATE or config.handler != "custom"):
        yield (
            f"{', '.join(options)} tune lmi-deploy's own Accelerate model.py, which this deployment does not use "
            f"({config.engine.value}, handler={config.handler}): remove them, or use engine=Accelerate with "
            "handler=custom"
        )


@rule(
    "LMI703",
    title="cuda_graphs, compile or fuse_projections without the static KV cache",
    why="They speed up the static-cache decode step; with kv_cache=dynamic there is none to speed up.",
    fix="Set kv_cache=static, or turn cuda_graphs/compile/fuse_projections off.",
    example=Example(settings={"engine": "accelerate", "kv_cache": "dynamic", "compile": "true"}),
    needs=("config",),
    gate=True,
)
def graphs_need_static_cache(view: View, derived: Derived) -> Iterator[str]:
    config = view.config
    if config.engine is Engine.ACCELERATE and config.handler == "custom" and config.kv_cache == "dynamic":
        for name in ("cuda_graphs", "compile", "fuse_projections"):
            if getattr(config, name):
                yield (
                    f"{name}=true speeds up the static-cache decode step, so it needs kv_cache=static: set "
                    f"kv_cache=static or {name}=false"
                )
                return


@rule(
    "LMI704",
    title="Transformers-NeuronX handler name of another version",
    why="The module was renamed from djl_python.transformers-neuronx to djl_python.transformers_neuronx in 0.24.0; "
    "the other name fails to import and the model never loads.",
    fix="Use djl_python.transformers_neuronx from 0.24.0, djl_python.transformers-neuronx before.",
    example=Example(
        properties="engine=Python\noption.entryPoint=djl_python.transformers-neuronx\n"
        "option.model_id=s3://bucket/llama-2-7b/\noption.tensor_parallel_degree=2\noption.model_loading_timeout=1200\n",
        container="0.26.0",
        instance_type="ml.inf2.8xlarge",
    ),
)
def neuronx_entry_point_name(view: View, derived: Derived) -> Iterator[str]:
    if view.entry_point == _NEURONX_OLD and view.at_least("0.24.0"):
        yield f"option.entryPoint={_NEURONX_OLD}: renamed {_NEURONX_NEW} in 0.24.0; use {_NEURONX_NEW}"
    elif view.entry_point == _NEURONX_NEW and not view.at_least("0.24.0"):
        yield f"option.entryPoint={_NEURONX_NEW}: before 0.24.0 it is {_NEURONX_OLD}; use {_NEURONX_OLD}"


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


def handler_module(view: View) -> str | None:
    """The handler module the server runs for this view: option.entryPoint, else the release's default (None: a
    custom model.py, or a file that leaves it to the server and its container)."""
    if view.entry_point:
        return view.entry_point
    if view.server_engine == "DeepSpeed" and not view.at_least("0.28.0"):
        return "djl_python.deepspeed"
    if view.engine is Engine.NEURONX:
        return _NEURONX_NEW if view.at_least("0.24.0") else _NEURONX_OLD
    if view.engine is Engine.TENSORRT_LLM:
        return "djl_python.tensorrt_llm"
    if view.engine is Engine.FASTER_TRANSFORMER:
        return "djl_python.fastertransformer"
    return "djl_python.huggingface" if view.source == "serving.properties" else None


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
    elif handler_module(view) == "djl_python.huggingface" and value not in HUGGINGFACE_ROLLING_BATCH:
        owner = {"deepspeed": "engine=DeepSpeed", "trtllm": "the TensorRT-LLM container", "tnx": "a NeuronX container"}
        yield (
            f"option.rolling_batch={value} under engine={view.server_engine or 'Python'} runs djl_python.huggingface, "
            f"which refuses it ('Invalid rolling batch type: {value}'): it needs "
            f"{owner.get(value, 'another handler')}; "
            f"or use one of {', '.join(v for v in HUGGINGFACE_ROLLING_BATCH if v in allowed)}"
        )


@rule(
    "LMI710",
    title="FasterTransformer 0.23.0-0.24.0 built-in handler ignores max_new_tokens for T5",
    why="The built-in handler of those releases always generates 200 tokens for T5 models.",
    fix="Use handler=custom (lmi-deploy's model.py).",
    example=Example(settings={"lmi_version": "0.24.0", "handler": "builtin"}),
    level="warning",
)
def ft_t5_builtin_bug(view: View, derived: Derived) -> Iterator[str]:
    builtin = handler_module(view) == "djl_python.fastertransformer" or view.handler == "builtin"
    if view.engine is Engine.FASTER_TRANSFORMER and builtin and view.is_t5 and view.version in ("0.23.0", "0.24.0"):
        yield (
            f"the built-in FasterTransformer handler of {view.version} ignores max_new_tokens for T5 (always 200): "
            "use handler=custom"
        )


@rule(
    "LMI711",
    title="FasterTransformer 0.23.0 answers a dynamic batch with the first request's output",
    why="The 0.23.0 built-in handler has a batch-offset bug.",
    fix="Prefer lmi_version 0.24.0.",
    example=Example(settings={"lmi_version": "0.23.0"}),
    level="warning",
)
def ft_023_batch_bug(view: View, derived: Derived) -> Iterator[str]:
    if view.engine is Engine.FASTER_TRANSFORMER and view.version == "0.23.0":
        yield (
            "FasterTransformer 0.23.0's built-in handler answers every request of a dynamic batch with the first "
            "one's output: prefer 0.24.0"
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
)
def vllm_needs_python_engine(view: View, derived: Derived) -> Iterator[str]:
    vllm = view.rolling_batch == "vllm" or (view.rolling_batch == "lmi-dist" and view.at_least("0.33.0"))
    if vllm and view.server_engine == "MPI" and view.at_least("0.26.0"):
        rewritten = " (0.33.0 on rewrites lmi-dist to vllm)" if view.rolling_batch == "lmi-dist" else ""
        yield (
            f"option.rolling_batch={view.rolling_batch} under engine=MPI{rewritten}: vLLM needs the Python engine "
            "('Need python engine to start vLLM RollingBatcher'); set engine=Python"
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
)
def trtllm_needs_its_image(view: View, derived: Derived) -> Iterator[str]:
    tag = view.image_tag
    if view.rolling_batch == "trtllm" and tag and "tensorrtllm" not in tag:
        yield (
            f"option.rolling_batch=trtllm on the {tag} image: only the TensorRT-LLM image (…-tensorrtllm…) ships "
            "TensorRT-LLM; use that image, or another rolling batch"
        )
