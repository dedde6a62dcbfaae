"""A handler that reports what the runtime hands it: the ``model.py`` of the parity checks.

It is copied as ``model.py`` next to a ``serving.properties`` and run unmodified under lmi-deploy's runtime (the
tests) and under a release's real ``djl_python`` (``scripts/check_parity.py``), so it imports only ``djl_python``
and runs on Python 3.9. A request's JSON ``{"do": ...}`` picks what it does: ``echo`` (the default) answers its
properties, content and ``is_batch()`` (each request of a batch, split with ``get_batches()``); ``stream`` streams
three items; ``stream-list`` hands ``add_stream_content`` a list, not an iterator; ``raise`` raises ValueError;
``oom`` raises MemoryError; ``not-output`` returns a dict; ``getters`` calls ``Output.get_properties``.
"""

from __future__ import annotations  # the annotations below stay strings on Python 3.9

import json
from typing import Any

from djl_python import Input, Output

# What the engine and server vary per machine or per run: reported as present, not by value.
VOLATILE = ("model_dir", "device_id", "host", "content-length", "connection", "user-agent", "accept-encoding")
_warm_up: dict[str, str] = {}


def _stable(properties: dict[str, str]) -> dict[str, str]:
    return {k: ("<set>" if k.lower() in VOLATILE else v) for k, v in sorted(properties.items())}


def _keys(item: Input) -> list[str]:
    content = item.get_content()
    return list(content.get_keys()) if hasattr(content, "get_keys") else [k for k, _ in content]


def _decoded(item: Input) -> str:
    """What ``get_data()`` makes of the content: the type it returns, or the exception it raises."""
    try:
        return type(item.get_data()).__name__
    except Exception as error:  # the exception's type is the answer
        return f"raises {type(error).__name__}"


def _report(item: Input) -> dict[str, Any]:
    keys = _keys(item)
    data = item.get_as_bytes() if keys else None
    return {
        "properties": _stable(item.get_properties()),
        "content_keys": keys,
        "body": None if data is None else bytes(data).decode("utf-8", "replace"),
        "is_batch": item.is_batch(),
        "get_data": _decoded(item) if keys else None,
        "is_empty": item.is_empty(),
    }


def _command(item: Input) -> str:
    try:
        return str(json.loads(bytes(item.get_as_bytes() or b"{}").decode("utf-8")).get("do", "echo"))
    except (ValueError, AttributeError):
        return "echo"


def _echo(inputs: Input) -> Output:
    output = Output()
    output.add_property("content-type", "application/json")
    if inputs.is_batch():
        received = {"keys": _keys(inputs), "properties": sorted(inputs.get_properties())}
        for index, item in enumerate(inputs.get_batches()):
            output.add_as_json({**_report(item), "batch": received}, batch_index=index)
        return output
    report = _report(inputs)
    report["warm_up"] = _stable(_warm_up)
    return output.add_as_json(report)


def handle(inputs: Input) -> Output | None:
    if not _warm_up and inputs.is_empty():
        _warm_up.update(inputs.get_properties())
        return None
    command = _command(inputs) if not inputs.is_batch() else "echo"
    if command == "stream":
        return Output().add_stream_content(iter(["one", "two", {"three": 3}]))
    if command == "stream-list":
        return Output().add_stream_content(["one", "two"], output_formatter=None)
    if command == "raise":
        raise ValueError("probe failure")
    if command == "oom":
        raise MemoryError("probe ran out of memory")
    if command == "not-output":
        return {"not": "an Output"}  # deliberately not an Output
    if command == "getters":
        output = Output().add_property("x-probe", "1")
        return output.add_as_json({"properties": output.get_properties()})
    return _echo(inputs)
