"""Several rendered handlers behind one local port, routed by model; and a multi-model endpoint in the emulator."""

from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy.client import EndpointError, UrlClient
from lmi_deploy.commands import benchmark, deploy_local, invoke
from lmi_deploy.commands.local_aws import LOCAL_ACCOUNT, LocalAws, free_port
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment, load_multi_model
from lmi_deploy.multi_render import RenderedMultiModel, render_multi
from lmi_deploy.runtime.multi_server import INFERENCE_COMPONENT_HEADER, TARGET_MODEL_HEADER, router_for, serve_router
from scripts import serve_local
from tests.test_local_endpoint import reference

ROOT = Path(__file__).resolve().parent.parent


def tiny_deployment(tiny_models: dict[str, Path], mode: str) -> MultiModelDeployment:
    return load_multi_model(
        {},
        {
            "deployment": "tiny-multi",
            "multi_model": mode,
            "engine": "accelerate",
            "instance_type": "ml.g5.12xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "models": [{"name": f"tiny-{kind}", "model_id": str(tiny_models[kind])} for kind in ("t5", "llama")],
        },
        {"account": LOCAL_ACCOUNT},
    )


@pytest.fixture(scope="module")
def several(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """A tiny T5 and a tiny Llama, each through its rendered Accelerate handler, behind one port."""
    multi = tiny_deployment(tiny_models, "mme")
    rendered = render_multi(multi, tmp_path_factory.mktemp("code"))
    router = router_for(multi, rendered, {"tiny-t5": tiny_models["t5"], "tiny-llama": tiny_models["llama"]}).start()
    port = free_port()
    http = serve_router(router, "127.0.0.1", port)
    assert router.wait_ready(120), router.failure
    yield f"http://127.0.0.1:{port}", multi, rendered
    http.shutdown()


def post(url: str, body: dict[str, Any], headers: dict[str, str], path: str = "/invocations") -> tuple[int, Any]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_requests_reach_the_model_they_name(several, tiny_models: dict[str, Path]) -> None:
    url, _, rendered = several
    prompt = {"inputs": ["summarize: the quick brown fox"], "parameters": {"max_new_tokens": 4}}
    t5 = reference(tiny_models["t5"], prompt["inputs"], 4)
    llama = reference(tiny_models["llama"], prompt["inputs"], 4, causal=True)
    assert t5 != llama
    archive = rendered.model("tiny-t5").target_model
    for headers in (
        {TARGET_MODEL_HEADER: archive},  # what SageMaker sends for an MME: the archive's name
        {TARGET_MODEL_HEADER: "tiny-t5.tar.gz"},
        {INFERENCE_COMPONENT_HEADER: "tiny-multi-tiny-t5"},  # an inference component's name
        {INFERENCE_COMPONENT_HEADER: "tiny-t5"},
    ):
        status, answer = post(url, prompt, headers)
        assert (status, answer["outputs"]) == (200, t5), headers
    status, answer = post(url, prompt, {TARGET_MODEL_HEADER: "tiny-llama"})
    assert status == 200 and answer["outputs"] == llama
    status, answer = post(url, prompt, {}, path="/models/tiny-llama/invoke")  # DJL's MME path
    assert status == 200 and answer["outputs"] == llama
    status, answer = post(url, prompt, {})
    assert status == 400 and "serves several models (tiny-llama, tiny-t5)" in answer["error"]
    status, answer = post(url, prompt, {TARGET_MODEL_HEADER: "tiny-gpt"})
    assert status == 404 and "no model 'tiny-gpt'" in answer["error"]
    with urllib.request.urlopen(url + "/models", timeout=10) as response:
        assert json.loads(response.read()) == {
            "models": [{"modelName": "tiny-llama", "status": "ready"}, {"modelName": "tiny-t5", "status": "ready"}]
        }
    with urllib.request.urlopen(url + "/ping", timeout=10) as response:
        assert response.status == 200


def test_invoke_and_benchmark_with_a_target_model(several, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, _, _ = several
    argv = ["--url", url, "--target-model", "tiny-t5", "--prompt", "summarize: a b", "--param", "max_new_tokens=3"]
    assert invoke.main(argv) == 0
    assert len(json.loads(capsys.readouterr().out)["outputs"]) == 1
    assert invoke.main(["--url", url, "--prompt", "x"]) == 1  # no model named
    assert "the endpoint answered 400" in capsys.readouterr().err
    out = tmp_path / "bench"
    argv = ["--url", url, "--inference-component", "tiny-llama", "--requests", "6", "--concurrency", "1,3",
            "--preset", "single", "--param", "max_new_tokens=4", "--out-dir", str(out)]  # fmt: skip
    assert benchmark.main(argv) == 0
    assert f"to {url} (model tiny-llama)" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "benchmark.csv").open()))
    assert [r["concurrency"] for r in rows] == ["1", "3"] and all(r["errors"] == "0" for r in rows)
    with pytest.raises(EndpointError) as raised:
        UrlClient(url, headers={TARGET_MODEL_HEADER: "nope"}).invoke({"inputs": "x"})
    assert raised.value.status == 404


def test_serve_local_needs_weights_for_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "deployments" / "small-models-mme.yaml")
    assert serve_local.main(["--config", config]) == 2  # Hub ids: no local weights
    assert "no local weights for flan-t5-large, tinyllama-chat: give --model-dir NAME=DIR" in capsys.readouterr().err
    assert serve_local.main(["--config", config, "--model-dir", "gpt=/tmp"]) == 2
    assert "serves no model 'gpt'; its models: flan-t5-large, tinyllama-chat" in capsys.readouterr().err


def test_deploy_local_refuses_inference_components_before_starting_anything(capsys) -> None:
    config = str(ROOT / "deployments" / "chat-llms-inference-components.yaml")
    assert deploy_local.main(["--config", config, "--no-demo"]) == 2
    assert "cannot create inference-component endpoints" in capsys.readouterr().err


@pytest.mark.slow
def test_embedded_deploy_of_a_multi_model_endpoint(tmp_path: Path) -> None:
    """The MME example through the real CDK CLI into the emulator, its archives staged under the model's prefix."""
    from lmi_deploy.commands.deploy_local import LocalDeployment, describe_deployment, stage_archives

    path = ROOT / "deployments" / "small-models-mme.yaml"
    multi = load_deployment({"config": str(path)}, environment_defaults={"account": LOCAL_ACCOUNT})
    assert isinstance(multi, MultiModelDeployment)
    with LocalAws() as aws:
        deployment = LocalDeployment(aws, {"config": str(path)}, tmp_path)
        deployment.bootstrap()
        outputs = deployment.deploy()
        deployed = describe_deployment(aws.client("cloudformation"), aws.client("sagemaker"), multi.endpoint_stack_name)
        assert deployed["EndpointStatus"] == "InService"
        assert (deployed["Mode"], deployed["ModelDataUrl"]) == ("MultiModel", multi.mme_s3_uri)
        assert deployed["Variant"]["InstanceType"] == "ml.g5.2xlarge"
        staged = stage_archives(aws.client("s3"), multi, outputs, tmp_path / "model_code")
        targets = json.loads(outputs[multi.endpoint_stack_name]["TargetModels"])
        assert staged == [multi.mme_s3_uri + targets[m.name] for m in multi.models]  # what the stack says to invoke
        listed = aws.client("s3").list_objects_v2(Bucket=multi.bucket_name, Prefix=multi.mme_prefix)["Contents"]
        rendered: RenderedMultiModel = render_multi(multi, tmp_path / "again")
        assert sorted(o["Key"] for o in listed) == sorted(multi.mme_prefix + m.target_model for m in rendered.models)


def test_make_local_demo_of_a_multi_model_file_routes_two_tiny_models(
    tiny_models: dict[str, Path], tmp_path: Path, capsys
) -> None:
    from lmi_deploy.commands.local_demo import multi_model_demo
    from lmi_deploy.console import Console

    assert multi_model_demo(tmp_path, tiny_models, console=Console(tmp_path / "log", verbose=True)) == 0
    out = capsys.readouterr().out
    assert out.count(f"{TARGET_MODEL_HEADER}: tiny-") == 2 and "tiny-t5-" in out and "tiny-llama-" in out
