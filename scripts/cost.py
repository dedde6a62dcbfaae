#!/usr/bin/env python3
"""What a deployment's instances cost: ``python scripts/cost.py [--config FILE] [-c key=value ...] [--json]``.

Prints the instance type, its on-demand hourly price for SageMaker real-time inference, the fewest and the most
instances the deployment's scaling allows, and what that makes a month (730 hours), with where the price came from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from lmi_deploy.cli import add_config_arguments, context_from_args, environment_defaults
from lmi_deploy.errors import ConfigError
from lmi_deploy.multi_model import MultiModelDeployment, load_deployment
from lmi_deploy.pricing import HOURS_PER_MONTH, PRICE_BASIS, PRICES_AS_OF, US_EAST_1_HOURLY_USD, CostRange


def main(argv: Sequence[str] | None = None) -> int:
    """Print the cost (or its JSON); exit 2 with one line on a bad config (every catalog type has a price)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        config = load_deployment(context_from_args(args), environment_defaults=environment_defaults(os.environ))
        endpoint = config.endpoint if isinstance(config, MultiModelDeployment) else config
        low, high = (
            (config.min_instances, config.max_instances)
            if isinstance(config, MultiModelDeployment)
            else (endpoint.minimum_instances, endpoint.autoscaling_max_instances or endpoint.instance_count)
        )
    except ConfigError as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2
    cost = CostRange(endpoint.instance_type, US_EAST_1_HOURLY_USD[endpoint.instance_type], low, high)
    basis = PRICE_BASIS[endpoint.instance_type]
    source = f"bundled table ({basis}), us-east-1 on-demand, approximate, as of {PRICES_AS_OF}"
    if args.json:
        print(
            json.dumps(
                {
                    "deployment": endpoint.deployment,
                    "region": endpoint.region,
                    "instance_type": cost.instance_type,
                    "hourly_usd": cost.hourly_usd,
                    "min_instances": cost.min_instances,
                    "max_instances": cost.max_instances,
                    "min_monthly_usd": round(cost.min_monthly_usd, 2),
                    "max_monthly_usd": round(cost.max_monthly_usd, 2),
                    "hours_per_month": HOURS_PER_MONTH,
                    "source": source,
                },
                indent=2,
            )
        )
        return 0
    print(f"{endpoint.deployment} ({endpoint.region}): {cost.describe()}")
    print(f"  price source: {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
