"""LoRA adapters (issue 20): validated on real PEFT folders, staged like weights, synthesized as adapter inference
components, and served locally per request as the container selects them, token for token as PEFT generates."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lmi_deploy import adapter_staging
from lmi_deploy.commands import invoke, stage_model
from lmi_deploy.commands.local_aws import free_port
from lmi_deploy.config import DeploymentConfig, load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.render import render, serving_properties
from lmi_deploy.runtime.server import ModelServer, serve

ACCOUNT = {"account": "123456789012"}
NAMES = ("sql", "chat", "poem")
PROMPT = "question: what is the capital of France? answer:"


@pytest.fixture(scope="session")
def lora_models(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny LoRA adapters of the tiny Llama, made with PEFT (random, non-zero B: each changes the output)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    folders = {"base": tiny_models["llama"]}
    for seed, (name, rank) in enumerate(zip(NAMES, (4, 8, 16), strict=True)):
        torch.manual_seed(100 + seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
        targets = ["q_proj", "v_proj"] if name != "poem" else ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
        config = LoraConfig(r=rank, lora_alpha=16, target_modules=targets, init_lora_weights=False)
        model = get_peft_model(base, config)
        with torch.no_grad():  # strong enough to change greedy tokens of a random model
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.mul_(8.0)
        model.save_pretrained(root / name)
        folders[name] = root / name
    return folders


def peft_tokens(folders: dict[str, Path], adapter: str | None, prompt: str, new_tokens: int) -> list[int]:
    """PEFT's own greedy generation: a fresh base model with only this adapter (or none)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folders["base"])
    model = AutoModelForCausalLM.from_pretrained(folders["base"]).eval()
    if adapter:
        model = PeftModel.from_pretrained(model, str(folders[adapter])).eval()
    encoded = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**encoded, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return [t for t in ids[0, encoded["input_ids"].shape[1] :].tolist() if t != tokenizer.pad_token_id]


def retargeted(folder: Path, into: Path, base_model: str) -> Path:
    """A copy of an adapter folder whose adapter_config.json names another base model."""
    shutil.copytree(folder, into)
    settings = json.loads((into / "adapter_config.json").read_text())
    (into / "adapter_config.json").write_text(json.dumps({**settings, "base_model_name_or_path": base_model}))
    return into


def lora_config(folders: dict[str, Path], **extra: Any) -> DeploymentConfig:
    adapters = [{"name": n, "source": str(folders[n])} for n in NAMES]
    values = {
        "engine": "vllm",
        "lmi_version": "0.33.0",
        "model_id": str(folders["base"]),
        "instance_type": "ml.g5.2xlarge",
        "adapters": json.dumps(adapters),
        **extra,
    }
    return load_config(values, environment_defaults=ACCOUNT)


def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + "/invocations", json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_validation_reads_each_adapter_and_derives_the_lora_limits(lora_models: dict[str, Path]) -> None:
    config = lora_config(lora_models)
    plan = config.lora_plan
    assert (plan.max_loras, plan.max_lora_rank, plan.max_cpu_loras) == (3, 16, None)  # ranks 4, 8, 16
    assert ("option.enable_lora", "true") in serving_properties(config)
    assert ("option.max_lora_rank", "16") in serving_properties(config)
    assert any("LoRA slots" in note for note in config.resolved.notes)  # counted in the memory estimate
    assert config.resolved.warnings == []
    # every problem is one line naming the adapter and the fix
    with pytest.raises(ConfigError, match=r"LMI974 adapters\[2\] \(poem\) has rank 16, above max_lora_rank=8"):
        lora_config(lora_models, lora='{"max_lora_rank": 8}')
    with pytest.raises(ConfigError, match=r"LMI974 lora.max_lora_rank=4 is not one LMI 0.33.0's engine accepts"):
        lora_config(lora_models, lora='{"max_lora_rank": 4}')
    with pytest.raises(ConfigError, match=r"LMI976 lora.max_cpu_loras=1 is below max_loras=3"):
        lora_config(lora_models, lora='{"max_cpu_loras": 1}')
    with pytest.raises(ConfigError, match=r"LMI971 adapters: Accelerate 0.33.0 serves no LoRA adapters"):
        lora_config(lora_models, engine="accelerate")
    with pytest.raises(ConfigError, match=r"adapter name 'sql' is used twice"):
        load_config(
            {"engine": "vllm", "adapters": json.dumps([{"name": "sql", "source": str(lora_models["sql"])}] * 2)}
        )


def test_an_adapter_of_another_model_is_refused(lora_models: dict[str, Path], tmp_path: Path) -> None:
    other = retargeted(lora_models["sql"], tmp_path / "other", "org/other-7b")
    with pytest.raises(ConfigError, match=r"LMI973 adapters\[0\] \(sql\) was trained on org/other-7b"):
        load_config({"engine": "vllm", "model_id": str(lora_models["base"]),
                     "adapters": json.dumps([{"name": "sql", "source": str(other)}])})  # fmt: skip


@pytest.fixture(scope="module")
def lora_endpoint(lora_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """serve_local's path for a vLLM deployment with three adapters: render, place the adapters, serve."""
    config = lora_config(lora_models)
    code = render(config, tmp_path_factory.mktemp("code")).directory
    adapter_staging.place_locally(list(config.adapters), code)
    server = ModelServer(code, lora_models["base"]).start()
    port = free_port()
    http = serve(server, "127.0.0.1", port)
    assert server.wait_ready(120), server.failure
    yield f"http://127.0.0.1:{port}"
    http.shutdown()


def test_each_adapter_answers_as_peft_does_token_for_token(lora_endpoint: str, lora_models: dict[str, Path]) -> None:
    parameters = {"max_new_tokens": 8, "details": True}
    answers: dict[str, list[int]] = {}
    for adapter in (None, *NAMES):
        body = {"inputs": PROMPT, "parameters": parameters, **({"adapters": adapter} if adapter else {})}
        status, answer = post(lora_endpoint, body)
        assert status == 200, answer
        ids = [token["id"] for token in answer["details"]["tokens"]]
        assert ids == peft_tokens(lora_models, adapter, PROMPT, 8), adapter
        answers[adapter or "base"] = ids
    assert len({tuple(ids) for ids in answers.values()}) == 4  # every adapter changes the answer
    # an adapter inference component's request: SageMaker names the adapter in a header
    status, answer = post(
        lora_endpoint, {"inputs": PROMPT, "parameters": parameters}, {"X-Amzn-SageMaker-Adapter-Identifier": "poem"}
    )
    assert status == 200 and [t["id"] for t in answer["details"]["tokens"]] == answers["poem"]
    status, answer = post(lora_endpoint, {"inputs": PROMPT, "adapters": "nope"})
    assert status == 400 and "Adapter nope is not registered" in json.dumps(answer)


def test_invoke_with_adapter_names_it_in_each_request(lora_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--url", lora_endpoint, "--prompt", PROMPT, "--param", "max_new_tokens=8"]
    assert invoke.main([*argv, "--adapter", "sql"]) == 0
    with_sql = json.loads(capsys.readouterr().out)
    assert invoke.main(argv) == 0
    base = json.loads(capsys.readouterr().out)
    assert with_sql != base and with_sql[0]["generated_text"]


def test_stage_model_stages_adapters_beside_the_weights_resumably(
    lora_models: dict[str, Path], deployment_file, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    from moto import mock_aws

    adapters = "".join(f"  - {{name: {n}, source: {lora_models[n]}}}\n" for n in NAMES)
    path = deployment_file(
        f"engine: vLLM\nlmi_version: '0.33.0'\nmodel_id: {lora_models['base']}\ninstance_type: ml.g5.2xlarge\n"
        f"adapters:\n{adapters}"
    )
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lora-bucket")
        argv = ["--config", str(path), "--bucket", "lora-bucket", "--prefix", "models/base/main/", "--no-progress"]
        assert stage_model.main(argv, s3=s3) == 0
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lora-bucket")["Contents"]}
        for name in NAMES:  # where the server registers adapters at start, each with its own manifest
            assert f"models/base/main/adapters/{name}/adapter_config.json" in keys
            assert f"models/base/main/adapters/{name}/manifest.json" in keys
        assert "models/base/main/manifest.json" in keys  # the weights' staging left the adapters alone
        for leftover in ("adapter_config.json", "manifest.json"):  # an adapter staged before, no longer named
            s3.put_object(Bucket="lora-bucket", Key=f"models/base/main/adapters/old/{leftover}", Body=b"{}")
        capsys.readouterr()
        assert stage_model.main(argv, s3=s3) == 0  # a re-run uploads nothing and drops adapters no longer named
        out = capsys.readouterr().out
        assert out.count("(uploaded 0, already intact 2, repaired 0)") == 3, out
        assert "removed adapters the deployment no longer names: old" in out
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lora-bucket")["Contents"]}
        assert not any("/adapters/old/" in k for k in keys)


def test_an_adapter_archive_is_deterministic(lora_models: dict[str, Path], tmp_path: Path) -> None:
    names = adapter_staging.adapter_files(lora_models["sql"])
    first = adapter_staging.archive(lora_models["sql"], names, tmp_path / "a.tar.gz").read_bytes()
    again = adapter_staging.archive(lora_models["sql"], names, tmp_path / "b.tar.gz").read_bytes()
    assert first == again
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert sorted(tar.getnames()) == ["adapter_config.json", "adapter_model.safetensors"]


# ---- stacks: adapter inference components, and a single-model endpoint's adapters beside its weights -------------

EXAMPLE = Path(__file__).resolve().parent.parent / "deployments" / "llama-3-8b-lora-adapters.yaml"


def test_each_adapter_is_an_adapter_inference_component_on_its_base(tmp_path: Path) -> None:
    """The example (moto has no inference components, so it is template-tested; cfn-lint and cdk-nag run on it with
    every example in tests/test_stacks.py)."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Match, Template

    from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
    from lmi_deploy.multi_render import render_multi
    from stacks.deployment import add_checks
    from stacks.multi_model_deployment import add_multi_model_deployment
    from tests.test_stacks import CDK_JSON_CONTEXT

    multi = load_deployment({"config": str(EXAMPLE)}, environment_defaults=ACCOUNT)
    assert isinstance(multi, MultiModelDeployment)
    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context=CDK_JSON_CONTEXT)
    stacks = add_multi_model_deployment(app, multi, render_multi(multi, tmp_path / "code"))
    add_checks(app)
    app.synth()  # cdk-nag
    endpoint = Template.from_stack(stacks.endpoint)
    endpoint.resource_count_is("AWS::SageMaker::InferenceComponent", 4)  # the base and three adapters
    bucket = f"llama3-lora-{ACCOUNT['account']}-us-east-1"
    revisions = {a.name: a.revision for a in multi.models[0].config.adapters}
    for name in ("sql", "support", "summaries"):
        endpoint.has_resource(
            "AWS::SageMaker::InferenceComponent",
            {
                "Properties": {
                    "InferenceComponentName": f"llama3-lora-llama-3-8b-{name}",
                    "Specification": {
                        "BaseInferenceComponentName": "llama3-lora-llama-3-8b",
                        "Container": {
                            "ArtifactUrl": f"s3://{bucket}/adapters/hub/your-org/llama-3-8b-instruct-{name}-lora/"
                            f"{revisions[name]}/adapter.tar.gz"
                        },
                        "ComputeResourceRequirements": Match.absent(),  # the base component's
                        "ModelName": Match.absent(),
                    },
                    "RuntimeConfig": Match.absent(),
                },
                "DependsOn": Match.array_with([Match.string_like_regexp("ComponentLlama38b")]),
            },
        )
    properties = (tmp_path / "code" / "llama3-lora" / "llama-3-8b" / "serving.properties").read_text()
    assert "option.enable_lora=true\noption.max_loras=3\noption.max_lora_rank=16\n" in properties
    statements = {
        s["Sid"]: s
        for policy in endpoint.find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "Sid" in s
    }
    resource = json.dumps(statements["ReadAdapterArchives"]["Resource"])
    assert f"{bucket}/adapters/*" in resource
    outputs = endpoint.find_outputs("AdapterInferenceComponents")
    value = json.loads(next(iter(outputs.values()))["Value"])
    assert value == {"llama-3-8b": {n: f"llama3-lora-llama-3-8b-{n}" for n in ("sql", "summaries", "support")}}


def test_a_single_model_endpoint_loads_its_adapters_from_beside_the_weights(
    lora_models: dict[str, Path], tmp_path: Path
) -> None:
    from aws_cdk.assertions import Template

    from tests.test_stacks import synth

    for name in NAMES:  # the tiny adapters, as if trained on Llama 2 7B (same module names)
        retargeted(lora_models[name], tmp_path / "adapters" / name, "meta-llama/Llama-2-7b-hf")
    config, stacks, _ = synth(
        tmp_path,
        engine="vllm",
        lmi_version="0.33.0",
        model_id="meta-llama/Llama-2-7b-hf",
        instance_type="ml.g5.2xlarge",
        adapters=json.dumps([{"name": n, "source": str(tmp_path / "adapters" / n)} for n in NAMES]),
    )
    endpoint = Template.from_stack(stacks.endpoint)
    endpoint.resource_count_is("AWS::SageMaker::InferenceComponent", 0)
    weights = config.weights_s3_uri
    properties = (tmp_path / "model_code" / config.deployment / "serving.properties").read_text()
    assert f"option.model_id={weights}\n" in properties and "option.enable_lora=true\n" in properties
    # the container downloads the weights prefix, adapters/<name>/ included, and registers each folder at start
    read = next(
        s
        for policy in endpoint.find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "ReadWeights"
    )
    assert json.dumps(read["Resource"]).endswith('/models/meta-llama/Llama-2-7b-hf/main/*"]]}')


def test_locally_an_adapter_inference_component_reaches_its_base_with_the_adapter(
    lora_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inference components: the adapter's component name routes to the base model's copy, which serves the adapter
    SageMaker names in the identifier header (invoke.py --inference-component llama --adapter NAME)."""
    from lmi_deploy.multi_model import load_multi_model
    from lmi_deploy.multi_render import render_multi
    from lmi_deploy.runtime.multi_server import router_for, serve_router

    adapters = [{"name": n, "source": str(lora_models[n])} for n in NAMES]
    entry = {"name": "llama", "model_id": str(lora_models["base"]), "adapters": adapters}
    top = {"deployment": "tiny-lora", "multi_model": "inference_components", "engine": "vllm"}
    multi = load_multi_model({}, {**top, "lmi_version": "0.33.0", "instance_type": "ml.g5.2xlarge", "models": [entry]})
    rendered = render_multi(multi, tmp_path)
    adapter_staging.place_locally(list(multi.models[0].config.adapters), rendered.model("llama").directory)
    router = router_for(multi, rendered, {"llama": lora_models["base"]}).start()
    port = free_port()
    http = serve_router(router, "127.0.0.1", port)
    try:
        assert router.wait_ready(120), router.failure
        url = f"http://127.0.0.1:{port}"
        argv = ["--url", url, "--inference-component", "tiny-lora-llama", "--prompt", PROMPT]
        assert invoke.main([*argv, "--adapter", "poem", "--param", "max_new_tokens=8", "--param", "details=true"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert [t["id"] for t in answer[0]["details"]["tokens"]] == peft_tokens(lora_models, "poem", PROMPT, 8)
        assert post(url, {"inputs": PROMPT}, {"X-Amzn-SageMaker-Inference-Component": "tiny-lora-llama-nope"})[0] == 404
    finally:
        http.shutdown()


@pytest.mark.parametrize("name", ["web-chat\n", "web-chat\r\n", "-web", "Web", "a" * 31])
def test_an_adapter_name_is_checked_as_a_whole(name: str) -> None:
    """The name reaches S3 keys, folders and inference component names: a trailing newline is no exception."""
    from lmi_deploy.adapters import Adapter

    with pytest.raises(ValueError, match="must be 1-30 characters"):
        Adapter(name=name, source="s3://lmi-demo-weights/adapters/web-chat/")
    assert Adapter(name="web-chat", source="s3://lmi-demo-weights/adapters/web-chat/").name == "web-chat"


def test_only_a_whole_commit_counts_as_pinned() -> None:
    from lmi_deploy.adapters import Adapter

    commit = "0123456789abcdef0123456789abcdef01234567"
    assert Adapter(name="a", source="acme/lora", revision=commit).pinned
    assert not Adapter(name="a", source="acme/lora", revision=commit + "0").pinned
