"""Hugging Face Accelerate on the Python engine: lmi-deploy's own handler (``handler=custom``: static KV cache, CUDA
graphs, compile, fast load) or DJL's ``djl_python.huggingface``; every GPU container 0.19.0 onward."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from lmi_deploy.engines.base import Engine, EngineSpec, ImageLine, register
from lmi_deploy.rules.registry import Example, rule

if TYPE_CHECKING:
    from lmi_deploy.rules.derive import Derived
    from lmi_deploy.rules.view import View

# Options of lmi-deploy's own Accelerate handler: config field -> default. DJL hands every option.* key to the
# handler's properties, so these travel in serving.properties like the container's own keys.
HANDLER_OPTIONS: dict[str, bool | str] = {
    "kv_cache": "static",
    "cuda_graphs": True,
    "compile": True,
    "fuse_projections": True,
    "fast_load": True,
    "tp_all_reduce": "one_shot",
}

SPEC = register(
    EngineSpec(
        engine=Engine.ACCELERATE,
        images=(ImageLine("djl-deepspeed", "0.19.0", "0.27.0"), ImageLine("djl-lmi", "0.28.0")),
        server_engine="Python",
        builtin_entry_point="djl_python.huggingface",
        custom_template="accelerate_model.py.j2",
        rolling_batch=None,
        dtypes=("fp32", "fp16", "bf16"),
        model_types=None,
        summary="Hugging Face Accelerate on the Python engine, every GPU container 0.19.0-0.38.0",
        aliases=("huggingface", "hf-accelerate", "python"),
        encoder_decoder=True,
        multi_model=True,
        offloads_to_host=True,
        handler_options=HANDLER_OPTIONS,
        # djl_python.huggingface's initialize builds HuggingFaceProperties(**properties) (0.25.0 on)
        properties_classes=("HuggingFaceProperties",),
    )
)


@rule(
    "LMI702",
    title="Options of lmi-deploy's Accelerate handler on another handler",
    why="kv_cache, cuda_graphs, compile and fast_load tune lmi-deploy's own model.py; elsewhere they do nothing.",
    fix="Remove them, or use engine=Accelerate with handler=custom.",
    example=Example(settings={"engine": "vllm", "model_id": "meta-llama/Llama-2-7b-hf", "cuda_graphs": "true"}),
    needs=("config",),
    gate=True,
    concern="handlers",
)
def handler_options_apply(view: View, derived: Derived) -> Iterator[str]:
    config = view.config
    options = [name for name in HANDLER_OPTIONS if getattr(config, name, None) is not None]
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
    concern="handlers",
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
