"""The rendered handlers, really run: over HTTP through the local endpoint, with tiny models made in the tests."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
import time
import types
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy.client import EndpointError, UrlClient
from lmi_deploy.commands import benchmark, invoke
from lmi_deploy.commands.local_aws import free_port
from lmi_deploy.config import load_config
from lmi_deploy.render import render
from lmi_deploy.runtime.server import ModelServer, serve


def start(model_code: Path, model_dir: Path) -> tuple[ModelServer, Any, str]:
    server = ModelServer(model_code, model_dir).start()
    port = free_port()
    http = serve(server, "127.0.0.1", port)
    return server, http, f"http://127.0.0.1:{port}"


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post(url: str, body: bytes) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


@pytest.fixture(scope="module")
def accelerate_t5(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    config = load_config(
        {
            "engine": "accelerate",
            "model_id": str(tiny_models["t5"]),
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "deployment": "tiny-t5",
        }
    )
    code = render(config, tmp_path_factory.mktemp("code"))
    server, http, url = start(code.directory, tiny_models["t5"])
    assert server.wait_ready(120), server.failure
    yield url
    http.shutdown()


def reference(model_dir: Path, prompts: list[str], max_new_tokens: int, causal: bool = False) -> list[str]:
    """Plain transformers generate on the same weights: what the handler must answer (greedy)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left" if causal else "right")
    model = (AutoModelForCausalLM if causal else AutoModelForSeq2SeqLM).from_pretrained(model_dir).eval()
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        ids = model.generate(**encoded, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    if causal:
        ids = ids[:, encoded["input_ids"].shape[1] :]
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


def test_accelerate_t5_end_to_end(accelerate_t5: str, tiny_models: dict[str, Path]) -> None:
    assert get(accelerate_t5 + "/ping")[0] == 200
    prompts = ["translate English to German: the house is wonderful", "summarize: the quick brown fox"]
    status, body, headers = post(
        accelerate_t5, json.dumps({"inputs": prompts, "parameters": {"max_new_tokens": 6}}).encode()
    )
    assert status == 200 and headers.get("Content-Type") == "application/json"
    answer = json.loads(body)
    assert answer["outputs"] == reference(tiny_models["t5"], prompts, 6)
    assert len(answer["generated_tokens"]) == 2 and all(1 <= n <= 6 for n in answer["generated_tokens"])
    status, body, _ = post(
        accelerate_t5, json.dumps({"inputs": prompts[0], "parameters": {"max_new_tokens": 2}}).encode()
    )
    assert json.loads(body)["outputs"] == reference(tiny_models["t5"], prompts[:1], 2)  # max_new_tokens honoured
    assert json.loads(body)["generated_tokens"][0] <= 2

    status, body, _ = post(accelerate_t5, b"{not json")
    assert status == 400 and "request body is not valid JSON" in json.loads(body)["error"]
    status, body, _ = post(accelerate_t5, json.dumps({"inputs": "x", "parameters": {"max_tokens": 3}}).encode())
    assert status == 400 and "unsupported parameter(s) ['max_tokens']" in json.loads(body)["error"]
    status, body, _ = post(accelerate_t5, b"")  # an empty body reaches the handler, as in the container
    assert status == 400 and json.loads(body)["error"].startswith("request body is not valid JSON")
    # a parameter the model cannot take is the client's fault, refused before the model runs (was a 424)
    status, body, _ = post(accelerate_t5, json.dumps({"inputs": "x", "parameters": {"num_beams": 0}}).encode())
    assert status == 400 and "parameter 'num_beams'=0 is out of range" in json.loads(body)["error"]


def test_accelerate_llama_streams_what_it_generates(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    config = load_config(
        {
            "engine": "accelerate",
            "model_id": str(tiny_models["llama"]),
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "deployment": "tiny-llama",
        }
    )
    code = render(config, tmp_path)
    server, http, url = start(code.directory, tiny_models["llama"])
    try:
        assert server.wait_ready(120), server.failure
        prompt = "question: what is the capital of France? answer:"
        expected = reference(tiny_models["llama"], [prompt], 8, causal=True)[0]
        chunks = list(UrlClient(url).stream({"inputs": prompt, "parameters": {"max_new_tokens": 8}, "stream": True}))
        lines = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
        assert "".join(line["outputs"] for line in lines) == expected
        batch = UrlClient(url).invoke({"inputs": [prompt, "hello"], "parameters": {"max_new_tokens": 8}})
        assert batch["outputs"] == reference(tiny_models["llama"], [prompt, "hello"], 8, causal=True)
        status, body, _ = post(url, json.dumps({"inputs": ["a", "b"], "stream": True}).encode())
        assert status == 400 and "exactly one input" in json.loads(body)["error"]
    finally:
        http.shutdown()


BATCHING_HANDLER = """
import json
import os
import time

from djl_python import Input, Output

calls = []


def handle(inputs):
    if inputs.is_empty():
        time.sleep(float(inputs.get_properties().get("load_seconds", "0")))
        return None
    batches = inputs.get_batches() if inputs.is_batch() else [inputs]
    calls.append(len(batches))
    output = Output()
    for i, item in enumerate(batches):
        body = item.get_as_json()
        if body.get("boom"):
            raise RuntimeError("handler exploded")
        if body.get("oom"):
            raise MemoryError("CUDA out of memory")
        answer = {"echo": body["id"], "batch": len(batches)}
        if inputs.is_batch():
            output.add_as_json(answer, batch_index=i)
        else:
            output.add_as_json(answer)
    return output
"""


def batching_endpoint(tmp_path: Path, properties: str) -> tuple[ModelServer, Any, str]:
    (tmp_path / "model.py").write_text(BATCHING_HANDLER)
    (tmp_path / "serving.properties").write_text("engine=Python\noption.model_loading_timeout=60\n" + properties)
    return start(tmp_path, tmp_path)


def test_ping_before_and_after_load_and_dynamic_batching(tmp_path: Path) -> None:
    server, http, url = batching_endpoint(tmp_path, "option.load_seconds=0.5\nbatch_size=4\nmax_batch_delay=200\n")
    try:
        assert get(url + "/ping")[0] == 503  # still loading
        assert post(url, b'{"id": 1}')[0] == 503
        assert server.wait_ready(10)
        assert get(url + "/ping") == (200, b'{"status": "Healthy"}')
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda i: post(url, json.dumps({"id": i}).encode()), range(4)))
        assert [json.loads(body)["echo"] for _, body, _ in replies] == [0, 1, 2, 3]
        assert max(json.loads(body)["batch"] for _, body, _ in replies) > 1  # served together, split back apart
        status, body, _ = post(url, b'{"id": 9, "boom": true}')
        assert status == 424 and json.loads(body)["error"] == "handler exploded"  # str(e), as the engine sends it
        status, body, _ = post(url, b'{"id": 9, "oom": true}')
        assert (status, body) == (507, b"")  # MemoryError: 507 with the message as the reason, no body
    finally:
        http.shutdown()


def test_bounded_load_loses_nothing(tmp_path: Path) -> None:
    server, http, url = batching_endpoint(tmp_path, "batch_size=8\nmax_batch_delay=5\n")
    try:
        assert server.wait_ready(10)
        client = UrlClient(url)
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: client.invoke({"id": i}), range(500)))
        assert time.monotonic() - started < 60
        assert sorted(a["echo"] for a in answers) == list(range(500))  # every response accounted for, once
    finally:
        http.shutdown()


def test_queue_full_is_a_503(tmp_path: Path) -> None:
    server, http, url = batching_endpoint(tmp_path, "job_queue_size=1\n")
    try:
        assert server.wait_ready(10)
        server._handler.handle = lambda inputs: time.sleep(0.3) or server._handler.Output()  # a slow model
        with ThreadPoolExecutor(6) as pool:
            statuses = sorted(status for status, _, _ in pool.map(lambda i: post(url, b'{"id": 1}'), range(6)))
        assert 503 in statuses and statuses.count(200) >= 1
    finally:
        http.shutdown()


def test_invoke_and_benchmark_against_the_local_endpoint(
    accelerate_t5: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke.main(["--url", accelerate_t5, "--prompt", "summarize: a b c", "--param", "max_new_tokens=3"]) == 0
    assert "outputs" in json.loads(capsys.readouterr().out)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("translate English to German: hi\nsummarize: x\n")
    assert invoke.main(["--url", accelerate_t5, "--prompts", str(prompts)]) == 0
    assert len(json.loads(capsys.readouterr().out)["outputs"]) == 2
    assert invoke.main(["--url", accelerate_t5, "--prompt", "x", "--param", "max_tokens=3"]) == 1
    assert "the endpoint answered 400" in capsys.readouterr().err
    assert invoke.main(["--url", accelerate_t5]) == 2

    out = tmp_path / "bench"
    assert (
        benchmark.main(
            [
                "--url",
                accelerate_t5,
                "--requests",
                "12",
                "--concurrency",
                "1,4",
                "--preset",
                "seed",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "p99" in printed
    rows = list(csv.DictReader((out / "benchmark.csv").open()))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    assert all(int(r["errors"]) == 0 and int(r["requests"]) == 12 for r in rows)
    assert all(float(r["tokens_per_s"]) > 0 for r in rows)
    assert float(rows[0]["p50_ms"]) <= float(rows[0]["p99_ms"])
    assert (out / "benchmark.png").read_bytes()[:4] == b"\x89PNG"


def test_invoke_through_sagemaker_runtime_reports_the_containers_error(capsys: pytest.CaptureFixture[str]) -> None:
    from botocore.exceptions import ClientError

    class Runtime:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            if b"fail" in kwargs["Body"]:
                raise ClientError(
                    {
                        "Error": {"Code": "ModelError", "Message": "Received client error (400)"},
                        "OriginalStatusCode": 400,
                        "OriginalMessage": '{"error": "bad parameter"}',
                    },
                    "InvokeEndpoint",
                )
            return {"Body": types.SimpleNamespace(read=lambda: b'{"outputs": ["ok"]}')}

    runtime = Runtime()
    assert invoke.main(["--endpoint", "flan", "--prompt", "hi"], runtime=runtime) == 0
    assert json.loads(capsys.readouterr().out) == {"outputs": ["ok"]}
    assert runtime.calls[0]["EndpointName"] == "flan" and json.loads(runtime.calls[0]["Body"]) == {
        "inputs": ["hi"],
        "parameters": {},
    }
    assert invoke.main(["--endpoint", "flan", "--prompt", "fail"], runtime=runtime) == 1
    assert 'the endpoint answered 400: {"error": "bad parameter"}' in capsys.readouterr().err
    with pytest.raises(EndpointError) as raised:
        invoke.SageMakerClient(runtime, "flan").invoke({"inputs": ["fail"]})
    assert (raised.value.status, raised.value.message) == (400, '{"error": "bad parameter"}')


def test_invoke_through_moto(capsys: pytest.CaptureFixture[str]) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
        assert (
            invoke.main(["--endpoint", "flan-t5-xxl", "--prompt", "hi", "--param", "max_new_tokens=8"], runtime=runtime)
            == 0
        )
    assert capsys.readouterr().out.strip()  # moto's canned answer, printed


def test_deepspeed_handler_against_a_fake_deepspeed(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DeepSpeed custom handler on a real tiny model, with deepspeed faked to check the init_inference contract."""
    calls: list[dict[str, Any]] = []

    def init_inference(model: Any, **kwargs: Any) -> Any:
        import torch

        assert kwargs["tensor_parallel"] == {"tp_size": 1} and kwargs["replace_with_kernel_inject"] is True
        assert kwargs["dtype"] is torch.float32 and isinstance(kwargs["max_tokens"], int)
        calls.append(kwargs)
        return types.SimpleNamespace(module=model)

    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(init_inference=init_inference))
    config = load_config(
        {
            "engine": "deepspeed",
            "model_id": str(tiny_models["llama"]),
            "model_type": "llama",
            "lmi_version": "0.27.0",
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "deployment": "tiny-ds",
        }
    )
    code = render(config, tmp_path)
    server, http, url = start(code.directory, tiny_models["llama"])
    try:
        assert server.wait_ready(60), server.failure
        answer = UrlClient(url).invoke({"inputs": ["hello", "question:"], "parameters": {"max_new_tokens": 4}})
        assert answer["outputs"] == reference(tiny_models["llama"], ["hello", "question:"], 4, causal=True)
        assert len(calls) == 1 and calls[0]["max_tokens"] == config.resolved.max_sequence_length
    finally:
        http.shutdown()
    # past option.request_timeout generation stops with a 504 (it had no deadline: a request could run forever)
    from lmi_deploy.runtime import api_for, load_handler
    from lmi_deploy.runtime.versions import Release

    input_class, _ = api_for(Release())
    handler = load_handler(code.directory / "model.py").HANDLER
    loaded = handler.load({"model_id": str(tiny_models["llama"]), "dtype": "fp32", "request_timeout": "0.001"})
    body = {"inputs": ["hello"], "parameters": {"max_new_tokens": 64, "min_new_tokens": 64}}
    answer = handler.answer(loaded, input_class.of({}, json.dumps(body).encode()))
    assert answer.code == 504 and "stopped at the 0.001 s request deadline" in answer.body().decode()
    assert handler.ranks is None  # one process: no ranks to agree with
    # ranks that cannot agree on the deadline (no process group) get none, rather than stopping at different steps
    monkeypatch.setenv("WORLD_SIZE", "2")
    loaded = handler.load({"model_id": str(tiny_models["llama"]), "dtype": "fp32", "request_timeout": "0.001"})
    answer = handler.answer(loaded, input_class.of({}, json.dumps(body).encode()))
    assert handler.deadline_applies is False and json.loads(answer.body())["generated_tokens"] == [64]


def test_fastertransformer_handler_over_http_with_a_fake_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_handler import FakeFasterTransformer

    fake = FakeFasterTransformer("t5")
    monkeypatch.setitem(sys.modules, "fastertransformer", fake)
    code = render(load_config({}), tmp_path / "code")
    server, http, url = start(code.directory, tmp_path)
    try:
        assert server.wait_ready(10), server.failure
        assert fake.init_calls == [(str(tmp_path), 4, 1, "fp32", {})]  # s3:// weights -> the local copy
        answer = UrlClient(url).invoke({"inputs": ["a", "b"], "parameters": {"max_new_tokens": 7}})
        assert answer == {"outputs": ["generated<a>", "generated<b>"]}
        assert fake.generate_calls == [(["a", "b"], {"max_seq_len": 7})]
    finally:
        http.shutdown()


def test_serve_local_script_renders_and_serves(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """Render on the fly, serve, answer; SIGTERM (docker stop) stops it cleanly: exit 0, its scratch folder gone."""
    import subprocess

    port = free_port()
    root = Path(__file__).resolve().parent.parent
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            str(root / "scripts" / "serve_local.py"),
            "-c",
            "engine=accelerate",
            "-c",
            f"model_id={tiny_models['t5']}",
            "-c",
            "instance_type=ml.g5.xlarge",
            "-c",
            "deployment=tiny",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"serving on http://127.0.0.1:{port}" in line, process.stderr.read() if process.poll() else line
        answer = UrlClient(f"http://127.0.0.1:{port}").invoke(
            {"inputs": "summarize: a", "parameters": {"max_new_tokens": 2}}
        )
        assert len(answer["outputs"]) == 1
        assert [path.name[:10] for path in scratch.iterdir()] == ["lmi-serve-"]  # the rendered code, while up
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    assert not list(scratch.iterdir())
    bad = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "serve_local.py"),
            "-c",
            "engine=vllm",
            "-c",
            "model_id=meta-llama/Llama-2-7b-hf",
        ],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert (bad.returncode == 2 and "built-in handler" in bad.stderr) or "--model-dir is required" in bad.stderr


def test_make_local_demo_answers_the_seed_in_readable_words(
    demo_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmi_deploy.commands.local_demo import local_endpoint_demo
    from lmi_deploy.console import Console

    shutil.copytree(demo_model, tmp_path / "demo-model")  # trained once per session (conftest)
    assert local_endpoint_demo(tmp_path, console=Console(tmp_path / "log", verbose=True)) == 0
    out = capsys.readouterr().out
    assert "reuse it from" in out  # the cached model, not a second training
    answers = [line.split(" -> ", 1)[1] for line in out.splitlines() if " -> " in line]
    assert len(answers) == 4  # the seed's four tasks, each answered
    for answer in answers:  # words of letters and sentence punctuation: no byte soup, no control characters
        assert re.fullmatch(r"[A-Za-zÄÖÜäöüß]+([ ,]+[A-Za-zÄÖÜäöüß]+)*[.?!]?", answer), answer
    translation, summary, answer, sentiment = answers
    assert translation.startswith("Das Haus ist") and "fox" in summary
    assert (answer, sentiment) == ("Paris", "positive")
    assert (tmp_path / "model_code" / "demo-tiny-t5" / "model.py").exists()


def test_demo_model_is_trained_once_and_reused(demo_model: Path, tmp_path: Path) -> None:
    from lmi_deploy import demo_model as recipe

    assert recipe.is_cached(demo_model) and not recipe.is_cached(tmp_path)
    started = time.monotonic()
    assert recipe.make(demo_model) == demo_model  # cached: no training
    assert time.monotonic() - started < 1
    marker = demo_model.parent / "changed"
    shutil.copytree(demo_model, marker)
    (marker / recipe.MARKER).write_text('{"fingerprint": "another task set"}')
    assert not recipe.is_cached(marker)
