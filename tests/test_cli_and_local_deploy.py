"""What users type: `cdk synth` through the real CLI, and the embedded deploy into the local AWS emulator."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from lmi_deploy.commands import deploy_local
from lmi_deploy.commands.deploy_local import LocalDeployment, describe_deployment
from lmi_deploy.commands.local_aws import LocalAws

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"
pytestmark = pytest.mark.slow


def cdk(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_CLI_TELEMETRY": "true"}
    for key in ("AWS_ENDPOINT_URL", "CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        env.pop(key, None)
    return subprocess.run(
        [str(CDK), *args, "--output", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def test_cdk_synth_without_context_is_the_seed(tmp_path: Path) -> None:
    result = cdk("synth", "-q", out=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    endpoint = json.loads((tmp_path / "flan-t5-xxl-endpoint.template.json").read_text())
    variant = next(r for r in endpoint["Resources"].values() if r["Type"] == "AWS::SageMaker::EndpointConfig")[
        "Properties"
    ]["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.g5.12xlarge", 1)
    assert variant["ModelDataDownloadTimeoutInSeconds"] == variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    rendered = (ROOT / "model_code" / "flan-t5-xxl" / "serving.properties").read_text()
    assert "engine=FasterTransformer\n" in rendered and "option.tensor_parallel_degree=4\n" in rendered
    assert "option.dtype=fp32\n" in rendered


def test_cdk_synth_with_invalid_value_fails_before_synthesis_with_one_line(tmp_path: Path) -> None:
    result = cdk("synth", "-q", "-c", "tensor_parallel_degree=8", out=tmp_path)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("lmi-deploy:")]
    assert ours == [
        "lmi-deploy: LMI302 tensor_parallel_degree=8 does not fit ml.g5.12xlarge, which has 4 GPUs; use one of 1, 2, 4, "
        "or a larger instance"
    ]
    assert "Traceback" not in result.stderr
    # refused before any construct exists: no template, no asset staged (how fast that is: timing is no unit test's job)
    assert not list(tmp_path.glob("*.template.json")) and not list(tmp_path.glob("asset.*"))


def test_deploy_local_refuses_a_bad_config_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy_local.main(["-c", "dtype=fp16"]) == 2
    assert "garbage output" in capsys.readouterr().err


def test_embedded_deploy_update_destroy(tmp_path: Path) -> None:
    with LocalAws() as aws:
        deployment = LocalDeployment(aws, {}, tmp_path)
        deployment.bootstrap()
        outputs = deployment.deploy()
        sagemaker, cloudformation = aws.client("sagemaker"), aws.client("cloudformation")
        first = describe_deployment(cloudformation, sagemaker, "flan-t5-xxl-endpoint")
        assert first["EndpointName"] == outputs["flan-t5-xxl-endpoint"]["EndpointName"]
        assert first["EndpointStatus"] == "InService"
        assert first["Variant"]["InstanceType"] == "ml.g5.12xlarge"
        assert first["Variant"]["ModelDataDownloadTimeoutInSeconds"] == 600
        assert first["Variant"]["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
        assert first["Image"].endswith("djl-inference:0.21.0-fastertransformer5.3.0-cu117")
        # the code artifact really was published, and is our deterministic tarball
        bucket, _, key = first["ModelDataUrl"].removeprefix("s3://").partition("/")
        shipped = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        assert shipped == (ROOT / "model_code" / "flan-t5-xxl.tar.gz").read_bytes()
        assert aws.client("s3").head_bucket(Bucket=outputs["flan-t5-xxl-artifacts"]["BucketName"])

        deployment.deploy(container_startup_health_check_timeout=900)
        second = describe_deployment(cloudformation, sagemaker, "flan-t5-xxl-endpoint")
        assert second["Variant"]["ContainerStartupHealthCheckTimeoutInSeconds"] == 900
        assert second["EndpointConfigName"] != first["EndpointConfigName"]  # replaced, not edited in place

        deployment.destroy()
        assert sagemaker.list_endpoints()["Endpoints"] == []
        stacks = aws.client("cloudformation").list_stacks()["StackSummaries"]
        live = {s["StackName"] for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"}
        assert "flan-t5-xxl-endpoint" not in live


def test_make_local_console_is_short_and_quiet(
    demo_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """What `make local` prints: the steps with their times, the result, the demo, where things are; at most 30
    lines, and none of the emulator's or the libraries' warnings (they go to the log it names)."""
    import shutil

    shutil.copytree(demo_model, tmp_path / "demo-model")  # the demo's cache, as a second `make local` finds it
    monkeypatch.chdir(tmp_path)
    assert deploy_local.main(["--workdir", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    console = (out + err).splitlines()
    assert 10 < len(console) <= 30, "\n".join(console)
    for noise in ("Warning", "warning", "No Moto", "Traceback", "site-packages", "\x1b["):
        assert noise not in out + err, noise
    assert all(line.isprintable() for line in console)
    assert re.search(r"^  cdk bootstrap \.\.\. \d+\.\d s$", out, flags=re.MULTILINE)
    assert "  instance            ml.g5.12xlarge x 1" in console
    assert sum(" -> " in line for line in console) == 4  # the seed's four answers
    assert console[-1].startswith("done in ") and console[-1].endswith("deploy-local.log")
    log = (tmp_path / "deploy-local.log").read_text()
    assert "No Moto CloudFormation support" in log and "$ cdk deploy --all" in log  # kept, not lost
