#!/usr/bin/env python3
"""Run the rendered handler locally over the SageMaker inference contract (GET /ping, POST /invocations).

    python scripts/serve_local.py --model-code model_code/<deployment> --model-dir DIR [--port 8080]
    python scripts/serve_local.py [--config FILE] [-c key=value ...] [--model-dir DIR]   # render on the fly

What runs is byte-for-byte what ships: the same ``model.py`` and ``serving.properties``, loaded through lmi-deploy's
djl_python-compatible runtime. ``--model-dir`` defaults to ``model_id`` when that is a local folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults
from lmi_deploy.config import load_config
from lmi_deploy.errors import ConfigError
from lmi_deploy.render import render
from lmi_deploy.runtime.server import ModelServer, serve


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C; exit 2 with one line on a bad config or a model that fails to load."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--model-code", help="a rendered model_code/<deployment> folder")
    parser.add_argument("--model-dir", help="local folder with the weights (default: model_id if it is a folder)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="lmi-serve-") as scratch:
            if args.model_code:
                model_code = Path(args.model_code)
                model_dir = args.model_dir
            else:
                config = load_config(context_from_args(args), environment_defaults=environment_defaults(os.environ))
                model_code = render(config, scratch).directory
                model_dir = args.model_dir or (config.model_id if Path(config.model_id).is_dir() else None)
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
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                http.shutdown()
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
