"""Staging's one error type, and an AWS failure as one line that says what to do."""

from __future__ import annotations

from lmi_deploy.errors import ConfigError


class StagingError(ConfigError):
    """Staging cannot go on; the message says what to do."""


def client_error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def explain(error: Exception, bucket: str, prefix: str) -> StagingError:
    """An AWS failure as one line that says what to do."""
    code = client_error_code(error)
    name = type(error).__name__
    where = f"s3://{bucket}/{prefix}"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return StagingError(
            "no AWS credentials found: configure a profile (aws configure / AWS_PROFILE) or an "
            "instance role, then run again"
        )
    if code in ("NoSuchBucket",) or (code == "404" and not prefix):
        return StagingError(
            f"bucket {bucket} does not exist: deploy the artifacts stack first "
            "(npx cdk deploy <deployment>-artifacts) or pass --bucket"
        )
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return StagingError(
            f"access denied to {where} ({code}): your identity needs s3:ListBucket, s3:GetObject, "
            "s3:PutObject and s3:DeleteObject on that prefix"
        )
    if isinstance(error, OSError) and error.errno == 28:
        return StagingError(
            f"disk full while staging ({error.filename or 'local cache'}): free space or point "
            "HF_HOME at a larger disk, then run again (finished files are kept)"
        )
    return StagingError(f"staging to {where} failed: {name}: {error}")
