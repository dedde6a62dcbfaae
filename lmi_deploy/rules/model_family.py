"""Engine vs model family: which architectures each engine serves, by version, and for which option.task."""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy import task_heads
from lmi_deploy.engines.base import version_key
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


# djl_python.huggingface reads config.json with AutoConfig before it starts a vLLM or lmi-dist rolling batch up to
# 0.29.0; from 0.30.0 the rolling batch's engine (vLLM, or lmi-dist's fork of it) reads it: with AutoConfig, except
# for the model types vLLM registers its own config class for. vLLM 0.6 (0.30.0-0.31.0; lmi-dist up to 0.32.0)
# registers only families whose config.json ships auto_map (chatglm, jais, exaone, internvl_chat, RefinedWeb, ...) or
# that transformers 4.45 knows; vLLM 0.7.3 (0.32.0) runs in a virtualenv whose pip lifts transformers past the pin;
# vLLM 0.8 on (0.33.0) registers families before transformers has them (qwen3_next in vLLM 0.10.2 on 0.34.0).
_HANDLER_READS_RB_CONFIG_UNTIL = "0.30.0"
_RB_UNTIL = {"vLLM": "0.32.0", "lmi-dist": "0.33.0"}


def _rolling_batch_reader(view: View, engine: str) -> str | None:
    if not view.at_least(_HANDLER_READS_RB_CONFIG_UNTIL):
        return f"djl_python.huggingface (before it starts the {engine} rolling batch)"
    own_code = view.facts is not None and bool(view.facts.auto_classes)
    if own_code or view.at_least(_RB_UNTIL[engine]):
        return None
    return f"{engine}'s engine (vLLM's get_config)"


def _config_reader(view: View) -> str | None:
    """What reads config.json with the transformers of the release's GPU image (None: nothing known to)."""
    if view.engine is None or any(name in view.image_tag for name in _OTHER_IMAGES):
        return None
    if view.handler == "custom":  # lmi-deploy's model.py runs with the container's transformers; a user's: unknown
        return "lmi-deploy's model.py" if view.source == "deployment" else None
    engine, module = view.engine.value, view.handler_module()
    if module not in (None, "djl_python.huggingface", "djl_python.deepspeed"):
        return None
    if engine in ("DeepSpeed", "DeepSpeed-rolling"):
        return "djl_python.deepspeed"
    if engine == "Accelerate":
        return "djl_python.huggingface"
    return _rolling_batch_reader(view, engine) if engine in _RB_UNTIL else None


def _release_fix(view: View, model_type: str) -> str:
    first = task_heads.first_release_knowing(model_type)
    if first is None:
        return f"no LMI release that pins transformers knows {model_type}"
    key = "lmi_version" if view.source == "deployment" else "the container"
    release = f"{key} {first[0]} or later (transformers {first[1]})"
    spec = view.spec
    last = spec.images[-1].last if spec is not None else None
    if spec is not None and last is not None and version_key(last) < version_key(first[0]):
        return f"{spec.engine.value} ends at LMI {last}: use another engine (Accelerate or vLLM) with {release}"
    return f"use {release}"


@rule(
    "LMI106",
    title="The release's transformers does not know the model's model_type",
    why="djl_python.huggingface (Accelerate; vLLM and lmi-dist up to 0.29.0, whose config.json it reads before "
    "starting the rolling batch), djl_python.deepspeed, lmi-deploy's own model.py, and from 0.30.0 the vLLM "
    "(0.30.0-0.31.0) and lmi-dist (0.30.0-0.32.0) engines load config.json with transformers' AutoConfig at the "
    "version the release's image pins; a model_type newer than that fails at load "
    "('The checkpoint you are trying to load has model type `qwen2` but Transformers does not recognize this "
    "architecture') and the endpoint never gets InService. A model whose config.json ships its own config class "
    "(auto_map) loads with option.trust_remote_code=true. Releases that install a range of transformers versions "
    "(0.36.0 on, and vLLM's virtualenv on 0.32.0), FasterTransformer, TensorRT-LLM and NeuronX (other images, other "
    "transformers), vLLM from 0.33.0 (it registers config classes of its own for families transformers lacks) and, "
    "from 0.30.0, a vLLM or lmi-dist model whose config.json ships auto_map are not checked.",
    fix="Use the first LMI release whose transformers knows the model_type (the message names it), or set "
    "option.trust_remote_code=true where config.json's auto_map ships the model's code.",
    example=Example(settings={"engine": "vllm", "model_id": "Qwen/Qwen3-4B", "lmi_version": "0.28.0"}),
)
def model_type_known(view: View, derived: Derived) -> Iterator[str]:
    facts, model_type = view.facts, view.model_type
    if facts is None or facts.estimated or not model_type:
        return
    tables = task_heads.transformers_of(view.version)
    reader = _config_reader(view)
    if tables is None or reader is None or tables.knows(model_type):
        return
    remote = view.written("option.trust_remote_code")
    if facts.auto_classes and (remote or "").strip().lower() == "true":
        return  # config.json's auto_map brings the config class
    key = (
        "option.trust_remote_code=true"
        if view.source == "serving.properties"
        else "extra_properties option.trust_remote_code: 'true'"
    )
    ships_code = f", or set {key} (config.json's auto_map ships its code)"
    yield (
        f"model_type={model_type!r} is unknown to transformers {tables.version}, which the LMI {view.version} image "
        f"pins: {reader} reads config.json with AutoConfig and fails at load ('Transformers does not recognize "
        f"this architecture'); {_release_fix(view, model_type)}{ships_code if facts.auto_classes else ''}"
    )
