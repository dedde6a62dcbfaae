"""Hostile and careless requests against the real local endpoint serving the rendered Accelerate handler (tiny T5).

Nothing a client sends may exhaust the server or hold its worker: out-of-range parameters and oversized inputs are
400s before any work, generation stops at the deadline (504) or when the client leaves, a stuck worker turns /ping
503, every error is JSON, slow sockets are cut.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy.commands.local_aws import free_port
from lmi_deploy.config import load_config
from lmi_deploy.render import render
from lmi_deploy.runtime.server import ModelServer, serve
from tests.test_local_endpoint import get, post

REQUEST_TIMEOUT_S = 2
HEADER_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0
LONG = 2040  # new tokens that take the tiny T5 several seconds on a CPU (its max_sequence_length is 2048)


@pytest.fixture(scope="module")
def t5_endpoint(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    config = load_config(
        {
            "engine": "accelerate",
            "model_id": str(tiny_models["t5"]),
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "deployment": "tiny-t5-limits",
            "request_timeout": REQUEST_TIMEOUT_S,
        }
    )
    assert config.resolved.max_sequence_length == 2048
    code = render(config, tmp_path_factory.mktemp("code"))
    server = ModelServer(code.directory, tiny_models["t5"]).start()
    port = free_port()
    http = serve(server, "127.0.0.1", port, header_timeout=HEADER_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
    assert server.wait_ready(120), server.failure
    yield server, f"http://127.0.0.1:{port}", port
    http.shutdown()


def invoke(url: str, body: Any) -> tuple[int, dict[str, Any], float, str]:
    started = time.perf_counter()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer, headers = post(url, raw)
    return status, json.loads(answer), time.perf_counter() - started, headers.get("Content-Type", "")


def test_exhaustion_cases_are_refused_at_once_and_the_endpoint_stays_healthy(t5_endpoint) -> None:
    """Issue 12 defect 3: these grew the server past 12 GB or held it for 240 s while /ping said 200."""
    _, url, _ = t5_endpoint
    cases = {
        "max_new_tokens 2147483647": {"inputs": "x", "parameters": {"max_new_tokens": 2_147_483_647}},
        "200 kB prompt": {"inputs": "hello world " * 17_000, "parameters": {"max_new_tokens": 8}},
        "max_new_tokens 4194304": {"inputs": "x", "parameters": {"max_new_tokens": 4_194_304}},
    }
    for name, body in cases.items():
        status, answer, seconds, _ = invoke(url, body)
        ping = get(url + "/ping")
        print(f"{name}: {status} in {seconds * 1000:.0f} ms; /ping after: {ping[0]} {ping[1].decode()}")
        assert status == 400 and answer["code"] == 400, (name, answer)
        assert "max_sequence_length" in answer["error"]
        assert seconds < 1.0, (name, seconds)
        assert ping == (200, b'{"status": "Healthy"}')


CLIENT_FAULTS = {  # the kinds a probe saw answered 424 (a model fault) before, and the parameter named in the error
    "max_new_tokens 0": ({"max_new_tokens": 0}, "'max_new_tokens'=0 is out of range"),
    "max_new_tokens negative": ({"max_new_tokens": -5}, "'max_new_tokens'=-5 is out of range"),
    "max_new_tokens NaN": (b'{"inputs": "x", "parameters": {"max_new_tokens": NaN}}', "'max_new_tokens' must be"),
    "max_new_tokens Infinity": (b'{"inputs": "x", "parameters": {"max_new_tokens": Infinity}}', "finite"),
    "max_new_tokens 1e300": ({"max_new_tokens": 1e300}, "'max_new_tokens'="),
    "min_new_tokens negative": ({"min_new_tokens": -1}, "'min_new_tokens'=-1 is out of range"),
    "num_beams 0": ({"num_beams": 0}, "'num_beams'=0 is out of range: it must be in [1, 16]"),
    "num_beams negative": ({"num_beams": -3}, "'num_beams'=-3"),
    "top_k negative": ({"top_k": -1}, "'top_k'=-1"),
    "top_p 0 with sampling": ({"do_sample": True, "top_p": 0}, "'top_p'=0.0 is out of range: it must be in (0, 1]"),
    "temperature NaN with sampling": (
        b'{"inputs": "x", "parameters": {"do_sample": true, "temperature": NaN}}',
        "'temperature' must be a finite number",
    ),
    "repetition_penalty 0": ({"repetition_penalty": 0}, "'repetition_penalty'=0.0"),
    "no_repeat_ngram_size negative": ({"no_repeat_ngram_size": -2}, "'no_repeat_ngram_size'=-2"),
    "seed negative": ({"seed": -1}, "'seed'=-1"),
    "JSON nested 100k deep": (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    # nonsense a probe saw answered 200
    "top_p 2": ({"top_p": 2}, "'top_p'=2.0 is out of range"),
    "temperature -1 with sampling": ({"do_sample": True, "temperature": -1}, "'temperature'=-1.0"),
    "min_new_tokens above max_new_tokens": (
        {"min_new_tokens": 9, "max_new_tokens": 4},
        "'min_new_tokens'=9 is more than 'max_new_tokens'=4",
    ),
    "num_beams 100000": ({"num_beams": 100_000}, "'num_beams'=100000"),
    # and the lengths the tokenizer measures: 3000 tokens of input are more than 2048
    "input over max_sequence_length tokens": (b"long input", "input 0 is 3000 tokens"),
    "temperature 0 with sampling": ({"do_sample": True, "temperature": 0}, "cannot sample"),
}


@pytest.mark.parametrize("kind", CLIENT_FAULTS)
def test_client_faults_are_json_400s_that_name_the_parameter(t5_endpoint, kind: str) -> None:
    _, url, _ = t5_endpoint
    body, expected = CLIENT_FAULTS[kind]
    if body == b"long input":
        body = {"inputs": "a" * 3000}
    elif isinstance(body, dict):
        body = {"inputs": "x", "parameters": body}
    status, answer, seconds, content_type = invoke(url, body)
    assert (status, answer["code"], content_type) == (400, 400, "application/json"), answer
    assert expected in answer["error"], answer["error"]
    assert seconds < 1.0


@pytest.mark.parametrize("fast", [False, True], ids=["generate", "static-cache-loop"])
def test_generation_stops_at_the_deadline(t5_endpoint, fast: bool) -> None:
    """Both decode paths: generate() (min_new_tokens forces it) and the static-cache loop (greedy: the tiny random
    T5 repeats its padding token and never ends a sequence by itself)."""
    _, url, _ = t5_endpoint
    parameters: dict[str, Any] = {"max_new_tokens": LONG} if fast else {"max_new_tokens": LONG, "min_new_tokens": LONG}
    status, answer, seconds, _ = invoke(url, {"inputs": "x", "parameters": parameters})
    assert status == 504 and answer["code"] == 504, answer
    assert f"stopped at the {REQUEST_TIMEOUT_S} s request deadline (option.request_timeout)" in answer["error"]
    assert REQUEST_TIMEOUT_S <= seconds < REQUEST_TIMEOUT_S + 1.5  # one decode step past it, on a busy machine
    assert get(url + "/ping")[0] == 200


def test_a_stream_past_the_deadline_ends_with_an_error_line(t5_endpoint) -> None:
    from lmi_deploy.client import UrlClient

    _, url, _ = t5_endpoint
    started = time.perf_counter()
    parameters = {"max_new_tokens": LONG, "min_new_tokens": LONG}
    chunks = list(UrlClient(url).stream({"inputs": "x", "parameters": parameters, "stream": True}))
    *lines, last = b"".join(chunks).decode().splitlines()
    assert REQUEST_TIMEOUT_S <= time.perf_counter() - started < REQUEST_TIMEOUT_S + 1.5
    assert lines and all("outputs" in json.loads(line) for line in lines)
    # the container ends a failed stream with the error's text as the last chunk
    assert f"generation stopped at the {REQUEST_TIMEOUT_S} s request deadline (option.request_timeout) after" in last


def count_steps(server: ModelServer) -> list[int]:
    """Wrap the served model's forward: one call per decode step (and the encoder)."""
    model = server._handler.HANDLER.loaded[0]
    steps = [0]
    forward = model.forward

    def counted(*args: Any, **kwargs: Any) -> Any:
        steps[0] += 1
        return forward(*args, **kwargs)

    model.forward = counted
    return steps


def raw_request(port: int, body: dict[str, Any]) -> socket.socket:
    data = json.dumps(body).encode()
    connection = socket.create_connection(("127.0.0.1", port))
    head = f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    connection.sendall(head.encode() + b"\r\n" + data)
    return connection


def settle(steps: list[int], quiet_s: float = 0.4, limit_s: float = 5.0) -> tuple[int, float]:
    """Wait until no step ran for ``quiet_s``: the final count and when it stopped moving."""
    started = time.monotonic()
    last, changed = steps[0], time.monotonic()
    while time.monotonic() - started < limit_s:
        time.sleep(0.05)
        if steps[0] != last:
            last, changed = steps[0], time.monotonic()
        elif time.monotonic() - changed >= quiet_s:
            break
    return last, changed


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_client_that_leaves_stops_its_generation(t5_endpoint, stream: bool) -> None:
    """Issue 12 defect 4: dropped streams kept generating; an abandoned request held the only worker for 203 s."""
    server, url, port = t5_endpoint
    steps = count_steps(server)
    body = {"inputs": "x", "parameters": {"max_new_tokens": LONG, "min_new_tokens": LONG}, "stream": stream}
    connection = raw_request(port, body)
    if stream:
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")  # generating, first chunks on their way
    waited = time.monotonic()
    while steps[0] < 3 and time.monotonic() - waited < 10:  # generating (slowly, on a busy machine)
        time.sleep(0.02)
    before = steps[0]
    time.sleep(0.3)
    at_close = steps[0]
    assert at_close > before  # still generating when the client leaves (not cancelled early, not finished)
    connection.close()
    closed = time.monotonic()
    final, stopped = settle(steps)
    print(
        f"stream={stream}: {at_close} steps before the client left, {final - at_close} after, stopped in "
        f"{max(0.0, stopped - closed) * 1000:.0f} ms"
    )
    assert final - at_close <= 150, (at_close, final)  # ~0.1 s of steps: the poll interval
    assert final < LONG / 2  # far from the whole generation (or the deadline's share of it)
    started = time.perf_counter()
    status = invoke(url, {"inputs": "x", "parameters": {"max_new_tokens": 2}})[0]
    assert status == 200 and time.perf_counter() - started < 1.5  # the worker is free again (not at the deadline)


def read_to_end(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (as it does after an error)."""
    connection.settimeout(5)
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_http_errors_are_json(t5_endpoint) -> None:
    _, url, port = t5_endpoint
    status, body = get(url + "/nothing-here")
    assert status == 404 and json.loads(body)["code"] == 404
    status, body = get(url + "/invocations")
    assert status == 405 and json.loads(body)["message"] == "Method Not Allowed"
    status, answer, _, content_type = invoke(url, b'{"inputs": "' + b"x" * 6_300_000 + b'"}')
    assert (status, content_type) == (413, "application/json") and "6291456-byte payload limit" in answer["error"]
    for head in (b"X-Big: " + b"a" * 70_000, b"".join(b"X-%d: 1\r\n" % i for i in range(120)).rstrip()):
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n")
            reply = read_to_end(connection)
        assert reply.startswith(b"HTTP/1.1 431") and b"Content-Type: application/json" in reply
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["code"] == 431


def test_slow_sockets_are_cut(t5_endpoint) -> None:
    _, url, port = t5_endpoint
    # a head dripped a byte at a time: 408 once the head timeout passes, however steadily it drips
    with socket.create_connection(("127.0.0.1", port)) as connection:
        started = time.monotonic()
        reply = b""
        try:
            for byte in b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100:
                connection.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass  # cut
        reply = read_to_end(connection)
        assert reply.startswith(b"HTTP/1.1 408") and json.loads(reply.split(b"\r\n\r\n", 1)[1])["code"] == 408
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 1.5
    # a body that stalls: the connection is closed after the read timeout, the worker never sees it
    with socket.create_connection(("127.0.0.1", port)) as connection:
        started = time.monotonic()
        connection.sendall(b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"inputs"')
        connection.settimeout(READ_TIMEOUT_S + 3)
        while connection.recv(4096):
            pass
        assert READ_TIMEOUT_S - 0.5 <= time.monotonic() - started < READ_TIMEOUT_S + 2
    assert get(url + "/ping")[0] == 200


STUCK_HANDLER = """
import time

from djl_python import Input, Output  # noqa: F401  (the server builds requests with the handler's Input)


def handle(inputs):
    if inputs.is_empty():
        return None
    time.sleep(float(inputs.get_as_string()))  # a handler that ignores the deadline
    return Output().add("done")
"""


def test_a_worker_stuck_past_the_deadline_fails_ping_until_it_recovers(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(STUCK_HANDLER)
    (tmp_path / "serving.properties").write_text("engine=Python\noption.request_timeout=1\n")
    server = ModelServer(tmp_path, tmp_path).start()
    port = free_port()
    http = serve(server, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    try:
        assert server.wait_ready(10)
        started = time.perf_counter()
        status, body, _ = post(url, b"3")
        assert status == 504 and "no answer within request_timeout=1 s" in json.loads(body)["error"]
        assert 1.0 <= time.perf_counter() - started < 2.5  # the deadline + half of it as grace
        status, body = get(url + "/ping")
        assert status == 503 and "past request_timeout=1 s" in json.loads(body)["error"]
        time.sleep(2)  # the handler returns at 3 s
        assert get(url + "/ping") == (200, b'{"status": "Healthy"}')
        assert post(url, b"0.1")[:2] == (200, b"done")
    finally:
        http.shutdown()


def test_request_timeout_setting_is_rendered_for_our_handlers_and_bounded_by_sagemaker() -> None:
    from lmi_deploy.errors import ConfigError
    from lmi_deploy.render import render_files

    seed = load_config({})
    assert seed.request_timeout_s == 60 and "option.request_timeout=60\n" in render_files(seed)["serving.properties"]
    model_py = render_files(seed)["model.py"]
    assert "REQUEST_TIMEOUT_S = 60" in model_py and "'max_new_tokens': [1, 2048]" in model_py
    queued = load_config({"inference_mode": "async", "request_timeout": 900})
    assert "option.request_timeout=900\n" in render_files(queued)["serving.properties"]
    assert load_config({"inference_mode": "async"}).request_timeout_s == 3600
    builtin = load_config({"handler": "builtin"})
    assert "request_timeout" not in render_files(builtin)["serving.properties"]  # DJL's own handler ignores it
    with pytest.raises(ConfigError, match=r"request_timeout=120 is past SageMaker's 60 s real-time invocation"):
        load_config({"request_timeout": 120})
