"""The Hugging Face Hub token, read at start from the Secrets Manager secret the environment names."""

from __future__ import annotations

import json
import logging
import os
from typing import Any


def token_from_secret_string(secret_id: str, value: str) -> str:
    """The token in a secret's value: plain text, or JSON with a "token" (or HF_TOKEN, hf_token) key."""
    try:
        token: Any = json.loads(value)
    except ValueError:
        token = value.strip()
    if isinstance(token, dict):
        found = [token[key] for key in ("token", "HF_TOKEN", "hf_token") if key in token]
        if not found:
            raise ValueError(f"secret {secret_id} is JSON without a 'token' key")
        token = found[0]
    return str(token)


def hub_token_from_secret(secret_env: str, default_region: str) -> None:
    """Set this process's HF_TOKEN from the secret whose id ``secret_env`` holds (before loading).

    The Model's environment holds only the secret's id, never the token; the execution role may read that one
    secret. An HF_TOKEN already set wins.
    """
    secret_id = os.environ.get(secret_env)
    if not secret_id or os.environ.get("HF_TOKEN"):
        return
    import boto3  # in every LMI container; only deployments with a token secret get here

    region = os.environ.get("AWS_REGION") or default_region
    value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=secret_id)["SecretString"]
    os.environ["HF_TOKEN"] = token_from_secret_string(secret_id, value)
    logging.info("Hub token read from secret %s", secret_id)
