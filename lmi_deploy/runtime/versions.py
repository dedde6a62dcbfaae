"""What changed between LMI releases in the Python engine and the server around it: one row per behaviour.

The local runtime (:mod:`lmi_deploy.runtime.server`, its ``djl_python``) reads this table, never a version number,
so a handler served locally meets the ``djl_python`` API, the request encoding and the errors of the release its
deployment names. Every row was read in deepjavalibrary/djl-serving at the ``X.Y.Z-dlc`` branches the images are
built from (``source`` names the files); ``scripts/check_parity.py`` runs a checkout's real ``djl_python`` beside
this runtime to check them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmi_deploy.containers import version_key

LATEST = "0.36.0"


@dataclass(frozen=True)
class Change:
    """A behaviour of the container, from the first release that has it on."""

    since: str
    what: str
    source: str


S3_WEIGHTS_DOWNLOAD = Change(
    "0.20.0",
    "the server downloads the weights an s3:// option.s3url names (model_id too from 0.23) and hands the handler "
    "the local copy; 0.19.0 downloads nothing and reads no OPTION_* variables (those arrive in 0.24)",
    "engines/python/src/main/java/ai/djl/python/engine/PyModel.java (s3url, 0.20.0); wlm/.../ModelInfo.java",
)
SERVER_BATCHING = Change(
    "0.20.0",
    "requests queued together (batch_size > 1) reach the handler as one Input with property batch_size; before, "
    "one at a time",
    "engines/python/src/main/java/ai/djl/python/engine/PyPredictor.java batchPredict",
)
JSON_CONTENT_TYPE_PREFIX = Change(
    "0.22.1",
    "Input.get_data() decodes JSON for any Content-Type starting with application/json (charset included); "
    "before, only the exact application/json (else bytes)",
    "djl_python/inputs.py get_data",
)
MODEL_PROPERTIES_AT_WARM_UP = Change(
    "0.22.1",
    "the warm-up call also carries the model's properties: serving.properties' server keys (engine, batch_size, "
    "...), batchifier=stack when batch_size > 1, gpu.minWorkers=gpu.maxWorkers=1 when tensor_parallel_degree > 0 "
    "and no maxWorkers is set; before, only the option.* values and handler",
    "PyModel.java load (properties.forEach(pyEnv::addParameter)); djl BaseModelLoader.createModel; ModelInfo.java",
)
STREAM_CONTENT = Change(
    "0.22.1",
    "Output.add_stream_content: the reply is sent in chunks as the iterator yields; before, AttributeError (424)",
    "engines/python/setup/djl_python/outputs.py",
)
BATCH_REQUEST_PROPERTIES = Change(
    "0.23.0",
    "a batch carries each request's headers as batch_<i>.<header> and no others; get_batches() gives each item "
    "its own; before, the batch had the first request's headers and every item shared them",
    "PyPredictor.java batchPredict; djl_python/inputs.py get_batches",
)
IS_BATCH_BY_KEY = Change(
    "0.23.0",
    'Input.is_batch() is "batch_size" in properties; before, batch_size > 1',
    "djl_python/inputs.py is_batch",
)
OUT_OF_MEMORY_507 = Change(
    "0.23.0",
    "a handler's MemoryError/OutOfMemoryError answers 507 with str(e) as the reason and no body, a reply that "
    "is not an Output answers 424 'Invalid output type'; before, a MemoryError was a plain 424 and a reply that "
    "is not an Output broke the worker (500)",
    "engines/python/setup/djl_python_engine.py",
)
ZERO_PADDED_BATCH_KEYS = Change(
    "0.25.0",
    "batch keys are zero-padded to three digits (batch_000.data); get_batches() slices key[6:9] and key[10:]; "
    "before, batch_0.data, parsed with the regex batch_(\\d+)\\.(.*)",
    "PyPredictor.java batchPredict; djl_python/inputs.py get_batches",
)
INT_STRING_LENGTHS = Change(
    "0.27.0",
    "the Java/Python frames carry string lengths as 4-byte ints; before, 2-byte shorts (the local runtime has no "
    "frames: scripts/check_parity.py speaks them)",
    "engines/python/src/main/java/ai/djl/python/engine/CodecUtils.java; djl_python/inputs.py retrieve_utf8",
)
CUDA_OUT_OF_MEMORY_507 = Change(
    "0.31.0",
    "an exception whose message holds 'CUDA error: out of memory' (or vLLM's 'No available memory for the cache "
    "blocks') answers 507 too",
    "djl_python_engine.py (0.31), djl_python/python_sync_engine.py (0.33+)",
)
INVOKE_HANDLER_FAILURE = Change(
    "0.31.0",
    "Output.error() and a handler exception answer message 'invoke handler failure'; before, 'prediction failure'",
    "djl_python/outputs.py error",
)
OUTPUT_PROPERTY_GETTERS = Change(
    "0.33.0",
    "Output.get_properties() and Output.get_property(); before, AttributeError (424)",
    "djl_python/outputs.py",
)

CHANGES: tuple[Change, ...] = (
    S3_WEIGHTS_DOWNLOAD,
    SERVER_BATCHING,
    JSON_CONTENT_TYPE_PREFIX,
    MODEL_PROPERTIES_AT_WARM_UP,
    STREAM_CONTENT,
    BATCH_REQUEST_PROPERTIES,
    IS_BATCH_BY_KEY,
    OUT_OF_MEMORY_507,
    ZERO_PADDED_BATCH_KEYS,
    INT_STRING_LENGTHS,
    CUDA_OUT_OF_MEMORY_507,
    INVOKE_HANDLER_FAILURE,
    OUTPUT_PROPERTY_GETTERS,
)


@dataclass(frozen=True)
class Release:
    """One container release's behaviour, as the rows of :data:`CHANGES` say."""

    version: str = LATEST

    def has(self, change: Change) -> bool:
        return version_key(self.version) >= version_key(change.since)

    @property
    def error_message(self) -> str:
        return "invoke handler failure" if self.has(INVOKE_HANDLER_FAILURE) else "prediction failure"

    def batch_prefix(self, index: int) -> str:
        """The key prefix of the index-th request of a batch."""
        return f"batch_{index:03d}." if self.has(ZERO_PADDED_BATCH_KEYS) else f"batch_{index}."

    def is_out_of_memory(self, error: BaseException) -> bool:
        """Whether the engine answers this handler exception with 507 rather than 424."""
        if not self.has(OUT_OF_MEMORY_507):
            return False
        if type(error).__name__ in ("OutOfMemoryError", "MemoryError"):
            return True
        text = str(error)
        return self.has(CUDA_OUT_OF_MEMORY_507) and (
            "CUDA error: out of memory" in text or "No available memory for the cache blocks" in text
        )


def release_of(version: str | None) -> Release:
    """The release for a container version (the newest when unknown)."""
    if version is None:
        return Release()
    version_key(version)  # a malformed version fails here, not deep in a request
    return Release(version)
