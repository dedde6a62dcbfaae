#!/usr/bin/env python3
"""The whole deploy flow without an AWS account: emulator, ``cdk bootstrap``, ``cdk deploy --all``, read-back.

``python scripts/deploy_local.py [--config FILE] [-c key=value ...] [--destroy]`` validates the config, starts the
local AWS emulator, bootstraps it like a real account, deploys both stacks with the real CDK CLI, prints the
deployed endpoint config and where the rendered artifacts are, and stops the emulator. (No container runs: the
emulator records the endpoint.) Then the demo: a tiny T5 trained here on the seed's four tasks (lmi_deploy/demo_model,
cached in ``<workdir>/demo-model``) served by the rendered handler, answering the seed's request. The console shows
the steps and their times; everything else goes to ``<workdir>/deploy-local.log`` (``-v``: shown too).
A multi-model endpoint (``multi_model: mme``) deploys too, its code archives staged into the emulator's bucket;
inference components are refused before anything starts (the emulator cannot create them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lmi_deploy.cli import add_config_arguments, cdk_context_arguments, context_from_args
from lmi_deploy.commands.local_aws import LOCAL_ACCOUNT, LOCAL_REGION, LocalAws
from lmi_deploy.commands.local_demo import local_endpoint_demo, multi_model_demo, shown
from lmi_deploy.config import DeploymentConfig
from lmi_deploy.console import Console
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"


class DeployError(Exception):
    """A CDK CLI step failed; the message carries the end of its log."""


def _run_cdk(args: Sequence[str], env: Mapping[str, str], log: Path, echo: Callable[[str], None] | None = None) -> None:
    """Run the CDK CLI, its output appended to ``log`` (and handed to ``echo`` line by line, when given)."""
    command = [str(CDK), *args]
    with log.open("a") as handle:
        handle.write(f"\n$ cdk {' '.join(args)}\n")
        handle.flush()
        if echo is None:
            result = subprocess.run(command, cwd=ROOT, env=dict(env), stdout=handle, stderr=subprocess.STDOUT)
            returncode = result.returncode
        else:
            with subprocess.Popen(
                command, cwd=ROOT, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ) as process:
                assert process.stdout is not None
                for line in process.stdout:
                    handle.write(line)
                    echo(line)
            returncode = process.returncode
    if returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise DeployError(f"`cdk {args[0]}` failed (exit {returncode}); full log: {log}\n{tail}")


class LocalDeployment:
    """Drives the CDK CLI against a running :class:`LocalAws` for one deployment's context."""

    def __init__(
        self,
        aws: LocalAws,
        context: Mapping[str, Any],
        workdir: Path,
        log: Path | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.aws = aws
        self.context = dict(context)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = log or workdir / "cdk.log"
        self.echo = echo
        self.outputs_file = workdir / "outputs.json"
        self.env = {
            **os.environ,
            **aws.environment(),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "LMI_DEPLOY_PRICES": "bundled",  # the emulator has no Price List API
        }

    def _cdk(self, *args: str) -> None:
        _run_cdk([*args, "--output", str(self.workdir / "cdk.out")], self.env, self.log, self.echo)

    def bootstrap(self) -> None:
        """Like a real account: the code tarball is a CDK file asset, published to the bootstrap bucket."""
        _run_cdk(["bootstrap", f"aws://{LOCAL_ACCOUNT}/{LOCAL_REGION}", "--app", ""], self.env, self.log, self.echo)

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
    """Deploy into a fresh emulator, print the endpoint config, stop the emulator, run the demo. Exit 2 on a bad config.

    The console shows the steps with their times, the result and where things are; what the emulator, the CDK CLI
    and the libraries print goes to ``<workdir>/deploy-local.log`` (``-v``: to the console too).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--destroy", action="store_true", help="destroy both stacks before stopping the emulator")
    parser.add_argument("--workdir", default=str(ROOT / "local"), help="logs, outputs and cloud assembly (local/)")
    parser.add_argument(
        "--no-demo", action="store_true", help="skip the local endpoint demo (a tiny model served by the real handler)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show everything: emulator, CDK CLI, libraries")
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
    with Console(workdir / "deploy-local.log", verbose=args.verbose) as console:
        try:
            status = deploy_into_emulator(console, config, context, workdir, args.destroy)
        except DeployError as error:
            console.error(f"lmi-deploy: {error}")
            status = 1
        if status == 0 and not args.no_demo:
            demo = multi_model_demo if isinstance(config, MultiModelDeployment) else local_endpoint_demo
            status = demo(workdir, console=console)
        outcome = "done" if status == 0 else "failed"
        console.say(
            f"{outcome} in {console.elapsed()}; everything else (emulator, CDK CLI, libraries): {shown(console.log)}"
        )
    return status


def deploy_into_emulator(
    console: Console,
    config: DeploymentConfig | MultiModelDeployment,
    context: Mapping[str, Any],
    workdir: Path,
    destroy: bool,
) -> int:
    """Emulator up, cdk bootstrap, cdk deploy --all, read back what was created, (destroy,) emulator down."""
    with LocalAws() as aws:
        console.say(f"lmi-deploy: {config.deployment} into a local AWS emulator (moto on {aws.endpoint_url})")
        deployment = LocalDeployment(aws, context, workdir, log=console.log, echo=console.tee)
        with console.step("cdk bootstrap"):
            deployment.bootstrap()
        with console.step(f"cdk deploy --all ({config.artifacts_stack_name}, {config.endpoint_stack_name})"):
            outputs = deployment.deploy()
            deployed = describe_deployment(
                aws.client("cloudformation"), aws.client("sagemaker"), config.endpoint_stack_name
            )
        if isinstance(config, MultiModelDeployment):
            with console.step("stage the code archives"):
                staged = stage_archives(aws.client("s3"), config, outputs, workdir / "model_code")
            console.say(multi_model_summary(config, outputs, deployed, staged))
        else:
            console.say(summary(config, outputs, deployed))
        if destroy:
            with console.step("cdk destroy --all"):
                deployment.destroy()
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


if __name__ == "__main__":
    sys.exit(main())
