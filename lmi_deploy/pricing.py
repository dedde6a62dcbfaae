"""Approximate on-demand prices of SageMaker real-time inference instances, and what a deployment's scaling makes
of them. For the README's cost table and the report printed on synth; never for decisions.

Source: the AWS SageMaker pricing page (Real-Time Inference, us-east-1), as recalled on 2026-11-26 without access to
it from this project's machines: approximate, unverified here. Prices vary by region and change; check the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmi_deploy.config import DeploymentConfig

PRICES_AS_OF = "2026-11-26"
HOURS_PER_MONTH = 730
# USD per instance-hour, SageMaker real-time inference, on-demand, us-east-1 (approximate).
US_EAST_1_HOURLY_USD: dict[str, float] = {
    "ml.g5.2xlarge": 1.515,
    "ml.g5.12xlarge": 7.09,
    "ml.g5.24xlarge": 10.18,
    "ml.p3.8xlarge": 14.688,
    "ml.inf2.xlarge": 0.99,
}


@dataclass(frozen=True)
class CostRange:
    instance_type: str
    hourly_usd: float
    min_instances: int
    max_instances: int

    @property
    def min_monthly_usd(self) -> float:
        return self.hourly_usd * self.min_instances * HOURS_PER_MONTH

    @property
    def max_monthly_usd(self) -> float:
        return self.hourly_usd * self.max_instances * HOURS_PER_MONTH

    def describe(self) -> str:
        count = (
            str(self.min_instances)
            if self.min_instances == self.max_instances
            else f"{self.min_instances}-{self.max_instances}"
        )
        monthly = (
            f"${self.min_monthly_usd:,.0f}"
            if self.min_instances == self.max_instances
            else f"${self.min_monthly_usd:,.0f}-${self.max_monthly_usd:,.0f}"
        )
        return (
            f"about {count} x {self.instance_type} at ~${self.hourly_usd:g}/h (us-east-1 on-demand, "
            f"{PRICES_AS_OF}) = {monthly} a month at {HOURS_PER_MONTH} h"
        )


def cost_range(config: DeploymentConfig) -> CostRange | None:
    """What the deployment runs at least and at most, priced at us-east-1 rates; None for an unlisted type."""
    hourly = US_EAST_1_HOURLY_USD.get(config.instance_type)
    if hourly is None:
        return None
    most = config.autoscaling_max_instances or config.instance_count
    return CostRange(config.instance_type, hourly, config.minimum_instances, most)
