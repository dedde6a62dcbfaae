#!/usr/bin/env python3
"""What a deployment's instances cost: ``python scripts/cost.py [--config FILE] [-c key=value ...] [--json]``.

Prints the instance type, its on-demand hourly price for SageMaker hosting in the deployment's region, the fewest and
the most instances the deployment's scaling allows, and what that makes a month (730 hours), with where the price
came from: the AWS Price List API when your credentials allow (cached for a week, ``--refresh`` asks again), else
the bundled us-east-1 table, saying why. ``--bundled`` (or ``LMI_DEPLOY_PRICES=bundled``) never asks the API.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults
from lmi_deploy.errors import ConfigError
from lmi_deploy.live_prices import SWITCH, price_for
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from lmi_deploy.pricing import HOURS_PER_MONTH, CostRange


def main(argv: Sequence[str] | None = None, *, pricing: Any = None) -> int:
    """Print the cost (or its JSON); exit 2 with one line on a bad config or an instance type without a price.

    ``pricing``: a boto3 pricing client to ask (tests pass a stubbed one); default: made from your credentials.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--refresh", action="store_true", help="ask the Price List API even when a cached price is fresh"
    )
    parser.add_argument("--bundled", action="store_true", help="use the bundled table; never ask the API")
    args = parser.parse_args(argv)
    environ = {**os.environ, SWITCH: "bundled"} if args.bundled else os.environ
    try:
        config = load_deployment(context_from_args(args), environment_defaults=environment_defaults(os.environ))
        endpoint = config.endpoint if isinstance(config, MultiModelDeployment) else config
        low, high = (
            (config.min_instances, config.max_instances)
            if isinstance(config, MultiModelDeployment)
            else (endpoint.minimum_instances, endpoint.autoscaling_max_instances or endpoint.instance_count)
        )
        price = price_for(
            endpoint.instance_type, endpoint.region, client=pricing, environ=environ, refresh=args.refresh
        )
        if price is None:  # every catalog type is in the bundled table; a type outside it was refused above
            raise ConfigError(f"instance_type={endpoint.instance_type} has no price; check the SageMaker pricing page")
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2
    cost = CostRange(endpoint.instance_type, price.hourly_usd, low, high, price.label())
    if args.json:
        summary = {
            "deployment": endpoint.deployment,
            "min_instances": cost.min_instances,
            "max_instances": cost.max_instances,
            "min_monthly_usd": round(cost.min_monthly_usd, 2),
            "max_monthly_usd": round(cost.max_monthly_usd, 2),
            "hours_per_month": HOURS_PER_MONTH,
        }
        print(json.dumps({**summary, **asdict(price)}, indent=2))
        return 0
    print(f"{endpoint.deployment} ({endpoint.region}): {cost.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
