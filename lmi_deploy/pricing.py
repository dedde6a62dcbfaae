"""What a deployment's scaling makes of an instance's hourly price: the fewest and the most instances, a month.

The price comes from the AWS Price List API when it can be asked (lmi_deploy/live_prices.py), else from the bundled
us-east-1 table (lmi_deploy/pricing_table.py, also the README's cost table). For the report printed on synth and
validate, ``lmi-deploy cost`` and ``lmi-deploy recommend``'s ranking (which says the table is approximate).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmi_deploy.config import DeploymentConfig
from lmi_deploy.live_prices import Price
from lmi_deploy.pricing_table import FROM_EC2, PRICE_BASIS, PRICES_AS_OF, RECALLED, US_EAST_1_HOURLY_USD

__all__ = [
    "FROM_EC2",
    "HOURS_PER_MONTH",
    "PRICES_AS_OF",
    "PRICE_BASIS",
    "RECALLED",
    "US_EAST_1_HOURLY_USD",
    "CostRange",
    "cost_range",
]

HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class CostRange:
    instance_type: str
    hourly_usd: float
    min_instances: int
    max_instances: int
    source: str = f"us-east-1 on-demand, {PRICES_AS_OF}"

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
        each = f"~${self.hourly_usd:g}/h ({self.source})"
        return f"about {count} x {self.instance_type} at {each} = {monthly} a month at {HOURS_PER_MONTH} h"


def cost_range(config: DeploymentConfig, price: Price | None = None) -> CostRange | None:
    """What the deployment runs at least and at most, at ``price`` (default: the bundled us-east-1 table); None
    without a price."""
    most = config.autoscaling_max_instances or config.instance_count
    if price is not None:
        return CostRange(config.instance_type, price.hourly_usd, config.minimum_instances, most, price.label())
    hourly = US_EAST_1_HOURLY_USD.get(config.instance_type)
    if hourly is None:
        return None
    return CostRange(config.instance_type, hourly, config.minimum_instances, most)
