#!/usr/bin/env python3
"""Run the rendered handler locally over the SageMaker inference contract (GET /ping, POST /invocations).

    python scripts/serve_local.py --model-code model_code/<deployment> --model-dir DIR [--port 8080]
    python scripts/serve_local.py [--config FILE] [-c key=value ...] [--model-dir DIR]   # render on the fly
    python scripts/serve_local.py --config MULTI.yaml [--model-dir NAME=DIR ...]     # several models, one port

What runs is byte-for-byte what ships: the same ``model.py`` and ``serving.properties``, loaded through lmi-deploy's
djl_python-compatible runtime. A rolling-batch engine (vLLM, lmi-dist) has no ``model.py``: its container handler is
stood in for by ``lmi_deploy/runtime/lora_handler.py`` (transformers + PEFT), which serves the deployment's LoRA
``adapters`` (copied beside the rendered code) selected per request as the container selects them.
``--model-dir`` defaults to ``model_id`` when that is a local folder. A deployment
file with a ``models:`` list serves every model behind the one port, routed by the ``X-Amzn-SageMaker-Target-Model``
or ``X-Amzn-SageMaker-Inference-Component`` header (or ``POST /models/NAME/invoke``) as SageMaker routes them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lmi_deploy import adapter_staging
from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from lmi_deploy.multi_render import render_multi
from lmi_deploy.render import render
from lmi_deploy.runtime.multi_server import router_for, serve_router
from lmi_deploy.runtime.server import ModelServer, serve


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; exit 2 with one line on a bad config or a model that fails to load."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--model-code", help="a rendered model_code/<deployment> folder")
    parser.add_argument(
        "--model-dir",
        action="append",
        default=[],
        help="local folder with the weights (default: model_id if it is a folder); several models: NAME=DIR each",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    try:
        with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="lmi-serve-") as scratch:
            given = args.model_dir[-1] if args.model_dir else None
            if args.model_code:
                model_code = Path(args.model_code)
                model_dir = given
            else:
                config = load_deployment(context_from_args(args), environment_defaults=environment_defaults(os.environ))
                if isinstance(config, MultiModelDeployment):
                    return serve_several(config, args, Path(scratch))
                model_code = render(config, scratch).directory
                adapter_staging.place_locally(list(config.adapters), model_code, os.environ.get("HF_TOKEN"))
                model_dir = given or (config.model_id if Path(config.model_id).is_dir() else None)
            if not model_dir:
                raise ConfigError("--model-dir is required: a local folder with the model's weights")
            if not (model_code / "serving.properties").exists():
                raise ConfigError(f"{model_code} has no serving.properties: render it first (scripts/render.py)")
            try:
                server = ModelServer(model_code, Path(model_dir)).start()
            except ValueError as error:
                raise ConfigError(str(error)) from None
            print(f"loading {model_code} with weights from {model_dir} ...", file=sys.stderr)
            http = serve(server, args.host, args.port)
            if not server.wait_ready(timeout=3600):
                http.shutdown()
                raise ConfigError(f"the model failed to load: {server.failure}")
            print(f"serving on http://{args.host}:{args.port} (POST /invocations, GET /ping); Ctrl-C stops", flush=True)
            serve_until_interrupted(http)
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the model was ready: stopped while loading
        print("lmi-deploy: stopped before the model was ready", file=sys.stderr)
        return 130
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``docker stop``, systemd, a CI job's timeout) stops the server as Ctrl-C does: the HTTP server shut
    down, the scratch folder with the rendered code removed, the ranks' processes ended at exit. Without it the
    default action kills the process on the spot and leaves all of that behind."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_several(multi: MultiModelDeployment, args: argparse.Namespace, scratch: Path) -> int:
    """Every model of a multi-model deployment behind one port, until Ctrl-C."""
    dirs = {m.name: Path(m.config.model_id) for m in multi.models if Path(m.config.model_id).is_dir()}
    for pair in args.model_dir:
        name, sep, folder = pair.partition("=")
        if not sep:
            raise ConfigError(f"--model-dir {pair!r}: with several models give NAME=DIR, e.g. --model-dir {name}=DIR")
        dirs[multi.model(name).name] = Path(folder)
    rendered = render_multi(multi, scratch)
    for model in multi.models:  # beside each model's code, where its container registers adapters at start
        adapter_staging.place_locally(list(model.config.adapters), rendered.model(model.name).directory)
    try:
        router = router_for(multi, rendered, dirs).start()
    except ValueError as error:
        raise ConfigError(str(error)) from None
    print(f"loading {', '.join(m.name for m in multi.models)} ...", file=sys.stderr)
    http = serve_router(router, args.host, args.port)
    if not router.wait_ready(timeout=3600):
        http.shutdown()
        raise ConfigError(f"a model failed to load: {router.failure}")
    header = "X-Amzn-SageMaker-Target-Model" if multi.mode == "mme" else "X-Amzn-SageMaker-Inference-Component"
    print(
        f"serving {len(multi.models)} models on http://{args.host}:{args.port} (POST /invocations with {header}: "
        f"{' | '.join(m.name for m in multi.models)}; GET /ping); Ctrl-C stops",
        flush=True,
    )
    serve_until_interrupted(http)
    return 0


def serve_until_interrupted(http: Any) -> None:
    """Keep the server (serving on its own threads) up until Ctrl-C, then shut it down."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        http.shutdown()


if __name__ == "__main__":
    sys.exit(main())
