"""The local runtime behaves as each container release does (lmi_deploy.runtime.versions), with the parity probe.

The same behaviours ``scripts/check_parity.py`` compares against a release's real djl_python; here they are pinned
with lmi-deploy's own runtime, release by release.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy.containers import version_key
from lmi_deploy.runtime import PARITY_PROBE
from lmi_deploy.runtime.contract import Reply
from lmi_deploy.runtime.server import ModelServer

VERSIONS = ["0.20.0", "0.21.0", "0.22.1", "0.23.0", "0.24.0", "0.27.0", "0.31.0", "0.33.0", "0.36.0"]


def probe_server(folder: Path, version: str, properties: str = "") -> ModelServer:
    shutil.copy(PARITY_PROBE, folder / "model.py")
    (folder / "serving.properties").write_text(
        "engine=Python\noption.model_loading_timeout=60\noption.dtype=fp32\n" + properties
    )
    server = ModelServer(folder, folder, version=version).start()
    assert server.wait_ready(30), server.failure
    return server


def ask(server: ModelServer, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return server.submit(body, {"Content-Type": "application/json", **(headers or {})}).result(timeout=30)


def as_json(reply: Reply) -> Any:
    assert isinstance(reply.body, bytes)
    return json.loads(reply.body)


@pytest.mark.parametrize("version", VERSIONS)
def test_properties_the_handler_sees(tmp_path: Path, version: str) -> None:
    server = probe_server(tmp_path, version, "batch_size=2\noption.tensor_parallel_degree=1\n")
    reply = ask(server, b'{"do": "echo"}', {"X-Amzn-SageMaker-Custom-Attributes": "tenant=a; trace=7"})
    report = as_json(reply)
    # warm-up: the option.* values without the prefix, and handler ...
    expected = {
        "device_id": "<set>",
        "dtype": "fp32",
        "handler": "handle",
        "model_dir": "<set>",
        "model_loading_timeout": "60",
        "tensor_parallel_degree": "1",
    }
    if version_key(version) >= version_key(
        "0.22.1"
    ):  # ... and the model's properties: server keys, batchifier, the workers TP > 0 implies
        expected.update({"engine": "Python", "batch_size": "2", "batchifier": "stack"})
        expected.update({"gpu.minWorkers": "1", "gpu.maxWorkers": "1"})
    assert report["warm_up"] == expected
    # a request: its headers (custom attributes split), plus handler, device_id and model_dir; no option values
    assert report["properties"] == {
        "Content-Type": "application/json",
        "device_id": "<set>",
        "handler": "handle",
        "model_dir": "<set>",
        "tenant": "a",
        "trace": "7",
    }
    assert (report["is_batch"], report["is_empty"], report["content_keys"]) == (False, False, ["data"])
    # add_as_json writes indent=2 without a space after ':' (the container's encoder)
    assert reply.body.startswith(b'{\n  "properties":{') if isinstance(reply.body, bytes) else False


@pytest.mark.parametrize("version", VERSIONS)
def test_an_empty_body_reaches_the_handler(tmp_path: Path, version: str) -> None:
    report = as_json(ask(probe_server(tmp_path, version), b""))
    assert (report["body"], report["content_keys"], report["is_empty"]) == ("", ["data"], False)


@pytest.mark.parametrize(
    ("version", "prefix", "first_request_headers"),
    [
        ("0.21.0", "batch_0.", True),  # 0.20-0.22: the first request's headers, unprefixed, shared
        ("0.22.1", "batch_0.", True),
        ("0.23.0", "batch_0.", False),  # 0.23-0.24: batch_<i>.<header>, each item its own
        ("0.24.0", "batch_0.", False),
        ("0.25.0", "batch_000.", False),  # 0.25+: zero-padded
        ("0.36.0", "batch_000.", False),
    ],
)
def test_a_batch_is_keyed_and_split_as_the_release_does(
    tmp_path: Path, version: str, prefix: str, first_request_headers: bool
) -> None:
    server = probe_server(tmp_path, version, "batch_size=3\nmax_batch_delay=2000\n")
    headers = [{"Content-Type": "application/json", "X-Request": str(i)} for i in range(3)]
    headers[2]["Content-Type"] = "text/plain"
    futures = [server.submit(json.dumps({"id": i}).encode(), headers[i]) for i in range(3)]
    reports = [as_json(future.result(timeout=30)) for future in futures]
    assert [json.loads(r["body"])["id"] for r in reports] == [0, 1, 2]
    assert all(r["content_keys"] == ["data"] for r in reports)
    for index, report in enumerate(reports):
        expected = headers[0] if first_request_headers else headers[index]
        for key, value in expected.items():
            assert report["properties"][key] == value  # get_batches() keeps each request's content type (0.23+)
    received = reports[0]["batch"]
    assert (
        received["keys"] == [f"{prefix.replace('0', str(i))}data" for i in range(3)]
        if prefix == "batch_0."
        else [f"batch_{i:03d}.data" for i in range(3)]
    )
    if first_request_headers:  # one set of headers, shared by every item, with batch_size: is_batch() stays True
        assert "X-Request" in received["properties"] and reports[1]["properties"]["batch_size"] == "3"
    else:
        assert f"{prefix}X-Request" in received["properties"] and "X-Request" not in received["properties"]
    assert {r["is_batch"] for r in reports} == {first_request_headers}


@pytest.mark.parametrize(("version", "is_batch"), [("0.22.1", False), ("0.23.0", True), ("0.36.0", True)])
def test_is_batch_rule(version: str, is_batch: bool) -> None:
    from lmi_deploy.runtime import api_for
    from lmi_deploy.runtime.versions import Release

    Input, _ = api_for(Release(version))
    item = Input.of({"batch_size": "1"}, b"{}")
    assert item.is_batch() is is_batch
    zero_padded = Input.of({"batch_size": "1", "batch_000.content-type": "text/plain"})
    zero_padded.content = [("batch_000.data", b"x")]
    unpadded = Input.of({"batch_size": "1", "batch_0.content-type": "text/plain"})
    unpadded.content = [("batch_0.data", b"x")]
    if version == "0.36.0":
        assert zero_padded.get_batches()[0].get_property("Content-Type") == "text/plain"
        with pytest.raises(ValueError, match="invalid literal"):  # what 0.25+ does with batch_0.: the old local bug
            unpadded.get_batches()
    if version == "0.23.0":
        assert unpadded.get_batches()[0].get_as_bytes() == b"x"


@pytest.mark.parametrize(
    ("version", "status", "message"),
    [
        ("0.21.0", 424, "prediction failure"),
        ("0.30.0", 424, "prediction failure"),
        ("0.31.0", 424, "invoke handler failure"),
        ("0.36.0", 424, "invoke handler failure"),
    ],
)
def test_handler_exception(tmp_path: Path, version: str, status: int, message: str) -> None:
    server = probe_server(tmp_path, version)
    reply = ask(server, b'{"do": "raise"}')
    assert reply.status == status
    assert as_json(reply) == {"code": 424, "message": message, "error": "probe failure"}
    assert isinstance(reply.body, bytes) and reply.body.startswith(b'{\n  "code":424,')
    out_of_memory = ask(server, b'{"do": "oom"}')
    if version == "0.21.0":  # before 0.23 a MemoryError is an ordinary handler failure
        assert (out_of_memory.status, as_json(out_of_memory)["error"]) == (424, "probe ran out of memory")
    else:
        assert (out_of_memory.status, out_of_memory.body) == (507, b"")
    not_output = ask(server, b'{"do": "not-output"}')
    if version == "0.21.0":  # the engine's send() fails outside its try: the worker dies, the server answers 400
        assert (not_output.status, as_json(not_output)["message"]) == (400, "Python worker disconnected.")
    else:
        assert as_json(not_output)["error"] == "Invalid output type: <class 'dict'>"


@pytest.mark.parametrize(("version", "streams"), [("0.21.0", False), ("0.22.1", True), ("0.36.0", True)])
def test_streaming_exists_from_0_22_1(tmp_path: Path, version: str, streams: bool) -> None:
    server = probe_server(tmp_path, version)
    reply = ask(server, b'{"do": "stream"}')
    if not streams:
        assert reply.status == 424
        assert as_json(reply)["error"] == "'Output' object has no attribute 'add_stream_content'"
        return
    assert reply.status == 200 and not isinstance(reply.body, bytes)
    assert b"".join(reply.body) == b'{"outputs": "one"}\n{"outputs": "two"}\n{"outputs": {"three": 3}}\n'
    broken = ask(server, b'{"do": "stream-list"}')  # the engine calls next(): a list is not an iterator
    assert not isinstance(broken.body, bytes)
    assert b"".join(broken.body) == b"'list' object is not an iterator"


@pytest.mark.parametrize(("version", "has_getters"), [("0.32.0", False), ("0.33.0", True)])
def test_output_property_getters_from_0_33(tmp_path: Path, version: str, has_getters: bool) -> None:
    reply = ask(probe_server(tmp_path, version), b'{"do": "getters"}')
    if has_getters:
        assert as_json(reply) == {"properties": {"x-probe": "1"}}
    else:
        assert as_json(reply)["error"] == "'Output' object has no attribute 'get_properties'"


def test_the_version_comes_from_the_rendered_header(tmp_path: Path) -> None:
    shutil.copy(PARITY_PROBE, tmp_path / "model.py")
    (tmp_path / "serving.properties").write_text(
        "# Rendered by lmi-deploy for x (container djl-inference:0.21.0-deepspeed0.8.3-cu117). Do not edit.\n"
        "engine=Python\n"
    )
    assert ModelServer(tmp_path, tmp_path).release.version == "0.21.0"
    assert ModelServer(tmp_path, tmp_path, version="0.33.0").release.version == "0.33.0"


def test_a_batch_answered_once_is_the_servers_400(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(
        "from djl_python import Output\n\n\ndef handle(inputs):\n"
        "    return None if inputs.is_empty() else Output().add_as_json({'one': 'answer'})\n"
    )
    (tmp_path / "serving.properties").write_text("engine=Python\nbatch_size=2\nmax_batch_delay=2000\n")
    server = ModelServer(tmp_path, tmp_path, version="0.27.0").start()
    assert server.wait_ready(30), server.failure
    replies = [f.result(timeout=30) for f in [server.submit(b"{}", {}), server.submit(b"{}", {})]]
    assert {r.status for r in replies} == {400}
    assert as_json(replies[0]) == {
        "code": 400,
        "type": "TranslateException",
        "message": "Batch output size mismatch, expected: 2, actual: 1",
    }


@pytest.mark.parametrize(("version", "charset_json"), [("0.21.0", "bytearray"), ("0.22.1", "dict"), ("0.36.0", "dict")])
def test_get_data_decodes_as_the_release_does(tmp_path: Path, version: str, charset_json: str) -> None:
    server = probe_server(tmp_path, version)
    with_charset = as_json(ask(server, b'{"do": "echo"}', {"Content-Type": "application/json; charset=utf-8"}))
    assert with_charset["get_data"] == charset_json  # JSON by prefix from 0.22.1; the body is a bytearray, as there
    assert as_json(ask(server, b"a,b\n1,2\n", {"Content-Type": "text/csv"}))["get_data"] == "str"
    assert as_json(ask(server, b"", {"Content-Type": "application/json"}))["get_data"] == "raises JSONDecodeError"
