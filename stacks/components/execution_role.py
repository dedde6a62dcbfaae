"""The SageMaker execution role of an endpoint: the role and its one policy, which the resources fill.

Each resource grants the role what it needs for itself (``bind``/``grant_*``, with its own cdk-nag
acknowledgements): the code artifact, the weights prefix, the image, the log group, the network, the key, the Hub
token secret, the async and data-capture prefixes, the async topics. This module knows none of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.components.nag import acknowledge_wildcard


class ExecutionRole(Construct):
    """Role SageMaker assumes to run the endpoint's containers, with one policy that starts empty. Never
    AmazonSageMakerFullAccess: every statement comes from the resource it is for, and names it.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
        self.policy = iam.Policy(self, "Policy", roles=[self.role])
        self._granted: set[str] = set()

    def allow(
        self,
        sid: str,
        actions: Sequence[str],
        resources: Sequence[str],
        *,
        conditions: Mapping[str, Any] | None = None,
    ) -> bool:
        """Add one statement; False (and nothing added) when the role already has one with the same actions,
        resources and conditions: several models may share an image or a weights prefix."""
        key = json.dumps(
            Stack.of(self).resolve([list(actions), list(resources), conditions or {}]), sort_keys=True, default=str
        )
        if key in self._granted:
            return False
        self._granted.add(key)
        self.policy.add_statements(
            iam.PolicyStatement(
                sid=sid, actions=list(actions), resources=list(resources), conditions=dict(conditions or {}) or None
            )
        )
        return True

    def acknowledge_wildcard(self, resource: str, reason: str) -> None:
        """Acknowledge cdk-nag's AwsSolutions-IAM5 for one wildcard resource of the role's policy, with why."""
        acknowledge_wildcard(self.policy, resource, reason)
