"""What ``cdk synth``, ``scripts/render.py`` and ``scripts/validate.py`` print about a deployment before it is
deployed: what validation derived and noticed, and what it costs. Reads the config and the prices; neither of them
reads this."""

from __future__ import annotations

from lmi_deploy.config import DeploymentConfig
from lmi_deploy.live_prices import price_for
from lmi_deploy.pricing import cost_range


def report_lines(config: DeploymentConfig) -> list[str]:
    """What validation derived and noticed, to print before deploying: notes, the memory estimate, warnings, cost."""
    lines = [f"{config.deployment}: {config.engine.value} {config.lmi_version} on {config.instance_type}"]
    lines += [f"  {note}" for note in config.resolved.notes]
    lines += [f"  warning: {finding}" for finding in config.resolved.warnings]
    cost = cost_range(config, price_for(config.instance_type, config.region))
    if cost is not None:
        lines.append(f"  cost: {cost.describe()}")
    return lines
