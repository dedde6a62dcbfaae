"""Engine vs model family: which architectures each engine serves, by version."""

from __future__ import annotations

from collections.abc import Iterator

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
