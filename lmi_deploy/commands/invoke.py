#!/usr/bin/env python3
"""Send the seed's request to a deployed endpoint or a local URL and print the answer.

    python scripts/invoke.py (--url http://127.0.0.1:8080 | --endpoint NAME | [--config FILE] [-c k=v])
        [--target-model NAME | --inference-component NAME] [--adapter NAME]
        (--prompt TEXT [--prompt TEXT ...] | --prompts FILE) [--param key=value ...] [--stream]

Without --url or --endpoint, the endpoint is the deployment's (``<deployment>-endpoint`` stack output). Several models
behind one endpoint: ``--target-model`` names one of a multi-model endpoint's, ``--inference-component`` one of an
inference-component endpoint's (with a multi-model ``--config``, by its name in the file). Errors from the endpoint
are shown with the container's original status and message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults, stack_outputs
from lmi_deploy.client import (
    AdapterClient,
    Client,
    EndpointError,
    SageMakerClient,
    UrlClient,
    parse_params,
    payload,
)

__all__ = ["SageMakerClient", "add_target_arguments", "client_from", "main"]
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from lmi_deploy.runtime.multi_server import INFERENCE_COMPONENT_HEADER, TARGET_MODEL_HEADER


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--url", help="a local endpoint, e.g. http://127.0.0.1:8080 (scripts/serve_local.py)")
    parser.add_argument("--endpoint", help="a SageMaker endpoint name (default: the deployment's stack output)")
    parser.add_argument("--endpoint-url", help="AWS endpoint override (a local emulator)")
    parser.add_argument(
        "--target-model",
        metavar="NAME",
        help="the model of a multi-model endpoint: its name in the deployment file (with --config), or its "
        "TargetModel (archive name)",
    )
    parser.add_argument(
        "--inference-component",
        metavar="NAME",
        help="the model of an inference-component endpoint: its name in the deployment file (with --config), or "
        "its InferenceComponentName",
    )
    parser.add_argument(
        "--adapter",
        metavar="NAME",
        help='a LoRA adapter of the model: named in each request ("adapters"), or, with inference components, '
        "its adapter inference component <component>-<NAME>",
    )


def client_from(args: argparse.Namespace, runtime: Any = None, cloudformation: Any = None) -> Client:
    """The endpoint's client; ``--adapter`` names the adapter in each request, or picks its adapter inference
    component when the request goes to an inference component."""
    client, component = _client(args, runtime, cloudformation)
    adapter = getattr(args, "adapter", None)
    if not adapter:
        return client
    if component:  # SageMaker routes to the adapter's own inference component
        if isinstance(client, SageMakerClient):
            client.target["InferenceComponentName"] = f"{component}-{adapter}"
        else:
            assert isinstance(client, UrlClient)
            client.headers[INFERENCE_COMPONENT_HEADER] = f"{component}-{adapter}"
        return client
    return AdapterClient(client, adapter)


def _client(args: argparse.Namespace, runtime: Any, cloudformation: Any) -> tuple[Client, str | None]:
    target_model, component = args.target_model, args.inference_component
    if args.url:  # a local endpoint: it knows the models by any of their names
        headers = {TARGET_MODEL_HEADER: target_model} if target_model else {}
        headers.update({INFERENCE_COMPONENT_HEADER: component} if component else {})
        return UrlClient(args.url, headers=headers), component
    import boto3

    name = args.endpoint
    config = None
    if not name or runtime is None or args.config:
        config = load_deployment(context_from_args(args), environment_defaults=environment_defaults(os.environ))
    session = boto3.session.Session(region_name=config.region if config else None)
    outputs: dict[str, str] | None = None

    def deployed() -> dict[str, str]:
        nonlocal cloudformation, outputs
        assert config is not None
        if outputs is None:
            cloudformation = cloudformation or session.client("cloudformation", endpoint_url=args.endpoint_url)
            outputs = stack_outputs(cloudformation, config.endpoint_stack_name, "pass --endpoint NAME or --url")
        return outputs

    if isinstance(config, MultiModelDeployment):
        target_model, component = model_target(config, target_model, component, deployed)
    if not name:
        name = deployed()["EndpointName"]
    runtime = runtime or session.client("sagemaker-runtime", endpoint_url=args.endpoint_url)
    return SageMakerClient(runtime, name, target_model=target_model, inference_component=component), component


def model_target(
    multi: MultiModelDeployment,
    target_model: str | None,
    component: str | None,
    deployed: Callable[[], dict[str, str]],
) -> tuple[str | None, str | None]:
    """A model's name in the deployment file -> its TargetModel (MME) or InferenceComponentName.

    An MME archive's name carries the hash of what was staged, so it is read from the deployed stack's
    ``TargetModels`` output (the scripts do not know the account the code was rendered for); other values pass as
    they are.
    """
    names = ", ".join(m.name for m in multi.models)
    if multi.mode == "mme":
        if component:
            raise ConfigError(f"{multi.deployment} is a multi-model endpoint: name the model with --target-model")
        if not target_model:
            raise ConfigError(f"{multi.deployment} serves several models: pass --target-model NAME, one of {names}")
        if any(target_model == m.name for m in multi.models):
            archives = json.loads(deployed().get("TargetModels", "{}"))
            if target_model not in archives:
                raise ConfigError(
                    f"the deployed {multi.endpoint_stack_name} has no TargetModel for {target_model}: deploy the "
                    "deployment file as it is now, or pass --target-model with the archive name"
                )
            return str(archives[target_model]), None
        return target_model, None
    if target_model:
        raise ConfigError(f"{multi.deployment} serves inference components: name the model with --inference-component")
    if not component:
        raise ConfigError(f"{multi.deployment} serves several models: pass --inference-component NAME, one of {names}")
    if any(component == m.name for m in multi.models):
        return None, multi.inference_component_name(multi.model(component))
    return None, component


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompts:
        text = Path(args.prompts).read_text()
        try:
            loaded = json.loads(text)
            prompts += [str(p) for p in (loaded if isinstance(loaded, list) else [loaded])]
        except ValueError:
            prompts += [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ConfigError("give --prompt TEXT (repeatable) or --prompts FILE (one per line, or a JSON list)")
    return prompts


def main(argv: Sequence[str] | None = None, *, runtime: Any = None, cloudformation: Any = None) -> int:
    """Print the response (streamed chunks as they arrive); exit 1 on an endpoint error, 2 on bad arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_target_arguments(parser)
    parser.add_argument("--prompt", action="append", help="an input (repeatable)")
    parser.add_argument("--prompts", help="file of inputs: one per line, or a JSON list")
    parser.add_argument("--param", action="append", default=[], help="generation parameter KEY=VALUE (repeatable)")
    parser.add_argument("--stream", action="store_true", help="stream the output as it is generated")
    args = parser.parse_args(argv)
    try:
        client = client_from(args, runtime, cloudformation)
        body = payload(read_prompts(args), parse_params(args.param), stream=args.stream)
        if args.stream and isinstance(client, SageMakerClient) and "TargetModel" in client.target:
            raise ConfigError(
                "a multi-model endpoint does not stream (SageMaker takes no TargetModel there): drop --stream"
            )
    except (ConfigError, ValueError) as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2
    try:
        if args.stream:
            for chunk in client.stream(body):
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
        else:
            print(json.dumps(client.invoke(body), indent=2, ensure_ascii=False))
    except EndpointError as error:
        print(f"lmi-deploy: the endpoint answered {error.status}: {error.message}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"lmi-deploy: cannot reach the endpoint: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
