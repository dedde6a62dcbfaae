#!/usr/bin/env python3
"""Send the seed's request to a deployed endpoint or a local URL and print the answer.

    python scripts/invoke.py (--url http://127.0.0.1:8080 | --endpoint NAME | [--config FILE] [-c k=v])
        (--prompt TEXT [--prompt TEXT ...] | --prompts FILE) [--param key=value ...] [--stream]

Without --url or --endpoint, the endpoint is the deployment's (``<deployment>-endpoint`` stack output). Errors from
the endpoint are shown with the container's original status and message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults, stack_outputs
from lmi_deploy.client import Client, EndpointError, SageMakerClient, UrlClient, parse_params, payload

__all__ = ["SageMakerClient", "add_target_arguments", "client_from", "main"]
from lmi_deploy.config import load_config
from lmi_deploy.errors import ConfigError


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--url", help="a local endpoint, e.g. http://127.0.0.1:8080 (scripts/serve_local.py)")
    parser.add_argument("--endpoint", help="a SageMaker endpoint name (default: the deployment's stack output)")
    parser.add_argument("--endpoint-url", help="AWS endpoint override (a local emulator)")


def client_from(args: argparse.Namespace, runtime: Any = None, cloudformation: Any = None) -> Client:
    if args.url:
        return UrlClient(args.url)
    import boto3

    name = args.endpoint
    config = None
    if not name or runtime is None:
        config = load_config(context_from_args(args), environment_defaults=environment_defaults(os.environ))
    session = boto3.session.Session(region_name=config.region if config else None)
    if not name:
        assert config is not None
        cloudformation = cloudformation or session.client("cloudformation", endpoint_url=args.endpoint_url)
        name = stack_outputs(cloudformation, config.endpoint_stack_name, "pass --endpoint NAME or --url")[
            "EndpointName"
        ]
    runtime = runtime or session.client("sagemaker-runtime", endpoint_url=args.endpoint_url)
    return SageMakerClient(runtime, name)


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
