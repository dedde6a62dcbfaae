"""serving.properties lines: values as DJL parses them, keys each release reads, and keys that exclude each other."""

from __future__ import annotations

from collections.abc import Iterator

from lmi_deploy import containers, key_catalog, known_keys
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.parallelism import PIPELINE_KEY, pipeline_ignored
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import Entry, View

BOOLEAN_KEYS = {
    "option.trust_remote_code",
    "option.enable_streaming",
    "option.parallel_loading",
    "option.mpi_mode",
    "option.enable_venv",
    "option.low_cpu_mem_usage",
    "option.load_in_8bit",
    "option.load_in_4bit",
    "option.enforce_eager",
    "option.enable_lora",
    "option.async_mode",
    "option.enable_cuda_graph",
}
INT_KEYS = {
    "option.pipeline_parallel_degree",
    "option.model_loading_timeout",
    "option.predict_timeout",
    "option.request_timeout",
    "option.max_rolling_batch_size",
    "option.max_model_len",
    "option.max_tokens",
    "option.n_positions",
    "option.max_input_len",
    "option.max_output_len",
    "option.max_seq_len",
    "option.max_num_tokens",
    "batch_size",
    "max_batch_delay",
    "job_queue_size",
    "minWorkers",
    "maxWorkers",
    "max_idle_time",
    "option.max_rolling_batch_prefill_tokens",
}
DTYPES = ("fp32", "fp16", "bf16", "int8", "auto", "f16", "float16", "bfloat16", "float32")


def _clean(entry: Entry) -> bool:
    """Whether the value is free of what DJL would swallow into it (checked by LMI801)."""
    value = entry.value
    return value == value.rstrip() and " #" not in value and not value.startswith("#")


@rule(
    "LMI801",
    title="Trailing spaces or an inline comment in a value",
    why="java.util.Properties reads the whole rest of the line as the value, so 'fp16 # half' is not fp16.",
    fix="Remove trailing spaces and put comments on their own line.",
    example=Example(
        properties="engine=Python\noption.model_loading_timeout=1200\noption.dtype=fp16 # half\n", container="0.28.0"
    ),
    needs=("properties",),
    gate=True,
)
def values_clean(view: View, derived: Derived) -> Iterator[str]:
    for entry in view.properties:
        if not _clean(entry):
            yield (
                f"line {entry.line}: {entry.key}={entry.value!r}: DJL reads the whole rest of the line, trailing "
                "spaces and inline '#' comments included, as the value; remove them"
            )


def _unknown(view: View) -> Iterator[Entry]:
    for entry in view.properties:
        if _clean(entry) and not known_keys.reads(entry.key, view.version):
            yield entry


@rule(
    "LMI802",
    title="A key that is a near miss of a key this release reads",
    why="A misspelled key is silently ignored: the setting you meant never applies. The container still loads (DJL "
    "hands a key without option. to the model as an argument nothing reads; djl-serving's own integration tests "
    "write model_loading_timeout that way), so it is a warning; what the missing setting costs (memory, time) is "
    "checked by the rules about those, with the setting's default.",
    fix="Use the key the message suggests.",
    example=Example(
        properties="engine=Python\noption.model_loading_timeout=1200\noption.tensor_parallel_degre=4\n",
        container="0.28.0",
    ),
    level="warning",
    needs=("properties",),
)
def key_near_miss(view: View, derived: Derived) -> Iterator[str]:
    for entry in _unknown(view):
        close = known_keys.near_miss(entry.key, view.version)
        if close:
            yield (
                f"line {entry.line}: {entry.key} is not a key LMI {view.version} reads; did you mean {close}? (as "
                "written, the setting is silently ignored)"
            )


@rule(
    "LMI803",
    title="A key other releases read, but not this one",
    why="The setting has no effect on this release.",
    fix="Remove it, or use a release that reads it.",
    example=Example(
        properties="engine=Python\noption.model_loading_timeout=1200\noption.max_tokens=1024\n", container="0.30.0"
    ),
    level="warning",
    needs=("properties",),
)
def key_other_release(view: View, derived: Derived) -> Iterator[str]:
    for entry in _unknown(view):
        if entry.key == PIPELINE_KEY and pipeline_ignored(view):
            continue  # LMI308 says what the GPUs do instead
        if known_keys.versions_reading(entry.key):
            yield f"line {entry.line}: {known_keys.unread_note(entry.key, view.version)}"


@rule(
    "LMI804",
    title="A key lmi-deploy does not know",
    why="It may belong to a custom handler; if not, it has no effect.",
    fix="Check the key's name against the LMI documentation of this release.",
    example=Example(
        properties="engine=Python\noption.model_loading_timeout=1200\noption.my_own_flag=1\n", container="0.28.0"
    ),
    level="warning",
    needs=("properties",),
)
def key_unknown(view: View, derived: Derived) -> Iterator[str]:
    for entry in _unknown(view):
        if not known_keys.versions_reading(entry.key) and not known_keys.near_miss(entry.key, view.version):
            yield f"line {entry.line}: {known_keys.unread_note(entry.key, view.version)}"


@rule(
    "LMI805",
    title="A value DJL cannot parse for its key",
    why="Booleans must be true/false, counts whole numbers, the degree a number or max, the dtype a known name: "
    "otherwise the load fails or the value is ignored.",
    fix="Use a value of the kind the message names.",
    example=Example(
        properties="engine=Python\noption.model_loading_timeout=1200\noption.trust_remote_code=yes\n",
        container="0.28.0",
    ),
    needs=("properties",),
    gate=True,
)
def value_parses(view: View, derived: Derived) -> Iterator[str]:
    for entry in view.properties:
        shown = f"line {entry.line}: {entry.key}={entry.value}"
        if not _clean(entry) or not known_keys.reads(entry.key, view.version):
            continue
        if entry.key in BOOLEAN_KEYS and entry.value.lower() not in ("true", "false"):
            yield f"{shown}: expected true or false"
        elif entry.key in INT_KEYS and not entry.value.isdigit():
            yield f"{shown}: expected a whole number"
        elif entry.key == "option.tensor_parallel_degree" and entry.value != "max":
            if not entry.value.isdigit() or int(entry.value) < 1:
                yield f"{shown}: expected a positive whole number or max"
        elif entry.key == "option.dtype" and entry.value not in DTYPES:
            yield f"{shown}: expected fp32, fp16, bf16 or int8"


@rule(
    "LMI806",
    title="option.model_id and option.s3url both set",
    why="DJL refuses the model: 'model_id and s3url could not both set!'.",
    fix="Keep one (option.model_id from 0.23.0).",
    example=Example(
        properties="engine=Python\noption.model_id=s3://a/b/\noption.s3url=s3://a/b/\noption.model_loading_timeout=1200\n",
        container="0.23.0",
    ),
    needs=("properties",),
    gate=True,
)
def one_weights_key(view: View, derived: Derived) -> Iterator[str]:
    if "option.model_id" in view.values and "option.s3url" in view.values:
        yield (
            "option.model_id and option.s3url are both set: DJL refuses ('model_id and s3url could not both set!'); "
            "keep one"
        )


# Keys whose values have a rule of their own: engine= (LMI706), option.rolling_batch (LMI707), option.dtype (LMI805).
_OWN_VALUE_RULES = {"engine", "option.rolling_batch", "option.dtype"}

# Keys lmi-deploy writes from its own settings (lmi_deploy.render): extra_properties may not set them.
MANAGED_KEYS = frozenset(
    {
        "engine",
        "option.entryPoint",
        "option.model_id",
        "option.s3url",
        "option.tensor_parallel_degree",
        "option.dtype",
        "option.data_type",
        "option.model_loading_timeout",
        "option.request_timeout",
        "option.rolling_batch",
        "option.max_rolling_batch_size",
        "option.max_tokens",
        "option.max_model_len",
        "option.max_input_len",
        "option.max_output_len",
        "option.max_seq_len",
        "option.n_positions",
        "option.checkpoint",
        "batch_size",
        *(f"option.{name}" for name in containers.HANDLER_OPTIONS),
    }
)


@rule(
    "LMI807",
    title="A value the release's enum for the key does not allow",
    why="The release types the key with an enum (a properties class's Enum or Literal, or a handler's closed choice, "
    "as read from its source): any other value fails validation and the model does not load. Each engine's handler "
    "validates with its own properties classes (vLLM's with both HuggingFaceProperties and VllmRbProperties), so a "
    "value another engine's enum has can still fail on this one.",
    fix="Use one of the values the message lists for this release and engine, or a release or engine that has yours.",
    example=Example(
        properties="engine=Python\noption.model_id=s3://bucket/llama/\noption.quantize=int4\n"
        "option.model_loading_timeout=1200\n",
        container="0.27.0",
    ),
    needs=("properties",),
    gate=True,
)
def value_in_release_enum(view: View, derived: Derived) -> Iterator[str]:
    # The engine's own properties classes decide (vLLM's quantize enum is not the Accelerate handler's); a model.py
    # of the user's own validates nothing of djl-serving's, so only the values pooled over the release apply.
    classes = view.spec.properties_classes if view.spec is not None and view.handler != "custom" else ()
    on = f" with {view.engine}" if key_catalog.release_has_classes(view.version, classes) else ""
    for entry in view.properties:
        problem = (
            None
            if not _clean(entry) or entry.key in _OWN_VALUE_RULES
            else key_catalog.value_problem(entry.key, entry.value, view.version, classes)
        )
        if problem:
            yield f"line {entry.line}: {entry.key}={entry.value}{on}: {problem}"


@rule(
    "LMI808",
    title="extra_properties sets a key lmi-deploy writes itself, or a value DJL would misread",
    why="The rendered file would say the key twice (the last wins in java.util.Properties), so the setting that "
    "decides it would not be the one validated; a value with '#', a backslash, a newline or edge spaces is read "
    "differently from what is written.",
    fix="Use lmi-deploy's own setting for the key (dtype, tensor_parallel_degree, ...), and plain values.",
    example=Example(
        settings={
            "engine": "vllm",
            "model_id": "meta-llama/Llama-2-7b-hf",
            "extra_properties": '{"option.dtype": "fp16"}',
        }
    ),
    needs=("config",),
    gate=True,
)
def extra_properties_are_extra(view: View, derived: Derived) -> Iterator[str]:
    for key, value in sorted(view.config.extra_properties.items()):
        if key in MANAGED_KEYS:
            yield f"extra_properties sets {key}, which lmi-deploy writes from its own settings: use those instead"
        elif (
            not key or any(c in key for c in " =:#!\\\n") or value != value.strip() or any(c in value for c in "\n#\\")
        ):
            yield (
                f"extra_properties {key}={value!r}: keys and values must be plain (no '#', '\\', newline or edge "
                "spaces; no '=' or ':' in a key)"
            )
