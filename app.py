#!/usr/bin/env python3
"""The CDK app: the only place that reads CDK context and the environment.

It builds the deployment config once (defaults < ``-c config=deployments/NAME.yaml`` < ``-c key=value``), renders
the model code into ``model_code/<deployment>/``, and composes the two stacks. A bad setting stops synth with one
line per problem and no traceback.
"""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk

from lmi_deploy import multi_model
from lmi_deploy.cli import environment_defaults
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_render import render_multi
from lmi_deploy.render import render
from lmi_deploy.report import report_lines
from stacks.deployment import add_checks, add_deployment, synthesize
from stacks.multi_model_deployment import add_multi_model_deployment


def main() -> int:
    app = cdk.App()
    try:
        config = multi_model.load_deployment(
            app.node.get_all_context(),
            environment_defaults=environment_defaults(os.environ),
        )
        if isinstance(config, multi_model.MultiModelDeployment):  # a models: list (several models, one endpoint)
            lines = multi_model.report_lines(config)
            add_multi_model_deployment(app, config, render_multi(config))
        else:
            lines = report_lines(config)
            add_deployment(app, config, render(config))
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"lmi-deploy: {line}", file=sys.stderr)
    add_checks(app)
    try:
        synthesize(app)
    except Exception as error:  # cdk-nag findings, CDK's own validation: one message, no traceback
        print(f"lmi-deploy: synth failed (no templates written): {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
