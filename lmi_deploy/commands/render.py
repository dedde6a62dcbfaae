#!/usr/bin/env python3
"""Render a deployment's model code without synthesizing: ``python scripts/render.py [--config FILE] [-c k=v ...]``.

Takes the same inputs as ``cdk synth`` and writes the same files: ``model_code/<deployment>/`` and its tarball.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from lmi_deploy import multi_model
from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_render import render_multi
from lmi_deploy.render import render
from lmi_deploy.report import report_lines


def main(argv: Sequence[str] | None = None) -> int:
    """Render and print where the files went; exit 2 with one line per problem on a bad config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--out", default="model_code", help="folder to render into (default: model_code)")
    parser.add_argument("--json", action="store_true", help="machine-readable output: the files written")
    args = parser.parse_args(argv)
    try:
        config = multi_model.load_deployment(
            context_from_args(args), environment_defaults=environment_defaults(os.environ)
        )
        if isinstance(config, multi_model.MultiModelDeployment):
            rendered = render_multi(config, args.out)
            if args.json:
                models = [
                    {"directory": str(m.directory), "files": list(m.files), "tarball": str(m.tarball)}
                    for m in rendered.models
                ]
                print(json.dumps({"deployment": config.deployment, "models": models}, indent=2))
                return 0
            print("\n".join(multi_model.report_lines(config)))
            print(f"rendered {config.deployment} ({len(config.models)} models, {config.mode}):")
            for model in rendered.models:
                print(f"  {model.directory}/ ({', '.join(model.files)}) and {model.tarball}")
                if config.mode == "mme":
                    print(f"    staged as s3://{config.bucket_name}/{config.mme_prefix}{model.target_model}")
            return 0
        code = render(config, args.out)
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2
    if args.json:
        files = [str(code.directory / name) for name in code.files]
        print(json.dumps({"deployment": config.deployment, "files": files, "tarball": str(code.tarball)}, indent=2))
        return 0
    print("\n".join(report_lines(config)))
    print(f"rendered {config.deployment} ({config.engine.value} {config.lmi_version}, handler={config.handler}):")
    for name in code.files:
        print(f"  {code.directory / name}")
    print(f"  {code.tarball}  (the model artifact)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
