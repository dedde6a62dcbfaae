"""Engine vs model family: which architectures each engine serves, by version, and for which option.task."""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy import task_heads
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View


@rule(
    "LMI101",
    title="The engine serves a fixed list of families and the model's is unknown",
    why="FasterTransformer, DeepSpeed and NeuronX convert only the architectures they implement; an unknown one may "
    "fail at load, after the instance is paid for.",
    fix="Set model_config to the model's config.json, or model_type to its model_type.",
    example=Example(settings={"engine": "deepspeed", "model_id": "acme/secret-model", "lmi_version": "0.26.0"}),
    needs=("config",),
    gate=True,
)
def family_unknown(view: View, derived: Derived) -> Iterator[str]:
    spec = view.spec
    if spec is not None and spec.model_types is not None and not view.model_type:
        yield (
            f"cannot tell the architecture of model_id={view.model_id!r} from its name and found no config.json, "
            f"but {spec.engine.value} serves only {', '.join(spec.model_types)}: set model_config to its config.json, "
            "or model_type to its model_type"
        )


@rule(
    "LMI102",
    title="The engine does not serve this model family",
    why="The engine's loader refuses (or silently mis-serves) an architecture it does not implement.",
    fix="Pick an engine that serves the family (Accelerate and vLLM serve most models).",
    example=Example(settings={"engine": "deepspeed", "lmi_version": "0.26.0", "model_type": "mistral"}),
    needs=("config",),
    gate=True,
)
def family_not_served(view: View, derived: Derived) -> Iterator[str]:
    spec = view.spec
    if (
        spec is not None
        and spec.model_types is not None
        and view.model_type
        and view.model_type not in spec.model_types
    ):
        yield (
            f"model_type={view.model_type!r} is not supported by {spec.engine.value}; it serves "
            f"{', '.join(spec.model_types)}: pick another engine (Accelerate and vLLM serve most models)"
        )


@rule(
    "LMI103",
    title="Encoder-decoder (T5) model on an engine that serves decoder-only models",
    why="Rolling-batch and compiled engines load causal language models only; a T5 fails at load.",
    fix="Use engine=FasterTransformer (LMI 0.21-0.24) or engine=Accelerate.",
    example=Example(settings={"engine": "vllm"}),
    needs=("engine",),
    gate=True,
)
def encoder_decoder_not_served(view: View, derived: Derived) -> Iterator[str]:
    spec = view.spec  # an engine with a list of families refuses T5 through LMI102 already
    prebuilt_t5 = view.source == "serving.properties" and spec is not None and spec.compiles_at_startup
    if spec is not None and spec.model_types is None and view.is_t5 and not spec.encoder_decoder and not prebuilt_t5:
        yield (
            f"{view.model_id} is an encoder-decoder (T5) model, which {spec.engine.value} does not serve: use "
            "engine=FasterTransformer (LMI 0.21-0.24) or engine=Accelerate"
        )


# Keys that make djl_python.huggingface load the model itself and hand the object to pipeline(), which then does not
# pick the model class by task.
_OWN_LOADING = ("option.load_in_8bit", "option.load_in_4bit", "option.low_cpu_mem_usage", "option.quantize")
# Images whose handlers run with other transformers versions or read no option.task (FasterTransformer, NeuronX,
# TensorRT-LLM).
_OTHER_IMAGES = ("fastertransformer", "neuronx", "tensorrtllm")


def _heads(tables: task_heads.Transformers, model_type: str, tasks: dict[str, tuple[str, ...]]) -> str:
    """The tasks with a head class (not the bare ``AutoModel``) for the model type, for the message (at most five)."""
    fitting = sorted(
        task for task, classes in tasks.items() if any(c != "AutoModel" and tables.maps(c, model_type) for c in classes)
    )
    return ", ".join(fitting[:5]) if fitting else "none of them"


def _deepspeed_task(view: View, task: str, tables: task_heads.Transformers) -> Iterator[str]:
    tasks = task_heads.deepspeed_tasks(view.version)
    if tasks is None:
        return
    if task not in tasks:
        yield (
            f"option.task={task}: djl_python.deepspeed on LMI {view.version} serves only {', '.join(sorted(tasks))} "
            f"('task: {task} is not currently supported by DeepSpeed'); use one of them, or leave option.task out"
        )
        return
    model_type, auto_class = view.model_type, tasks[task]
    if tables.knows(model_type) and not tables.maps(auto_class, model_type):
        fitting = _heads(tables, model_type, {t: (c,) for t, c in tasks.items()})
        yield (
            f"option.task={task}: djl_python.deepspeed loads it with {auto_class}, and transformers "
            f"{tables.version} (LMI {view.version}) has no such head for model_type={model_type} ('Unrecognized "
            f"configuration class ... for this kind of AutoModel'); use a task it has a head for ({fitting}), "
            "or leave option.task out"
        )


def _pipeline_task(view: View, task: str, tables: task_heads.Transformers) -> Iterator[str]:
    resolved = tables.pipeline_task(task)
    if resolved is None:
        yield (
            f"option.task={task}: the pipeline of transformers {tables.version} (LMI {view.version}) knows no task "
            f"{task!r} ('Unknown task'); use a pipeline task such as text-generation, or leave option.task out"
        )
        return
    classes, model_type = tables.pipeline_classes(resolved), view.model_type
    if classes and tables.knows(model_type) and not any(tables.maps(c, model_type) for c in classes):
        every = {t: tables.pipeline_classes(t) for t in tables.pipeline_tasks()}
        yield (
            f"option.task={task}: transformers {tables.version}'s {resolved} pipeline (LMI {view.version}) loads "
            f"the model with {' or '.join(classes)}, and it has no such head for model_type={model_type}; use a "
            f"task it has a head for ({_heads(tables, model_type, every)}), or leave option.task out"
        )


@rule(
    "LMI105",
    title="option.task names a task the model's architecture has no head for",
    why="djl_python.deepspeed loads the model with the AutoModel class of its task, and djl_python.huggingface "
    "(without rolling batch or streaming) builds transformers' pipeline for it; the transformers of the release's "
    "image refuses an architecture without that head ('Unrecognized configuration class LlamaConfig for this kind "
    "of AutoModel: AutoModelForQuestionAnswering'), and a task name the handler does not know.",
    fix="Set option.task to a task the architecture has a head for (text-generation for a causal language model), "
    "or leave it out: the handler infers it from the architecture.",
    example=Example(
        properties="engine=DeepSpeed\noption.model_id=s3://bucket/llama-2-7b-chat/\noption.task=question-answering\n"
        "option.dtype=fp16\noption.tensor_parallel_degree=1\noption.model_loading_timeout=1200\n",
        container="0.23.0",
        model_config={
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 768,
            "num_attention_heads": 12,
            "num_hidden_layers": 2,
            "intermediate_size": 2048,
            "vocab_size": 32000,
        },
    ),
    needs=("properties",),
)
def task_has_head(view: View, derived: Derived) -> Iterator[str]:
    task, facts = view.values.get("option.task", "").strip(), view.facts
    if not task or facts is None or facts.estimated or not view.model_type or view.handler == "custom":
        return
    tables = task_heads.transformers_of(view.version)
    if tables is None or any(name in view.image_tag for name in _OTHER_IMAGES):
        return
    remote = view.values.get("option.trust_remote_code", "").strip().lower() == "true" and facts.auto_classes
    if remote:
        return  # the model's own code may bring the head (config.json auto_map)
    handler = view.handler_module()
    if handler == "djl_python.deepspeed":
        yield from _deepspeed_task(view, task, tables)
    elif handler == "djl_python.huggingface" and not view.rolling and not _streams(view) and not _own_loading(view):
        yield from _pipeline_task(view, task, tables)


def _streams(view: View) -> bool:
    return view.values.get("option.enable_streaming", "false").strip().lower() not in ("false", "")


def _own_loading(view: View) -> bool:
    return any(view.values.get(key, "").strip().lower() not in ("", "false") for key in _OWN_LOADING)
