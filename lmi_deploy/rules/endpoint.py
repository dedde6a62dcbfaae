"""The endpoint's form: its image, asynchronous inference and data capture."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from lmi_deploy.request_limits import REALTIME_REQUEST_TIMEOUT_S
from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View

_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)", re.IGNORECASE | re.MULTILINE)


def dockerfile_problem(folder: str | None) -> str | None:
    """What keeps ``folder`` from building a custom LMI image, or None: a Dockerfile whose first stage is the LMI
    image lmi-deploy passes as the BASE_IMAGE build argument (so the engine and version stay the validated ones)."""
    if not folder:
        return "set dockerfile_dir to a folder with a Dockerfile that starts FROM ${BASE_IMAGE}"
    dockerfile = Path(folder) / "Dockerfile"
    if not dockerfile.is_file():
        return f"{dockerfile} does not exist; dockerfile_dir must be a folder with a Dockerfile"
    text = dockerfile.read_text(errors="replace")
    first = _FROM.search(text)
    if first is None:
        return f"{dockerfile} has no FROM line; start it with ARG BASE_IMAGE and FROM ${{BASE_IMAGE}}"
    if first.group("image") not in ("${BASE_IMAGE}", "$BASE_IMAGE"):
        return (
            f"{dockerfile} starts FROM {first.group('image')}, not FROM ${{BASE_IMAGE}}: lmi-deploy passes the "
            "validated LMI image as the BASE_IMAGE build argument; use ARG BASE_IMAGE and FROM ${BASE_IMAGE}"
        )
    if not re.search(r"^\s*ARG\s+BASE_IMAGE\b", text, re.IGNORECASE | re.MULTILINE):
        return f"{dockerfile} uses ${{BASE_IMAGE}} without declaring it: add ARG BASE_IMAGE before the FROM"
    return None


@rule(
    "LMI641",
    title="image=custom without a usable Dockerfile",
    why="The custom image must build FROM the validated LMI image, or the engine and version checked here are not "
    "the ones deployed.",
    fix="Point dockerfile_dir at a folder whose Dockerfile starts ARG BASE_IMAGE / FROM ${BASE_IMAGE}.",
    example=Example(settings={"image": "custom"}),
    needs=("config",),
)
def custom_image_dockerfile(view: View, derived: Derived) -> Iterator[str]:
    if view.config.image == "custom":
        problem = dockerfile_problem(view.config.dockerfile_dir)
        if problem:
            yield f"image=custom: {problem}"


@rule(
    "LMI642",
    title="dockerfile_dir without image=custom",
    why="Only image=custom builds the Dockerfile; otherwise it is silently unused.",
    fix="Set image=custom, or remove dockerfile_dir.",
    example=Example(settings={"dockerfile_dir": "docker"}),
    needs=("config",),
)
def dockerfile_needs_custom_image(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    if c.image != "custom" and c.dockerfile_dir is not None:
        yield (
            f"dockerfile_dir={c.dockerfile_dir!r} is only built with image=custom (this is image={c.image}): set "
            "image=custom, or remove dockerfile_dir"
        )


@rule(
    "LMI643",
    title="Asynchronous settings on a real-time endpoint",
    why="They configure AsyncInferenceConfig, which a real-time endpoint does not have: silently unused.",
    fix="Set inference_mode=async, or remove them.",
    example=Example(settings={"async_notifications": "true"}),
    needs=("config",),
)
def async_settings_need_async(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    if c.inference_mode != "realtime":
        return
    for key, default in (
        ("async_output_s3_path", None),
        ("async_notifications", False),
        ("async_max_concurrent_invocations", None),
    ):
        value = getattr(c, key)
        if value != default:
            yield f"{key}={value!r} applies to asynchronous endpoints only: set inference_mode=async, or remove it"


@rule(
    "LMI645",
    title="Traffic shifting on an endpoint that may have no instances",
    why="Canary and linear updates shift a share of the instances; an async endpoint scaled to zero has none.",
    fix="Use update_strategy=all-at-once, or a minimum of 1 instance.",
    example=Example(
        settings={
            "inference_mode": "async",
            "autoscaling_max_instances": "2",
            "autoscaling_min_instances": "0",
            "update_strategy": "canary",
        }
    ),
    needs=("config",),
)
def shifting_needs_instances(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    if c.inference_mode == "async" and c.minimum_instances == 0 and c.update_strategy != "all-at-once":
        yield (
            f"update_strategy={c.update_strategy} shifts a share of the instances at a time, but this endpoint may "
            "have none when an update runs (it scales to zero): use update_strategy=all-at-once, or a minimum of 1"
        )


@rule(
    "LMI646",
    title="data_capture_sampling_percent without data capture",
    why="Nothing is captured while data_capture is off.",
    fix="Set data_capture=true, or remove the percentage.",
    example=Example(settings={"data_capture_sampling_percent": "50"}),
    needs=("config",),
)
def sampling_needs_capture(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    if c.data_capture_sampling_percent is not None and not c.data_capture:
        yield (
            f"data_capture_sampling_percent={c.data_capture_sampling_percent} without data_capture=true captures "
            "nothing: set data_capture=true, or remove it"
        )


@rule(
    "LMI647",
    title="request_timeout past SageMaker's real-time invocation timeout",
    why=f"SageMaker answers a real-time caller with an error after {REALTIME_REQUEST_TIMEOUT_S} s while the model "
    "keeps working on the request.",
    fix=f"Use at most {REALTIME_REQUEST_TIMEOUT_S}, or inference_mode=async.",
    example=Example(settings={"request_timeout": "300"}),
    needs=("config",),
)
def request_timeout_realtime(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    if c.inference_mode == "realtime" and (c.request_timeout or 0) > REALTIME_REQUEST_TIMEOUT_S:
        yield (
            f"request_timeout={c.request_timeout} is past SageMaker's {REALTIME_REQUEST_TIMEOUT_S} s real-time "
            f"invocation timeout: the caller is answered with an error at {REALTIME_REQUEST_TIMEOUT_S} s while the "
            f"model keeps working; use at most {REALTIME_REQUEST_TIMEOUT_S}, or inference_mode=async"
        )


@rule(
    "LMI648",
    title="A latency alarm threshold the model latency can never reach",
    why="The handler stops every request at its deadline (request_timeout; SageMaker's own 60 s on a real-time "
    "endpoint), so the p99 model latency never passes it: the alarm, and the rollback it triggers, never fire.",
    fix="Set alarm_model_latency_p99_ms below the request deadline (in ms), or raise request_timeout (async).",
    example=Example(settings={"alarm_model_latency_p99_ms": "90000"}),
    needs=("config",),
    level="warning",
)
def latency_alarm_reachable(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    deadline_ms = c.request_timeout_s * 1000
    if c.alarm_model_latency_p99_ms >= deadline_ms:
        yield (
            f"alarm_model_latency_p99_ms={c.alarm_model_latency_p99_ms} is not below the request deadline "
            f"({c.request_timeout_s} s): requests stop there, so the latency alarm and its rollback never fire; "
            f"use less than {deadline_ms}"
        )
