"""Transformers-NeuronX on AWS Inferentia2 / Trainium (inf2, trn1), in the djl-neuronx images 0.22.1-0.29.0."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmi_deploy.engines.base import Engine, EngineSpec, ImageLine, Properties, Reads, register, version_key
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import server_disables_rolling_batch

if TYPE_CHECKING:
    from lmi_deploy.rules.derive import Derived
    from lmi_deploy.rules.view import View

OLD_HANDLER, NEW_HANDLER = "djl_python.transformers-neuronx", "djl_python.transformers_neuronx"
RENAMED_IN = "0.24.0"  # the handler module (hyphen -> underscore); also where bf16 and Llama/NeoX/BLOOM arrive


@dataclass(frozen=True)
class NeuronX(EngineSpec):
    def entry_point(self, version: str) -> str | None:
        return NEW_HANDLER if version_key(version) >= version_key(RENAMED_IN) else OLD_HANDLER

    def implied_handler(self, version: str) -> str | None:
        return self.entry_point(version)

    def unset_dtype(self, bf16_supported: bool, version: str) -> tuple[str, str]:
        return ("fp16" if version_key(version) >= version_key(RENAMED_IN) else "fp32"), "the handler's default"

    def length_properties(
        self, sequence: int, batch: int | None, version: str, custom: bool, reads: Reads
    ) -> Properties:
        return [("option.n_positions", str(sequence)), *([("batch_size", str(batch))] if batch else [])]


SPEC = register(
    NeuronX(
        engine=Engine.NEURONX,
        images=(ImageLine("djl-neuronx", "0.22.1", "0.29.0"),),
        server_engine="Python",
        builtin_entry_point=NEW_HANDLER,  # OLD_HANDLER before 0.24.0 (entry_point)
        custom_template=None,
        rolling_batch=None,
        dtypes=("fp32", "fp16", "bf16"),
        model_types=("opt", "gpt2", "gptj", "gpt_neox", "llama", "bloom"),
        summary="Transformers-NeuronX on inf2/trn1, 0.22.1-0.29.0",
        aliases=("transformers-neuronx", "transformers_neuronx", "neuron"),
        neuron=True,
        compiles_at_startup=True,
        compile_seconds=(180, 900),
        handler_marks=("neuronx",),
        rolling_batch_names=("tnx",),
        recognition_order=0,
        splits_any_core_count=True,
    )
)


@rule(
    "LMI104",
    title="NeuronX before 0.24.0 serves only OPT, GPT-2 and GPT-J",
    why="LMI 0.22.1-0.23.0's Transformers-NeuronX handler has no Llama, GPT-NeoX or BLOOM support.",
    fix="Set lmi_version=0.24.0 or later.",
    example=Example(
        settings={
            "engine": "neuronx",
            "lmi_version": "0.23.0",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "instance_type": "ml.inf2.24xlarge",
        }
    ),
    needs=("engine",),
    gate=True,
    concern="model_family",
)
def neuronx_early_families(view: View, derived: Derived) -> Iterator[str]:
    unknown_in_file = view.source == "serving.properties" and not view.model_type  # nothing to check it against
    early = view.engine is Engine.NEURONX and not view.at_least("0.24.0") and not unknown_in_file
    if early and view.model_type not in ("opt", "gpt2", "gptj"):
        yield (
            f"model_type={view.model_type!r} needs NeuronX from 0.24.0 (0.22.1-0.23.0 serve opt, gpt2, gptj): "
            "set lmi_version=0.24.0 or later"
        )


@rule(
    "LMI405",
    title="bf16 on NeuronX before 0.24.0",
    why="The 0.22.1-0.23.0 Transformers-NeuronX handler takes fp32 and fp16 only.",
    fix="Use lmi_version 0.24.0 or later, or fp16.",
    example=Example(
        settings={
            "engine": "neuronx",
            "lmi_version": "0.23.0",
            "model_id": "facebook/opt-1.3b",
            "dtype": "bf16",
            "instance_type": "ml.inf2.xlarge",
        }
    ),
    concern="precision",
)
def neuronx_bf16_version(view: View, derived: Derived) -> Iterator[str]:
    if derived.dtype == "bf16" and view.engine is Engine.NEURONX and not view.at_least("0.24.0"):
        yield "dtype='bf16' on NeuronX needs lmi_version 0.24.0 or later (0.22.1-0.23.0: fp32, fp16)"


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
    concern="handlers",
)
def neuronx_entry_point_name(view: View, derived: Derived) -> Iterator[str]:
    if view.entry_point == OLD_HANDLER and view.at_least("0.24.0"):
        yield f"option.entryPoint={OLD_HANDLER}: renamed {NEW_HANDLER} in 0.24.0; use {NEW_HANDLER}"
    elif view.entry_point == NEW_HANDLER and not view.at_least("0.24.0"):
        yield f"option.entryPoint={NEW_HANDLER}: before 0.24.0 it is {OLD_HANDLER}; use {OLD_HANDLER}"


DYNAMIC_VS_ROLLING_FROM = "0.26.0"  # TransformerNeuronXProperties.validate_batch_size


def _handler_sees_rolling_batch(view: View) -> bool:
    """Whether TransformerNeuronXProperties sees a rolling batch: the file's option.rolling_batch unless the server
    writes disable itself (batch_size > 1); unset, the class's default (disable), except on 0.27.0 when the server
    infers the engine and writes its own default, auto. From 0.28.0 an unset key stays disable on the NeuronX image
    ("defaultRollingBatch = isTnxEnabled(features) ? disable : auto")."""
    if server_disables_rolling_batch(view.values, view.version):
        return False
    if view.rolling_batch is not None:
        return view.rolling_batch != "disable"
    return view.at_least("0.27.0") and not view.at_least("0.28.0") and view.server_engine is None


@rule(
    "LMI716",
    title="Transformers-NeuronX with both dynamic batching (batch_size > 1) and a rolling batch",
    why="From 0.26.0 TransformerNeuronXProperties refuses a batch_size above 1 while rolling_batch is anything but "
    "disable ('Dynamic batching and rolling batch cannot be enabled at the same time'), so the model does not load. "
    "The handler reads batch_size or option.batch_size; from 0.28.0 (0.27.0 without engine=) the server itself turns "
    "rolling batch off when the top-level batch_size is above 1, so there only option.batch_size trips it.",
    fix="Choose one: a rolling batch (drop batch_size / option.batch_size, size it with "
    "option.max_rolling_batch_size), or dynamic batching (keep batch_size and remove option.rolling_batch).",
    example=Example(
        properties="engine=Python\noption.entryPoint=djl_python.transformers_neuronx\n"
        "option.model_id=s3://bucket/llama-2-7b/\noption.tensor_parallel_degree=2\noption.rolling_batch=auto\n"
        "batch_size=4\noption.model_loading_timeout=1200\n",
        container="0.26.0",
        instance_type="ml.inf2.8xlarge",
    ),
    needs=("properties",),
    gate=True,
    concern="handlers",
)
def neuronx_dynamic_and_rolling_batch(view: View, derived: Derived) -> Iterator[str]:
    size = view.dynamic_batch()
    if (
        view.engine is not Engine.NEURONX
        or view.handler == "custom"
        or not view.at_least(DYNAMIC_VS_ROLLING_FROM)
        or size <= 1
        or not _handler_sees_rolling_batch(view)
    ):
        return
    key = "batch_size" if view.values.get("batch_size", "").strip() == str(size) else "option.batch_size"
    rolling = view.rolling_batch or "auto (the server's default when it infers the engine)"
    yield (
        f"{key}={size} with option.rolling_batch={rolling}: TransformerNeuronXProperties on LMI {view.version} "
        "refuses both at once ('Dynamic batching and rolling batch cannot be enabled at the same time'); keep the "
        f"rolling batch (remove {key}, size it with option.max_rolling_batch_size) or the dynamic batch (remove "
        "option.rolling_batch)"
    )
