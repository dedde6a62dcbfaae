"""The one deployment config: typed, frozen, validated once, built from defaults < file < context values.

Only ``app.py`` and the scripts' ``main`` functions call :func:`load_config`; everything downstream (templates,
stacks) receives the resulting :class:`DeploymentConfig` and reads derived values from it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lmi_deploy import containers, identifiers, input_files, instances, model_facts, request_limits
from lmi_deploy.containers import ENGINES, Engine
from lmi_deploy.errors import UNREADABLE_INPUT, ConfigError
from lmi_deploy.rules import settings as setting_rules
from lmi_deploy.rules.check import check_deployment
from lmi_deploy.rules.derive import Resolved
from lmi_deploy.runtime.versions import STREAM_CONTENT, Release

Dtype = Literal["fp32", "fp16", "bf16", "int8", "auto"]
Timeout = Annotated[int, Field(ge=60, le=3600)]

_DEPLOYMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
MAX_ACCELERATORS = 64  # more than any SageMaker instance has (ml.trn1.32xlarge: 32 Neuron devices)
MAX_SEQUENCE_LENGTH = 2**24  # 16M tokens: beyond every model's context; keeps memory arithmetic finite
_MAX_DEPLOYMENT_NAME = 32  # keeps "<deployment>-<account>-<region>" within S3's 63-character bucket names


def _shown(default: str) -> dict[str, JsonValue]:
    """The default as docs/settings.md shows it, where the literal default stands for a derived one."""
    return {"shown_default": default}


class ScalingSchedule(BaseModel):
    """One scheduled action of Application Auto Scaling: from ``schedule`` on, scale between these bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="Names the scheduled action.")
    schedule: str = Field(description="cron(m h dom mon dow year), rate(n unit) or at(yyyy-mm-ddThh:mm:ss).")
    min_instances: int = Field(ge=0, le=100, description="Autoscaling floor from then on (0 only for async).")
    max_instances: int = Field(ge=1, le=100, description="Autoscaling ceiling from then on.")
    timezone: str = Field("UTC", description="IANA time zone the schedule is read in.")

    @field_validator("*", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return _one_line_text(value)


def _one_line_text(value: Any) -> Any:
    """Refuse text with control characters or line separators (in any setting: they would end a properties line,
    a log line or an IAM resource where one value was meant)."""
    if isinstance(value, str):
        problem = identifiers.control_character_problem(value)
        if problem:
            raise ValueError(problem)
    return value


def _raise_if(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


# Settings that name something of AWS or the Hub, and the check of each one's own syntax.
_IDENTIFIER_SYNTAX: dict[str, Callable[[str], str | None]] = {
    "model_revision": identifiers.revision_problem,
    "async_output_s3_path": identifiers.s3_prefix_problem,
    "kms_key": identifiers.kms_key_problem,
    "hf_token_secret": identifiers.secret_problem,
}


def _json_if_text(value: Any) -> Any:
    """A list setting given as text (``-c key=[...]``): JSON, or for lists of names a comma-separated string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"is not valid JSON ({error.msg})") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def slug(model_id: str) -> str:
    """Deployment name derived from a model id: ``google/flan-t5-xxl`` -> ``flan-t5-xxl``."""
    last = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9]+", "-", last).strip("-")
    if not name or not name[0].isalpha() or len(name) < 2:
        name = f"m-{name}" if name else "model"
    return name[:_MAX_DEPLOYMENT_NAME].rstrip("-")


class DeploymentConfig(BaseModel):
    """Everything that decides what gets deployed. Defaults reproduce the seed deployment."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, populate_by_name=True)

    deployment: str = Field(
        "",
        description="Names the stacks (`<deployment>-artifacts`, `<deployment>-endpoint`), the endpoint, the rendered "
        "folder and the bucket. 2-32 of `a-z0-9-`.",
        json_schema_extra=_shown("slug of `model_id` (`flan-t5-xxl`)"),
    )
    model_id: str = Field(
        "google/flan-t5-xxl",
        min_length=1,
        description="Hugging Face Hub id (weights staged at `models/<model_id>/<model_revision>/` in the artifacts "
        "bucket), an `s3://` prefix used as is, or a local model folder (read for model facts).",
    )
    model_revision: str = Field(
        "main",
        min_length=1,
        description="Hub revision; part of the weights prefix. Pin a commit for reproducible deploys.",
    )
    model_type: str = Field(
        "",
        description="HF `model_type` (t5, gpt2, ...); only needed when neither `config.json` nor the model's name "
        "tells and the engine serves a fixed list.",
        json_schema_extra=_shown("from `config.json`, else the model's name"),
    )
    model_config_path: str | None = Field(
        None,
        alias="model_config",
        description="The model's `config.json` (or folder), for the head/memory/timeout checks. Relative to the "
        "deployment file when given in one. Found otherwise in: a local `model_id` folder, the configs bundled for "
        "the examples (`lmi_deploy/model_configs/`), the Hub (cache, then network when reachable). Without one, those "
        "checks are skipped with a warning.",
        json_schema_extra=_shown("found automatically"),
    )
    engine: Engine = Field(
        Engine.FASTER_TRANSFORMER,
        description="Case-insensitive: `FasterTransformer` (0.21.0-0.24.0), `DeepSpeed` (0.19.0-0.27.0), `Accelerate` "
        "(Hugging Face Accelerate on the Python engine, every GPU container 0.19.0-0.38.0), `lmi-dist` (rolling batch, "
        "0.23.0-0.32.0), `vLLM` (rolling batch, 0.23.0 onward), `TensorRT-LLM` (0.25.0-0.33.0, no 0.31.0), `NeuronX` "
        "(Transformers-NeuronX on inf2/trn1, 0.22.1-0.29.0). Versions and image tags come from sagemaker-core's "
        "image config.",
    )
    lmi_version: str = Field(
        "",
        description="LMI/DJL container version; one that doesn't ship the engine is refused with the versions that "
        "do. 0.19.0 is refused: its server downloads no weights from S3 and reads no `OPTION_*` variables. Before "
        "0.22.1 the Accelerate handler is rendered without streaming (djl_python has no `add_stream_content` yet; a "
        "warning says so).",
        json_schema_extra=_shown("`0.21.0` for FasterTransformer (the seed), else the newest that ships the engine"),
    )
    handler: Literal["custom", "builtin"] = Field(
        "custom",
        description="`custom`: a rendered `model.py` (FasterTransformer, DeepSpeed, Accelerate): loads once, "
        '`{"inputs": str or [str], "parameters": {...}}` -> `{"outputs": [...]}`, 400 with a JSON error for malformed '
        "or out-of-range requests ([operations](operations.md#requests-the-handler-refuses)). `builtin`: the engine's "
        "no-code handler (`djl_python.fastertransformer`, `djl_python.deepspeed`, `djl_python.huggingface`, "
        "`djl_python.transformers-neuronx` before 0.24 / `transformers_neuronx` after; rolling-batch engines are "
        "served by the server's own choice).",
        json_schema_extra=_shown("`custom` where offered, else `builtin`"),
    )
    tensor_parallel_degree: Annotated[int, Field(ge=1, le=MAX_ACCELERATORS)] | Literal["auto", "max"] = Field(
        4,
        description="Accelerators (GPUs, or NeuronCores on inf2/trn1) per model copy; must divide the instance's count "
        "and the model's attention and KV heads. `auto`: the smallest that divides and fits in memory. `max`: all of "
        "them (0.24.0 onward).",
        json_schema_extra=_shown("`4` for FasterTransformer (the seed), else `auto`"),
    )
    dtype: Dtype = Field(
        "fp32",
        description="`fp32`, `bf16`, `fp16`, `int8` (per engine). `auto`: bf16 where the GPU (Ampere or newer) and "
        "engine support it, else fp16 (fp32 for T5). T5 models never take fp16 (activations overflow into NaN); "
        "V100/T4 have no bf16; NeuronX bf16 from 0.24.0.",
        json_schema_extra=_shown("`fp32` for FasterTransformer (the seed), else `auto`"),
    )
    max_sequence_length: int | None = Field(
        None,
        ge=16,
        le=MAX_SEQUENCE_LENGTH,
        description="Input + output tokens per sequence: sizes the KV-cache estimate; rendered as `option.max_tokens` "
        "(DeepSpeed), `option.max_model_len` (vLLM/lmi-dist, 0.26.0 onward), `option.max_input_len`/`max_output_len` "
        "3:1 (TensorRT-LLM to 0.32; from 0.33.0 `max_input_len` and the total as `max_seq_len`, the build flag 0.33 "
        "passes on - it has no `max_output_len`), `option.n_positions` (NeuronX). With `max_batch_size` it also "
        "derives `option.warm_shapes` (Accelerate `handler=custom`): the request shapes compiled and captured at "
        "load - every power-of-two batch up to `max_batch_size`, each with a short request (128 prompt / 64 new "
        "tokens) and the longest (`max_sequence_length` split 3/4 prompt, 1/4 new); other shapes: see `compile`.",
        json_schema_extra=_shown("the model's positions, at most 4096 (2048 when unknown)"),
    )
    max_batch_size: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Sequences at once: the KV-cache estimate of static-batch engines; "
        "`option.max_rolling_batch_size` (rolling batch) or `batch_size` (NeuronX) when set.",
        json_schema_extra=_shown("8 for the estimate; unset in the files"),
    )
    weights_delivery: Literal["container", "sagemaker"] = Field(
        "container",
        description="`container`: the LMI container downloads the staged prefix (s5cmd). `sagemaker`: SageMaker "
        "places it under `/opt/ml/model` (`ModelDataSource` S3Prefix), settings as `OPTION_*` environment variables; "
        "LMI 0.27.0+ and `handler=builtin`.",
    )
    partitioned: bool = Field(
        False,
        description="Load `<prefix>/partitioned/tp<N>/` made by `scripts/partition_model.py` (FasterTransformer, "
        "DeepSpeed, TensorRT-LLM; DeepSpeed adds `option.checkpoint=ds_inference_config.json`).",
    )
    kv_cache: Literal["static", "dynamic"] | None = Field(
        None,
        description="`option.kv_cache` of our Accelerate `model.py` (`handler=custom` only). `static`: our decode "
        "loop with a static KV cache per shape bucket (batch, prompt and new tokens rounded up to powers of two); at "
        "load it must match `generate()` token for token on two prompts, else the handler serves with `generate()` "
        "and logs why. Greedy and sampled (temperature/top-k/top-p) requests with `max_new_tokens` use it; beams, "
        "penalties, constraints and streaming go to `generate()`. `dynamic`: always `generate()`. Memory: one cache "
        "per bucket in use (at most 8), e.g. 0.1 GB for flan-t5-xxl at batch 4.",
        json_schema_extra=_shown("`static`"),
    )
    cuda_graphs: bool | None = Field(
        None,
        description="With `kv_cache=static` on a GPU: capture each bucket's prompt pass (encoder and first step) and "
        "decode step as CUDA graphs (about 1 s the first time a bucket is used) and replay them; a graph that cannot "
        "be captured runs eagerly, logged. Off on the CPU and when the model is split over several GPUs.",
        json_schema_extra=_shown("`true`"),
    )
    compile: bool | None = Field(
        None,
        description="With `kv_cache=static` on a GPU: `torch.compile` the decode step (fuses norms, GELU, softmax; "
        "1.5x faster at batch 4 on flan-t5-xxl) once, at load, with dynamic shapes, then capture the warm shapes' "
        "buckets; nothing compiles on a request: a request outside the warm buckets is served by a larger warm "
        "bucket (at most 4x its cells, padded) or else by its own bucket with the step uncompiled, logged (a new "
        "bucket would cost seconds of kernel specialisation and tuning even without recompiling). Costs ~2-4 min of "
        "startup on flan-t5-xxl, which the derived startup timeout includes. Batches start at 2 when on (batch 1 "
        "shares that bucket). Falls back to graphs without compile if it disagrees with `generate()`.",
        json_schema_extra=_shown("`true`"),
    )
    fuse_projections: bool | None = Field(
        None,
        description="With `kv_cache=static`: one matrix for the decoder's q|k|v (self-attention) and for its "
        "gated-FFN inputs (T5's wi_0|wi_1, Llama's gate|up), made at load: 0.3-0.4 ms a token faster on "
        "flan-t5-xxl, +6.4 GB of GPU memory there (skipped when it would take more than half of what is free). "
        "Checked with the rest against `generate()`; undone if it disagrees.",
        json_schema_extra=_shown("`true`"),
    )
    fast_load: bool | None = Field(
        None,
        description="Accelerate `handler=custom`: read the `.safetensors` shards straight into the GPU (one pass per "
        "shard through pinned buffers, shards in parallel, weights as views of the shard buffers) when the model "
        "fits one GPU with a fifth to spare; else `from_pretrained` with `device_map=auto`. Needs local safetensors "
        "(the staged weights), not a Hub id or `.bin`.",
        json_schema_extra=_shown("`true`"),
    )
    instance_type: str = Field(
        "ml.g5.12xlarge",
        description="GPU types g4dn, g5, g6, g6e, p3, p3dn, p4d, p4de, p5, p5e, p5en; Neuron types inf2, trn1 "
        "(NeuronX only). Its hourly price: [the README's cost table](../README.md#what-it-costs).",
    )
    instance_count: int = Field(
        1, ge=1, le=100, description="Instances behind the endpoint (1-100). Cost scales linearly."
    )
    model_data_download_timeout: Timeout | Literal["auto"] = Field(
        "auto",
        description="`ModelDataDownloadTimeoutInSeconds`, 60-3600. `auto`: the stored weights at 100 MiB/s x 1.25, at "
        "least 600 (the seed's value). An explicit value shorter than that is refused.",
    )
    container_startup_health_check_timeout: Timeout | Literal["auto"] = Field(
        "auto",
        description="`ContainerStartupHealthCheckTimeoutInSeconds`, 60-3600. `auto`: load at 200 MiB/s plus compile "
        "time (TensorRT-LLM 120 s and NeuronX 180 s per billion parameters, at least 600/900 s; our Accelerate handler "
        "150 s + 20 s per warm bucket with `compile`, 1 s per bucket without) x 1.25, at least 600. Beyond 3600 is "
        "refused: compile or partition ahead of time.",
    )
    model_loading_timeout: Timeout | None = Field(
        None,
        description="`option.model_loading_timeout` (always written: the container's own default differs by layer, "
        "240/1200/1800 s). Must not exceed the startup timeout.",
        json_schema_extra=_shown("= startup timeout"),
    )
    volume_size_gb: int | None = Field(
        None,
        ge=1,
        le=512,
        description="`VolumeSizeInGB`, 1-512. Refused on families with instance storage (any with a `d`, and g5, g6, "
        "g6e, p5, trn1); must hold the weights + 10% + 10 GB.",
    )
    autoscaling_max_instances: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Scale between `instance_count` and this on invocations per instance; must be >= "
        "`instance_count`. Each added instance costs its hourly price while it runs.",
        json_schema_extra=_shown("unset (fixed size)"),
    )
    autoscaling_min_instances: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Floor of autoscaling (<= `instance_count`); `0` (scale to zero) only with "
        "`inference_mode=async`. Needs `autoscaling_max_instances`.",
        json_schema_extra=_shown("`instance_count`"),
    )
    autoscaling_schedules: tuple[ScalingSchedule, ...] = Field(
        (),
        description="Scheduled actions that move the autoscaling bounds: a list of `{name, schedule, min_instances, "
        "max_instances, timezone}` (`schedule`: `cron(m h dom mon dow year)`, `rate(n unit)` or "
        "`at(yyyy-mm-ddThh:mm:ss)`; `timezone` IANA, default `UTC`). Needs autoscaling; each `max_instances` <= "
        "`autoscaling_max_instances`. With `-c`, give the list as JSON. Scheduled actions cost nothing; the "
        "instances they keep do.",
    )
    autoscaling_target_invocations: int = Field(
        4,
        ge=1,
        le=1_000_000,
        description="Target invocations per instance per minute (`SageMakerVariantInvocationsPerInstance`).",
    )
    autoscaling_scale_in_cooldown: int = Field(600, ge=0, le=3600, description="Seconds between scale-ins.")
    autoscaling_scale_out_cooldown: int = Field(120, ge=0, le=3600, description="Seconds between scale-outs.")
    image: Literal["lmi", "custom", "mirror"] = Field(
        "lmi",
        description="`lmi`: the AWS-published LMI image. `custom`: `dockerfile_dir` built FROM it by `cdk deploy` "
        "(Docker needed there, not for synth or tests); the role pulls only from CDK's asset repository. `mirror`: "
        "the LMI image copied into the artifacts stack's repository `lmi-deploy/<deployment>` (same tag) by a Lambda "
        "custom resource (cdk-ecr-deployment); the role pulls only from there. ECR storage about $0.10/GB-month (an "
        "LMI image is over 10 GB: ~$1-2 a month); the copy's Lambda runs for minutes per deploy.",
    )
    dockerfile_dir: str | None = Field(
        None,
        description="`image=custom`: a folder whose `Dockerfile` declares `ARG BASE_IMAGE` and starts "
        "`FROM ${BASE_IMAGE}` (lmi-deploy passes the validated LMI image); relative to the deployment file when given "
        "in one. Example: `images/custom-lmi/`.",
    )
    vpc_subnet_ids: tuple[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")], ...] = Field(
        (),
        max_length=16,
        description="Subnets the instances attach to (Model `VpcConfig`, 1-16; a list, or comma-separated with `-c`). "
        "Use private subnets with VPC endpoints (S3 gateway; ECR api/dkr, CloudWatch logs/monitoring, Secrets Manager "
        "interface endpoints, about $7.30 a month each per AZ) or a NAT gateway (about $33 a month + $0.045/GB).",
        json_schema_extra=_shown("none (no VPC)"),
    )
    vpc_security_group_ids: tuple[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")], ...] = Field(
        (),
        max_length=5,
        description="Security groups (1-5). Unset with subnets: one is created with no inbound rule and HTTPS out "
        "only; it needs `vpc_id`. Given without subnets: refused.",
        json_schema_extra=_shown("created"),
    )
    vpc_id: str | None = Field(
        None,
        pattern=r"^vpc-[0-9a-f]{8,17}$",
        description="The subnets' VPC, only to create that security group.",
    )
    network_isolation: bool = Field(
        False,
        description="`EnableNetworkIsolation`: the container gets no network and no AWS credentials. Needs "
        "`weights_delivery=sagemaker` (the container cannot download the weights itself). Costs nothing.",
    )
    kms_key: str | None = Field(
        None,
        description="`create`: a customer-managed key with yearly rotation in the artifacts stack (retained, alias "
        "`alias/lmi-deploy/<deployment>`); or an existing key's ARN (same region). Encrypts the bucket (SSE-KMS, "
        "bucket key), the endpoint's volume (`KmsKeyId`, except on NVMe-only types: g5, g6, g6e, p4d, p5, ...), log "
        "group, alarm topic, async outputs/topics and data capture. About $1 a key-month plus $0.03 per 10,000 "
        "requests.",
        json_schema_extra=_shown("unset (AWS-managed keys)"),
    )
    hf_token_secret: str | None = Field(
        None,
        description="Secrets Manager secret (name or ARN, same region) holding the Hub token, as text or JSON "
        '`{"token": ...}`: the default of `stage_model.py --token-secret`, and with `handler=custom` the rendered '
        "`model.py` reads it at start (the role may read that one secret; the Model's environment holds only its id). "
        "A token itself is refused. About $0.40 a secret-month.",
    )
    inference_mode: Literal["realtime", "async"] = Field(
        "realtime",
        description="`async`: `AsyncInferenceConfig` - callers put the request in `s3://<bucket>/async-input/` and "
        "call `InvokeEndpointAsync`; SageMaker queues it and writes the response to `async_output_s3_path`. Permits "
        "scaling to zero. Same instance price; you pay for instances while they run.",
    )
    async_output_s3_path: str | None = Field(
        None,
        description="async: responses; failures under `failures/` below it. The role may write there only.",
        json_schema_extra=_shown("`s3://<bucket>/async-output/`"),
    )
    async_notifications: bool = Field(
        False,
        description="async: create a success and an error SNS topic (encrypted: `kms_key`, else the AWS-managed SNS "
        "key) that SageMaker notifies; the role may publish to those two only. $0.50 per million notifications.",
    )
    async_max_concurrent_invocations: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="async: requests each instance gets at once (1-1000).",
        json_schema_extra=_shown("SageMaker's"),
    )
    autoscaling_target_backlog_per_instance: int = Field(
        5,
        ge=1,
        le=100_000,
        description="async autoscaling: target `ApproximateBacklogSizePerInstance` (replaces the invocations target).",
    )
    request_timeout: int | None = Field(
        None,
        ge=1,
        le=3600,
        description="Seconds one request may generate: rendered as `option.request_timeout`; our Accelerate handler "
        "stops generating at it and answers 504 (the local server too, and `/ping` fails while a worker overruns it). "
        "1-3600; above 60 refused for real-time endpoints (SageMaker has already answered the caller with an error "
        "by then).",
        json_schema_extra=_shown("`60` (realtime: SageMaker's invocation timeout), `3600` (async)"),
    )
    data_capture: bool = Field(
        False,
        description="Capture requests and responses (JSON) to `s3://<bucket>/data-capture/` (`DataCaptureConfig`, "
        "encrypted with `kms_key` when set); the role may write there only. Costs the S3 storage and requests of the "
        "captured data.",
    )
    data_capture_sampling_percent: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Share of requests captured (1-100); refused without `data_capture`.",
        json_schema_extra=_shown("`100` with `data_capture`"),
    )
    alarm_email: str | None = Field(
        None,
        pattern=re.compile(
            r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\Z"
        ),
        max_length=254,
        description="An e-mail subscribed to the alarm topic.",
    )
    alarm_model_latency_p99_ms: int = Field(
        30_000,
        ge=1,
        le=3_600_000,  # an async invocation's limit (1 h); a higher threshold is an alarm that never fires
        description="p99 model latency (ms) that fires the latency alarm (and rolls an update back).",
    )
    alarm_no_healthy_instances_minutes: int = Field(
        5,
        ge=1,
        le=60,
        description="Minutes in a row with no instance reporting metrics before the no-healthy-instances alarm fires "
        "(1-60).",
    )
    update_strategy: Literal["all-at-once", "canary", "linear"] = Field(
        "all-at-once",
        description="Blue/green traffic shifting: `all-at-once`, `canary`, `linear`; auto-rollback on the 5XX and "
        "latency alarms. During an update you pay for both fleets.",
    )
    update_step_percent: int = Field(10, ge=1, le=50, description="Canary size or linear step (% of capacity, 1-50).")
    update_wait_seconds: int = Field(600, ge=0, le=3600, description="Baking time between traffic shifts (seconds).")
    account: str = Field(
        "000000000000",
        description="The stacks' account (12 digits); part of the bucket name. Offline synth without credentials uses "
        "`000000000000`.",
        json_schema_extra=_shown("your credentials' account"),
    )
    bootstrap_version_rule: bool = Field(
        True,
        description="CDK's check of the bootstrap version on deploy; `scripts/deploy_local.py` turns it off for "
        "the emulator.",
    )
    region: str = Field(
        "us-east-1",
        description="The stacks' region; the engine's image must exist there.",
        json_schema_extra=_shown("your credentials' region, else `us-east-1`"),
    )
    extra_properties: dict[str, str] = Field(
        default_factory=dict,
        description="serving.properties lines lmi-deploy does not write itself (e.g. `option.trust_remote_code: "
        "'true'`), appended as they are; a key lmi-deploy writes from its own settings is refused (LMI808). "
        "`scripts/import_properties.py` fills it from an existing file.",
        json_schema_extra=_shown("none"),
    )

    _resolved: Resolved = PrivateAttr()
    _facts: model_facts.ModelFacts | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _derive_deployment_name(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if not data.get("deployment"):
            data = {**data, "deployment": slug(str(data.get("model_id") or cls.model_fields["model_id"].default))}
        engine = containers.ENGINE_ALIASES.get(str(data.get("engine", "")).strip().lower())
        if engine is not None and engine is not Engine.FASTER_TRANSFORMER:
            # The seed's TP4/fp32 are FasterTransformer's; other engines derive both unless told.
            data = {"tensor_parallel_degree": "auto", "dtype": "auto", **data}
            if not data.get("handler") and ENGINES[engine].custom_template is None:
                data["handler"] = "builtin"  # rolling-batch and compiled engines: no-code only
        return data

    @field_validator("lmi_version", mode="after")
    @classmethod
    def _default_version(cls, value: str, info: ValidationInfo) -> str:
        if value:
            return value
        engine = info.data.get("engine")
        if engine is None:
            return value
        if engine is Engine.FASTER_TRANSFORMER:
            return "0.21.0"  # the seed's container
        return containers.versions(engine)[-1]

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_case_insensitive(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower()
            if key in containers.ENGINE_ALIASES:
                return containers.ENGINE_ALIASES[key]
            allowed = ", ".join(e.value for e in Engine)
            raise ValueError(f"unknown engine; available engines: {allowed}")
        return value

    @field_validator("extra_properties", mode="before")
    @classmethod
    def _properties_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("vpc_subnet_ids", "vpc_security_group_ids", mode="before")
    @classmethod
    def _ids_from_text(cls, value: Any) -> Any:
        return _json_if_text(value)

    @field_validator("autoscaling_schedules", mode="before")
    @classmethod
    def _schedules_from_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [value]
        return _json_if_text(value)

    @field_validator("*", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return _one_line_text(value)

    @field_validator("model_id")
    @classmethod
    def _model_id_syntax(cls, value: str) -> str:
        if value[:5].lower() == "s3://":
            _raise_if(identifiers.s3_prefix_problem(value))
        elif model_facts.is_local_folder(value):
            _raise_if(identifiers.local_folder_problem(value))
        else:
            _raise_if(identifiers.hub_id_problem(value))
        return value

    @field_validator(*_IDENTIFIER_SYNTAX)
    @classmethod
    def _identifier_syntax(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _raise_if(_IDENTIFIER_SYNTAX[str(info.field_name)](value))
        return value

    @field_validator("model_type")
    @classmethod
    def _model_type_syntax(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_]{1,64}", value):
            raise ValueError("is not a Hugging Face model_type (letters, digits and '_', e.g. llama, gpt_neox)")
        return value

    @field_validator("account")
    @classmethod
    def _account_id(cls, value: str) -> str:
        if not re.fullmatch(r"\d{12}", value):
            raise ValueError("must be a 12-digit AWS account id")
        return value

    @field_validator("deployment")
    @classmethod
    def _deployment_name(cls, value: str) -> str:
        if not _DEPLOYMENT_NAME.fullmatch(value):
            raise ValueError(
                f"must be 2-{_MAX_DEPLOYMENT_NAME} characters of a-z, 0-9 and '-', "
                "starting with a letter (it names the stacks and the S3 bucket)"
            )
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self, info: ValidationInfo) -> DeploymentConfig:
        """Every rule of the registry (lmi_deploy/rules/) on the parsed fields; errors become one line each."""
        context = info.context or {}
        facts, note = context.get("facts"), context.get("facts_note", "model facts were not looked up")
        self._facts = facts
        self._resolved = check_deployment(self, facts, note)
        if self._resolved.errors:
            raise ValueError("\n".join(str(e) for e in self._resolved.errors))
        return self

    # ---- derived values: the only place decisions about names, locations and timeouts are made ----

    @property
    def instance(self) -> instances.InstanceType:
        instance = instances.get(self.instance_type)
        assert instance is not None  # checked by the validator
        return instance

    @property
    def autoscaling(self) -> bool:
        return self.autoscaling_max_instances is not None

    @property
    def autoscaling_floor(self) -> int:
        """The autoscaling target's minimum capacity."""
        return self.instance_count if self.autoscaling_min_instances is None else self.autoscaling_min_instances

    @property
    def minimum_instances(self) -> int:
        """The fewest instances the endpoint may run: the lowest autoscaling floor (schedules too), else
        ``instance_count``."""
        if not self.autoscaling:
            return self.instance_count
        return min([self.autoscaling_floor, *(s.min_instances for s in self.autoscaling_schedules)])

    @property
    def resolved(self) -> Resolved:
        """The values actually deployed (``auto`` derived), with notes, warnings and the memory estimate."""
        return self._resolved

    @property
    def facts(self) -> model_facts.ModelFacts | None:
        return self._facts

    @property
    def resolved_model_type(self) -> str:
        """HF model_type: from config.json, else the model_type setting, else the model's name; "" if unknown."""
        if self._facts is not None and self._facts.model_type:
            return self._facts.model_type
        return self.model_type or model_facts.model_type_from_name(self.model_id)

    @property
    def artifacts_stack_name(self) -> str:
        return f"{self.deployment}-artifacts"

    @property
    def endpoint_stack_name(self) -> str:
        return f"{self.deployment}-endpoint"

    @property
    def bucket_name(self) -> str:
        """The artifacts bucket; known at synth time so that serving.properties can name the weights."""
        return f"{self.deployment}-{self.account}-{self.region}"

    @property
    def repository_name(self) -> str:
        """ECR repository for custom or mirrored LMI images of this deployment."""
        return f"lmi-deploy/{self.deployment}"

    @property
    def log_group_name(self) -> str:
        """Where SageMaker writes the endpoint's logs (a fixed name, so that the key policy can name it)."""
        return f"/aws/sagemaker/Endpoints/{self.deployment}"

    @property
    def kms_key_created(self) -> bool:
        return self.kms_key == "create"

    @property
    def kms_key_arn(self) -> str | None:
        """The existing key's ARN (None when there is none or lmi-deploy creates it)."""
        return self.kms_key if self.kms_key and self.kms_key != "create" else None

    @property
    def endpoint_reads_hub_token(self) -> bool:
        """Whether the endpoint gets the Hub token secret: only a rendered handler can fetch it (LMI's built-in
        handlers read a token only from the HF_TOKEN variable, which would put it in the Model's definition), and
        only a container with network and credentials (not network_isolation)."""
        return bool(self.hf_token_secret) and self.handler == "custom" and not self.network_isolation

    @property
    def asynchronous(self) -> bool:
        return self.inference_mode == "async"

    @property
    def async_output_s3_uri(self) -> str:
        """Where an async endpoint writes responses; its failures go to ``failures/`` under it."""
        path = self.async_output_s3_path or f"s3://{self.bucket_name}/async-output/"
        return path if path.endswith("/") else path + "/"

    @property
    def async_failure_s3_uri(self) -> str:
        return f"{self.async_output_s3_uri}failures/"

    @property
    def async_input_s3_uri(self) -> str:
        """Where callers put async requests (InvokeEndpointAsync's InputLocation); SageMaker reads them as the role."""
        return f"s3://{self.bucket_name}/async-input/"

    @property
    def data_capture_s3_uri(self) -> str:
        return f"s3://{self.bucket_name}/data-capture/"

    @property
    def async_locations(self) -> dict[str, tuple[str, str]]:
        """(bucket, prefix) of the async input, output and failure locations."""
        return {
            name: _bucket_and_prefix(uri)
            for name, uri in (
                ("input", self.async_input_s3_uri),
                ("output", self.async_output_s3_uri),
                ("failures", self.async_failure_s3_uri),
            )
        }

    @property
    def data_capture_location(self) -> tuple[str, str]:
        return _bucket_and_prefix(self.data_capture_s3_uri)

    @property
    def data_capture_percent(self) -> int:
        return self.data_capture_sampling_percent or 100

    @property
    def streaming_refusal(self) -> str | None:
        """Why the rendered handler refuses ``"stream": true``, or None when it streams: an async endpoint writes
        whole responses to S3 (and has no InvokeEndpointWithResponseStream); before 0.22.1 djl_python has no
        ``Output.add_stream_content`` (the request would fail with a 424)."""
        if self.asynchronous:
            return "this endpoint is asynchronous, responses go whole to S3"
        if not Release(self.lmi_version).has(STREAM_CONTENT):
            return f"LMI {self.lmi_version} cannot stream (Output.add_stream_content arrives in {STREAM_CONTENT.since})"
        return None

    @property
    def request_timeout_s(self) -> int:
        """The per-request deadline the handler enforces (``option.request_timeout``)."""
        return self.request_timeout or request_limits.default_request_timeout(self.asynchronous)

    @property
    def streaming(self) -> bool:
        """Whether handlers may stream a response (see :attr:`streaming_refusal`)."""
        return self.streaming_refusal is None

    @property
    def volume_kms_key(self) -> bool:
        """Whether the EndpointConfig takes the key for its volume: SageMaker refuses KmsKeyId on instance types
        with NVMe instance storage only (the same families that refuse VolumeSizeInGB); those encrypt it in hardware."""
        return self.kms_key is not None and self.instance.supports_volume_size

    @property
    def staged_weights(self) -> tuple[str, str]:
        """Where the weights are staged: the artifacts bucket's ``models/<model_id>/<revision>/``, or a given s3://."""
        if self.model_id.startswith("s3://"):
            bucket, _, prefix = self.model_id.removeprefix("s3://").partition("/")
            return bucket, prefix.rstrip("/") + "/" if prefix else ""
        return self.bucket_name, f"models/{self.model_id}/{self.model_revision}/"

    @property
    def partitioned_prefix(self) -> str:
        """Where ahead-of-time partitioning writes for this TP degree."""
        return f"{self.staged_weights[1]}partitioned/tp{self.resolved.tensor_parallel_degree}/"

    @property
    def weights_bucket_and_prefix(self) -> tuple[str, str]:
        """What the endpoint loads: the staged weights, or their partitioned copy when ``partitioned``."""
        bucket, staged = self.staged_weights
        return bucket, self.partitioned_prefix if self.partitioned else staged

    @property
    def weights_s3_uri(self) -> str:
        bucket, prefix = self.weights_bucket_and_prefix
        return f"s3://{bucket}/{prefix}"

    @cached_property
    def image_uri(self) -> str:
        return containers.image_uri(self.engine, self.lmi_version, self.region)

    @property
    def image_tag(self) -> str:
        return self.image_uri.rsplit(":", 1)[1]

    @property
    def mirror_image_uri(self) -> str:
        """Where image=mirror copies the LMI image: this deployment's repository, same tag, same registry domain."""
        domain = self.image_uri.split("/", 1)[0].split(".", 1)[1]  # dkr.ecr.<region>.amazonaws.com[.cn]
        return f"{self.account}.{domain}/{self.repository_name}:{self.image_tag}"

    @property
    def image_account(self) -> str:
        """The AWS account that publishes the image (``<account>.dkr.ecr.<region>...``)."""
        return self.image_uri.split(".", 1)[0]

    @property
    def image_repository(self) -> str:
        return self.image_uri.split("/", 1)[1].split(":", 1)[0]


# Context keys that belong to the CDK itself, never to a deployment.
_CDK_CONTEXT_KEYS = {"config", "acknowledged-issue-numbers"}


# Keys someone might use to put a token itself into a deployment: refused with a pointer to hf_token_secret.
_TOKEN_KEYS = {"hf_token", "hugging_face_hub_token", "huggingface_token", "hub_token", "token", "hf_api_token"}


# Settings whose bad values are not repeated in messages: a mistyped secret name may be the token itself.
_NOT_ECHOED = {"hf_token_secret"}


def _is_cdk_key(key: str) -> bool:
    return key in _CDK_CONTEXT_KEYS or ":" in key or key.startswith("@")


def read_deployment_file(path: str | Path) -> dict[str, Any]:
    """A deployment YAML file as a mapping, or a ConfigError naming the file and what is wrong with it (bounded: see
    :mod:`lmi_deploy.input_files`)."""
    data = input_files.load_yaml(Path(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{UNREADABLE_INPUT} deployment file {path} must hold a mapping of settings, not a {type(data).__name__}"
        )
    return data


def load_config(
    context: Mapping[str, Any] | None = None,
    *,
    environment_defaults: Mapping[str, Any] | None = None,
) -> DeploymentConfig:
    """Build the config from: built-in defaults < environment defaults < ``config`` file < other context values.

    ``context`` is the CDK context (or the scripts' ``-c key=value`` pairs); its ``config`` key names a deployment
    file. ``environment_defaults`` are values read from the environment (e.g. account and region of the
    credentials). Raises :class:`ConfigError` with one line per problem.
    """
    context = dict(context or {})
    values: dict[str, Any] = {k: v for k, v in (environment_defaults or {}).items() if v not in (None, "")}
    if context.get("config"):
        file_values = read_deployment_file(context["config"])
        # Paths in a deployment file are relative to that file ("a config.json next to it").
        for key in ("model_config", "dockerfile_dir"):
            if isinstance(file_values.get(key), str):
                relative = Path(context["config"]).parent / file_values[key]
                file_values[key] = str(relative) if relative.exists() else file_values[key]
        values.update(file_values)
        source = f" in {context['config']}"
    else:
        file_values, source = {}, ""
    values.update({k: v for k, v in context.items() if not _is_cdk_key(k)})
    facts, facts_note = model_facts.find(
        str(values.get("model_id") or DeploymentConfig.model_fields["model_id"].default),
        str(values.get("model_revision") or DeploymentConfig.model_fields["model_revision"].default),
        str(values["model_config"]) if values.get("model_config") else None,
    )
    try:
        return DeploymentConfig.model_validate(values, context={"facts": facts, "facts_note": facts_note})
    except ValidationError as error:
        raise ConfigError(_describe_all(error.errors(), set(file_values) - set(context), source)) from None


def _describe_all(errors: list[Any], from_file: set[str], file_source: str) -> str:
    """One line per bad key (a value failing every branch of a union is one problem, not one per branch)."""
    lines: dict[str, str] = {}
    for error in errors:
        loc = error["loc"]
        key = str(loc[0]) if loc else ""
        if len(loc) > 1 and isinstance(loc[1], int):  # items of a list setting are problems of their own
            key = ".".join(map(str, loc))
        line = _describe(error, from_file, file_source)
        if key and key in lines and error["type"] != "extra_forbidden":
            lines[key] += " or " + str(error["msg"]).removeprefix("Value error, ").lower()
        else:
            lines[key or line] = line
    return "\n".join(lines.values())


def _describe(error: Any, from_file: set[str], file_source: str) -> str:
    """One line for one pydantic error: the key, the bad value, and what is allowed."""
    key = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    where = file_source if key in from_file else ""
    if len(error["loc"]) > 1 and isinstance(error["loc"][1], int):  # an item of a list setting
        key += f"[{error['loc'][1]}]" + "".join(f".{part}" for part in error["loc"][2:])
    if error["type"] == "extra_forbidden" and key.lower().replace("-", "_") in _TOKEN_KEYS:
        return setting_rules.TOKEN_IN_CONFIG + (
            f" setting {key!r}{where} would put a Hub token in the config: store it in Secrets Manager and set "
            "hf_token_secret to the secret's name (the value is not shown here)"
        )
    if error["type"] == "extra_forbidden":
        known = [f.alias or name for name, f in DeploymentConfig.model_fields.items()]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known settings: {', '.join(known)}"
        return f"{setting_rules.UNKNOWN_SETTING} unknown setting {key!r}{where}{hint}"
    if not key:  # a cross-field rule: its message already names the keys and values
        return message
    if key in _NOT_ECHOED:
        return f"{setting_rules.INVALID_VALUE} invalid {key}{where} (the value is not shown here): {message}"
    return f"{setting_rules.INVALID_VALUE} invalid {key}={error['input']!r}{where}: {message}"
