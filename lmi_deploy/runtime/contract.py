"""What the LMI model server does around the handler, release by release: the properties it passes (warm-up and
per request), how it merges a batch into one Input and splits the Output, its own error replies, and streamed chunks.

:mod:`lmi_deploy.runtime.server` runs requests through these; :mod:`lmi_deploy.parity` checks them against a
release's djl_python.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmi_deploy.rules.properties_view import parse_properties
from lmi_deploy.runtime.djl_python.outputs import encode_chunk
from lmi_deploy.runtime.versions import (
    BATCH_REQUEST_PROPERTIES,
    MODEL_PROPERTIES_AT_WARM_UP,
    S3_WEIGHTS_DOWNLOAD,
    Release,
)

LOG = logging.getLogger("lmi_deploy.serve")
CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"
_BATCH_OUTPUT_KEY = re.compile(r"batch_(\d+)\.(.*)")
_RENDERED_TAG = re.compile(r"djl-inference:(\d+\.\d+\.\d+)")


@dataclass
class Reply:
    status: int
    body: bytes | Iterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    output: Any = None  # the handler's Output, for its finalize step


def error_reply(status: int, message: str, error: str) -> Reply:
    body = json.dumps({"code": status, "message": message, "error": error}).encode()
    return Reply(status, body, {"content-type": "application/json"})


@dataclass(frozen=True)
class ServingProperties:
    """A model's serving.properties as the server splits it: ``option.*`` (prefix stripped) and server keys."""

    options: dict[str, str]
    server: dict[str, str]
    version: str | None  # the container release named in the rendered file's header, if any


def read_serving_properties(model_code: Path) -> ServingProperties:
    text = (model_code / "serving.properties").read_text()
    options: dict[str, str] = {}
    server: dict[str, str] = {}
    for _, key, value in parse_properties(text):
        if key.startswith("option."):
            options[key.removeprefix("option.")] = value
        else:
            server[key] = value
    tag = _RENDERED_TAG.search(text.splitlines()[0] if text else "")
    return ServingProperties(options, server, tag.group(1) if tag else None)


def handler_properties(model_code: Path, model_dir: Path, release: Release | None = None) -> dict[str, str]:
    """The warm-up call's properties, as the release's server builds them (the engine then adds ``device_id`` and
    ``model_dir``, see ``ModelServer._engine``): the ``option.*`` values (prefix stripped), the model's properties
    (0.22.1+) and ``handler``.

    As in the container after the server's own S3 download (0.20+), an ``s3://`` weights location is replaced by the
    local copy (``model_dir``).
    """
    release = release or Release()
    settings = read_serving_properties(model_code)
    properties = dict(settings.options)
    for key in ("model_id", "s3url"):
        if properties.get(key, "").startswith("s3://") and release.has(S3_WEIGHTS_DOWNLOAD):
            properties[key] = str(model_dir)
    if release.has(MODEL_PROPERTIES_AT_WARM_UP):
        properties.update(settings.server)
        if int(settings.server.get("batch_size", "1")) > 1:
            properties["batchifier"] = "stack"
        workers_set = any(key in settings.server for key in ("maxWorkers", "gpu.maxWorkers"))
        tensor_parallel = settings.options.get("tensor_parallel_degree", "")
        if tensor_parallel.isdigit() and int(tensor_parallel) > 0 and not workers_set:
            properties["gpu.minWorkers"] = properties["gpu.maxWorkers"] = "1"
    properties.setdefault("handler", "handle")
    return properties


def request_properties(headers: dict[str, str]) -> dict[str, str]:
    """A request's properties as the server builds them: its headers, SageMaker's custom attributes split."""
    properties: dict[str, str] = {}
    for key, value in headers.items():
        if key.lower() == CUSTOM_ATTRIBUTES:
            for token in value.split(";"):
                name, sep, attribute = token.partition("=")
                if sep:
                    properties[name.strip()] = attribute.strip()
        else:
            properties[key] = value
    return properties


def merge_batch(
    release: Release, requests: list[tuple[bytes, dict[str, str]]]
) -> tuple[dict[str, str], list[tuple[str, bytes | bytearray]]]:
    """Several requests as one Input's (properties, content), as the release's ``PyPredictor.batchPredict`` merges
    them: ``batch_size``; each body as ``<prefix>data``; the headers as ``<prefix><header>`` (0.23+) or, before,
    the first request's headers unprefixed."""
    per_request = release.has(BATCH_REQUEST_PROPERTIES)
    properties = {} if per_request else request_properties(requests[0][1])
    properties["batch_size"] = str(len(requests))
    content: list[tuple[str, bytes | bytearray]] = []
    for index, (body, headers) in enumerate(requests):
        prefix = release.batch_prefix(index)
        if per_request:
            properties.update({prefix + k: v for k, v in request_properties(headers).items()})
        content.append((prefix + "data", bytearray(body)))
    return properties, content


def server_error(status: int, kind: str, message: str) -> Reply:
    """An error the Java server makes itself (NettyUtils.sendError): pretty JSON code, exception type, message."""
    body = json.dumps({"code": status, "type": kind, "message": message}, indent=2).encode()
    return Reply(status, body, {"content-type": "application/json"})


def split_batch_output(
    code: int, properties: dict[str, str], content: list[tuple[str | None, bytes]], size: int
) -> list[Reply]:
    """One reply per request of a batch, as the server splits the handler's Output: a TranslateException (400) when
    it has not one ``batch_<i>.`` entry per request."""
    if len(content) != size:
        mismatch = f"Batch output size mismatch, expected: {size}, actual: {len(content)}"
        return [server_error(400, "TranslateException", mismatch)] * size
    parts: list[list[tuple[str | None, bytes]]] = [[] for _ in range(size)]
    for key, data in content:
        match = _BATCH_OUTPUT_KEY.fullmatch(key or "")
        if match is None or int(match.group(1)) >= size:
            return [server_error(400, "TranslateException", f"Unexpected batch output key: {key}")] * size
        parts[int(match.group(1))].append((match.group(2), data))
    headers = {k.lower(): v for k, v in properties.items()}
    return [Reply(code, get_data(part), dict(headers)) for part in parts]


def get_data(content: list[tuple[str | None, bytes]]) -> bytes:
    """DJL's ``Output.getData()``: the ``data`` entry, else the first."""
    for key, data in content:
        if key == "data":
            return data
    return content[0][1] if content else b""


def stream_output(output: Any, cancelled: threading.Event | None = None) -> Iterator[bytes]:
    """The chunks the container sends: each item through the formatter; a failure ends the stream with its text.

    When the client goes away (the HTTP server closes this generator early) the request is cancelled and the
    handler's stream closed, so its generation stops.
    """
    formatter = output.stream_formatter
    stream = output.stream_content
    finished = False
    try:
        while True:
            try:
                item = next(stream)
            except StopIteration:
                finished = True
                return
            yield encode_chunk(formatter(item) if formatter else item)
    except Exception as error:  # the engine sends str(e) as the last chunk and ends the stream
        finished = True
        LOG.exception("streamed output failed")
        yield str(error).encode("utf-8")
    finally:
        if not finished:
            if cancelled is not None:
                cancelled.set()
            close = getattr(stream, "close", None)
            if close is not None:
                close()
