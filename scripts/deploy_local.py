#!/usr/bin/env python3
"""The whole deploy flow without an AWS account: emulator, ``cdk bootstrap``, ``cdk deploy --all``, read-back.

``python scripts/deploy_local.py [--config FILE] [-c key=value ...] [--destroy]`` validates the config, starts the
local AWS emulator, bootstraps it like a real account, deploys both stacks with the real CDK CLI, prints the
deployed endpoint config and where the rendered artifacts are, and stops the emulator. (No container runs: the
emulator records the endpoint; ``scripts/serve_local.py``-style local serving is separate.) A multi-model endpoint
(``multi_model: mme``) deploys too, its code archives staged into the emulator's bucket; inference components are
refused before anything starts (the emulator cannot create them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmi_deploy.cli import add_config_arguments, cdk_context_arguments, context_from_args
from lmi_deploy.config import DeploymentConfig, load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from scripts.local_aws import LOCAL_ACCOUNT, LOCAL_REGION, LocalAws

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"


class DeployError(Exception):
    """A CDK CLI step failed; the message carries the end of its log."""


def _run_cdk(args: Sequence[str], env: Mapping[str, str], log: Path) -> None:
    command = [str(CDK), *args]
    with log.open("a") as handle:
        handle.write(f"\n$ cdk {' '.join(args)}\n")
        handle.flush()
        result = subprocess.run(command, cwd=ROOT, env=dict(env), stdout=handle, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise DeployError(f"`cdk {args[0]}` failed (exit {result.returncode}); full log: {log}\n{tail}")


class LocalDeployment:
    """Drives the CDK CLI against a running :class:`LocalAws` for one deployment's context."""

    def __init__(self, aws: LocalAws, context: Mapping[str, Any], workdir: Path) -> None:
        self.aws = aws
        self.context = dict(context)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "cdk.log"
        self.outputs_file = workdir / "outputs.json"
        self.env = {
            **os.environ,
            **aws.environment(),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
        }

    def _cdk(self, *args: str) -> None:
        _run_cdk([*args, "--output", str(self.workdir / "cdk.out")], self.env, self.log)

    def bootstrap(self) -> None:
        """Like a real account: the code tarball is a CDK file asset, published to the bootstrap bucket."""
        _run_cdk(["bootstrap", f"aws://{LOCAL_ACCOUNT}/{LOCAL_REGION}", "--app", ""], self.env, self.log)

    def deploy(self, **overrides: Any) -> dict[str, dict[str, str]]:
        """``cdk deploy --all`` with this context (plus overrides); returns the stacks' outputs."""
        self.context.update(overrides)
        context = {**self.context, "bootstrap_version_rule": "false"}  # the emulator has no bootstrap SSM parameter
        self._cdk(
            "deploy",
            "--all",
            "--method=direct",
            "--require-approval",
            "never",
            "--outputs-file",
            str(self.outputs_file),
            *cdk_context_arguments(context),
        )
        outputs: dict[str, dict[str, str]] = json.loads(self.outputs_file.read_text())
        return outputs

    def destroy(self) -> None:
        context = {**self.context, "bootstrap_version_rule": "false"}
        self._cdk("destroy", "--all", "--force", *cdk_context_arguments(context))


def describe_deployment(cloudformation: Any, sagemaker: Any, stack_name: str) -> dict[str, Any]:
    """The endpoint stack's SageMaker resources as SageMaker reports them: endpoint, endpoint config, model.

    Resources are found through the stack (physical ids are ARNs; SageMaker APIs take the name after the last /),
    so what is read back is what this deployment's CloudFormation stack created.
    """
    resources = cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
    names = {
        r["ResourceType"]: r["PhysicalResourceId"].rsplit("/", 1)[-1]
        for r in resources
        if str(r.get("ResourceType", "")).startswith("AWS::SageMaker::")
    }
    endpoint = sagemaker.describe_endpoint(EndpointName=names["AWS::SageMaker::Endpoint"])
    endpoint_config = sagemaker.describe_endpoint_config(EndpointConfigName=names["AWS::SageMaker::EndpointConfig"])
    variant = endpoint_config["ProductionVariants"][0]
    model = sagemaker.describe_model(ModelName=names["AWS::SageMaker::Model"])
    return {
        "EndpointName": endpoint["EndpointName"],
        "EndpointStatus": endpoint["EndpointStatus"],
        "EndpointConfigName": endpoint_config["EndpointConfigName"],
        "Variant": variant,
        "Image": model["PrimaryContainer"]["Image"],
        "ModelDataUrl": model["PrimaryContainer"].get("ModelDataUrl"),
        "Mode": model["PrimaryContainer"].get("Mode"),
    }


def summary(config: DeploymentConfig, outputs: Mapping[str, Mapping[str, str]], endpoint: Mapping[str, Any]) -> str:
    variant = endpoint["Variant"]
    lines = [
        f"deployed {config.deployment} to the local AWS emulator:",
        f"  endpoint            {endpoint['EndpointName']} ({endpoint['EndpointStatus']})",
        f"  endpoint config     {endpoint['EndpointConfigName']}",
        f"  instance            {variant['InstanceType']} x {variant.get('InitialInstanceCount')}",
        f"  download timeout    {variant.get('ModelDataDownloadTimeoutInSeconds')} s",
        f"  startup timeout     {variant.get('ContainerStartupHealthCheckTimeoutInSeconds')} s",
        f"  volume              {variant.get('VolumeSizeInGB', 'instance storage (not set)')}",
        f"  image               {endpoint['Image']}",
        f"  code artifact       {endpoint['ModelDataUrl']}",
        f"  weights prefix      {outputs[config.endpoint_stack_name]['WeightsS3Prefix']}",
        f"  rendered files      model_code/{config.deployment}/ and model_code/{config.deployment}.tar.gz",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Deploy into a fresh emulator, print the endpoint config, stop the emulator. Exit 2 on a bad config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--destroy", action="store_true", help="destroy both stacks before stopping the emulator")
    parser.add_argument("--workdir", default=str(ROOT / "local"), help="logs, outputs and cloud assembly (local/)")
    parser.add_argument(
        "--no-demo", action="store_true", help="skip the local endpoint demo (a tiny model served by the real handler)"
    )
    args = parser.parse_args(argv)
    try:
        context = context_from_args(args)
        # Validate before starting anything: a bad setting stops here, in seconds.
        config = load_deployment(context, environment_defaults={"account": LOCAL_ACCOUNT, "region": LOCAL_REGION})
        if isinstance(config, MultiModelDeployment) and config.mode == "inference_components":
            raise ConfigError(INFERENCE_COMPONENTS_UNSUPPORTED)
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2
    if not CDK.exists():
        print(f"lmi-deploy: the CDK CLI is missing ({CDK}); run `make setup` (npm ci) first", file=sys.stderr)
        return 2
    workdir = Path(args.workdir)
    with LocalAws() as aws:
        print(f"local AWS emulator on {aws.endpoint_url}")
        deployment = LocalDeployment(aws, context, workdir)
        try:
            print("cdk bootstrap ...", flush=True)
            deployment.bootstrap()
            print(f"cdk deploy --all ({config.artifacts_stack_name}, {config.endpoint_stack_name}) ...", flush=True)
            outputs = deployment.deploy()
            deployed = describe_deployment(
                aws.client("cloudformation"), aws.client("sagemaker"), config.endpoint_stack_name
            )
            if isinstance(config, MultiModelDeployment):
                staged = stage_archives(aws.client("s3"), config, outputs, workdir / "model_code")
                print(multi_model_summary(config, outputs, deployed, staged))
            else:
                print(summary(config, outputs, deployed))
            if args.destroy:
                print("cdk destroy --all ...", flush=True)
                deployment.destroy()
        except DeployError as error:
            print(f"lmi-deploy: {error}", file=sys.stderr)
            return 1
        print(f"stopping the emulator (CDK log: {deployment.log})")
    if not args.no_demo:
        if isinstance(config, MultiModelDeployment):
            return multi_model_demo(workdir)
        return local_endpoint_demo(workdir)
    return 0


INFERENCE_COMPONENTS_UNSUPPORTED = (
    "the local AWS emulator (moto) cannot create inference-component endpoints: it requires a model in every "
    "production variant and has no AWS::SageMaker::InferenceComponent; check the template with `make synth "
    'ARGS="-c config=FILE"` (cdk-nag and cfn-lint run in the tests), serve the models locally with '
    "scripts/serve_local.py, or deploy to an AWS account"
)


def stage_archives(
    s3: Any, multi: MultiModelDeployment, outputs: Mapping[str, Mapping[str, str]], out_root: Path
) -> list[str]:
    """A multi-model endpoint's code archives, staged into the emulator's bucket as scripts/stage_model.py does."""
    from lmi_deploy.multi_render import render_multi, stage_mme_archives

    if multi.mode != "mme":
        return []
    bucket = outputs[multi.artifacts_stack_name]["BucketName"]
    staged = stage_mme_archives(s3, multi, render_multi(multi, out_root), bucket)
    return [f"s3://{bucket}/{archive.key}" for archive in staged]


def multi_model_summary(
    multi: MultiModelDeployment,
    outputs: Mapping[str, Mapping[str, str]],
    endpoint: Mapping[str, Any],
    staged: Sequence[str],
) -> str:
    variant = endpoint["Variant"]
    stack = outputs[multi.endpoint_stack_name]
    lines = [
        f"deployed {multi.deployment} ({len(multi.models)} models, multi-model endpoint) to the local AWS emulator:",
        f"  endpoint            {endpoint['EndpointName']} ({endpoint['EndpointStatus']})",
        f"  endpoint config     {endpoint['EndpointConfigName']}",
        f"  instance            {variant['InstanceType']} x {variant.get('InitialInstanceCount')}",
        f"  image               {endpoint['Image']}",
        f"  model               Mode {endpoint['Mode']}, archives under {endpoint['ModelDataUrl']}",
    ]
    targets = json.loads(stack.get("TargetModels", "{}"))
    for name in sorted(targets):
        lines.append(f"  TargetModel         {targets[name]}  ({name})")
    lines += [f"  staged              {key}" for key in staged]
    lines.append(f"  rendered files      model_code/{multi.deployment}/<model>/ and <model>.tar.gz")
    return "\n".join(lines)


def multi_model_demo(workdir: Path, folders: Mapping[str, Path] | None = None) -> int:
    """Two tiny models made on the spot (or given), behind one port and routed by TargetModel, as an MME routes them."""
    try:
        from lmi_deploy import tiny_models
    except ImportError:
        return 0
    from lmi_deploy.client import UrlClient, payload
    from lmi_deploy.multi_model import load_multi_model
    from lmi_deploy.multi_render import render_multi
    from lmi_deploy.runtime.multi_server import TARGET_MODEL_HEADER, router_for, serve_router
    from scripts.local_aws import free_port

    print("local multi-model demo: a tiny random T5 and Llama behind one port, routed by TargetModel ...", flush=True)
    try:
        folders = folders or {kind: tiny_models.make(workdir / f"demo-{kind}", kind) for kind in ("t5", "llama")}
    except ImportError as error:
        print(f"  skipped: {error.name} is not installed (pip install -r requirements-dev.txt)")
        return 0
    multi = load_multi_model(
        {},
        {
            "deployment": "demo-tiny-mme",
            "multi_model": "mme",
            "engine": "accelerate",
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "models": [{"name": f"tiny-{kind}", "model_id": str(folder)} for kind, folder in folders.items()],
        },
        {"account": LOCAL_ACCOUNT, "region": LOCAL_REGION},
    )
    rendered = render_multi(multi, workdir / "model_code")
    router = router_for(multi, rendered, {f"tiny-{kind}": folder for kind, folder in folders.items()}).start()
    port = free_port()
    http = serve_router(router, "127.0.0.1", port)
    try:
        if not router.wait_ready(timeout=300):
            print(f"lmi-deploy: a demo model failed to load: {router.failure}", file=sys.stderr)
            return 1
        for model in rendered.models:
            client = UrlClient(f"http://127.0.0.1:{port}", headers={TARGET_MODEL_HEADER: model.target_model})
            answer = client.invoke(
                payload(["summarize: the quick brown fox"], {"max_new_tokens": 12, "do_sample": True, "seed": 0})
            )
            print(f"  {TARGET_MODEL_HEADER}: {model.target_model} -> {answer['outputs'][0]!r}  (random weights)")
    finally:
        http.shutdown()
    print(
        f"  handlers: {rendered.directory}/<model>/model.py; serve your own with scripts/serve_local.py --config FILE"
    )
    return 0


def local_endpoint_demo(workdir: Path) -> int:
    """Serve a tiny model made on the spot with the rendered Accelerate handler and send it the seed's request."""
    try:
        from lmi_deploy import tiny_models
    except ImportError:
        return 0
    from lmi_deploy.client import UrlClient, payload
    from lmi_deploy.render import render
    from lmi_deploy.runtime.server import ModelServer, serve
    from scripts.benchmark import PRESETS
    from scripts.local_aws import free_port

    print("local endpoint demo: a tiny random T5 served by the rendered Accelerate handler ...", flush=True)
    try:
        model_dir = tiny_models.make(workdir / "demo-model", "t5")
    except ImportError as error:
        print(f"  skipped: {error.name} is not installed (pip install -r requirements-dev.txt)")
        return 0
    config = load_config(
        {
            "engine": "accelerate",
            "model_id": str(model_dir),
            "instance_type": "ml.g5.xlarge",
            "tensor_parallel_degree": "1",
            "dtype": "fp32",
            "deployment": "demo-tiny-t5",
        },
        environment_defaults={"account": LOCAL_ACCOUNT, "region": LOCAL_REGION},
    )
    code = render(config, workdir / "model_code")
    server = ModelServer(code.directory, model_dir).start()
    port = free_port()
    http = serve(server, "127.0.0.1", port)
    try:
        if not server.wait_ready(timeout=300):
            print(f"lmi-deploy: the demo model failed to load: {server.failure}", file=sys.stderr)
            return 1
        # sampled (seeded): the tiny model's greedy choice is its padding token, which decodes to nothing
        request = payload(PRESETS["seed"], {"max_new_tokens": 12, "do_sample": True, "seed": 0})
        print(f"  POST http://127.0.0.1:{port}/invocations {json.dumps(request)[:100]}...")
        answer = UrlClient(f"http://127.0.0.1:{port}").invoke(request)
        for prompt, output in zip(request["inputs"], answer["outputs"], strict=True):
            print(f"  {prompt[:48]!r:52} -> {output!r}  (random weights: random text)")
    finally:
        http.shutdown()
    print(f"  handler: {code.directory / 'model.py'}; serve your own with scripts/serve_local.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
