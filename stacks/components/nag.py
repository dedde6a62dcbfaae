"""Acknowledging a cdk-nag finding always takes a written reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

# How cdk-nag prints the partition pseudo-parameter in the ids of its findings.
NAG_PARTITION = "<AWS::Partition>"


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (e.g. ``AwsSolutions-IAM5[Resource::*]``) on ``construct``, with why."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule_id} needs a reason")
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def acknowledge_wildcard(construct: IConstruct, resource: str, reason: str) -> None:
    """Acknowledge AwsSolutions-IAM5 for one wildcard ``resource`` as cdk-nag prints it (``*``, or an ARN with
    ``<AWS::Partition>``), with why."""
    acknowledge(construct, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
