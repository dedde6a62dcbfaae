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
    cost = cost_line(config)
    return lines + ([f"  {cost}"] if cost else [])


def cost_line(config: DeploymentConfig) -> str | None:
    """``cost: about 1 x ml.g5.12xlarge at ~$7.09/h (<where the price came from>) = ...``; None without a price."""
    cost = cost_range(config, price_for(config.instance_type, config.region))
    return f"cost: {cost.describe()}" if cost is not None else None
