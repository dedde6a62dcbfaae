"""The Secrets Manager secret that holds the Hugging Face Hub token, read by a rendered handler at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack

from stacks.components.execution_role import ExecutionRole


@dataclass(frozen=True)
class HubTokenSecret:
    """``hf_token_secret``: a secret's name or ARN (the token itself never enters the config or the template)."""

    name_or_arn: str

    def bind(self, role: ExecutionRole) -> None:
        """secretsmanager:GetSecretValue on this one secret. A name stands for its ARN plus the six characters
        Secrets Manager appends (IAM's documented pattern)."""
        arn = (
            self.name_or_arn
            if self.name_or_arn.startswith("arn:")
            else Stack.of(role).format_arn(
                service="secretsmanager",
                resource="secret",
                resource_name=f"{self.name_or_arn}-??????",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
        )
        role.allow("ReadHubTokenSecret", ["secretsmanager:GetSecretValue"], [arn])
