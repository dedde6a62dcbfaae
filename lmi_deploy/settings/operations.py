"""The config's fields on operating the endpoint: async inference, data capture, alarms, updates, the account."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from lmi_deploy.settings.endpoint import EndpointSettings
from lmi_deploy.settings.values import shown


class OperationsSettings(EndpointSettings):
    """Async inference, request limits, capture, alarms, updates, account/region, extra properties (last fields)."""

    inference_mode: Literal["realtime", "async"] = Field(
        "realtime",
        description="`async`: `AsyncInferenceConfig` - callers put the request in `s3://<bucket>/async-input/` and "
        "call `InvokeEndpointAsync`; SageMaker queues it and writes the response to `async_output_s3_path`. Permits "
        "scaling to zero. Same instance price; you pay for instances while they run.",
    )
    async_output_s3_path: str | None = Field(
        None,
        description="async: responses; failures under `failures/` below it. The role may write there only.",
        json_schema_extra=shown("`s3://<bucket>/async-output/`"),
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
        json_schema_extra=shown("SageMaker's"),
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
        json_schema_extra=shown("`60` (realtime: SageMaker's invocation timeout), `3600` (async)"),
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
        json_schema_extra=shown("`100` with `data_capture`"),
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
        json_schema_extra=shown("your credentials' account"),
    )
    bootstrap_version_rule: bool = Field(
        True,
        description="CDK's check of the bootstrap version on deploy; `lmi-deploy deploy-local` turns it off for "
        "the emulator.",
    )
    region: str = Field(
        "us-east-1",
        description="The stacks' region; the engine's image must exist there.",
        json_schema_extra=shown("your credentials' region, else `us-east-1`"),
    )
    extra_properties: dict[str, str] = Field(
        default_factory=dict,
        description="serving.properties lines lmi-deploy does not write itself (e.g. `option.trust_remote_code: "
        "'true'`), appended as they are; a key lmi-deploy writes from its own settings is refused (LMI808). "
        "`lmi-deploy import` fills it from an existing file.",
        json_schema_extra=shown("none"),
    )
