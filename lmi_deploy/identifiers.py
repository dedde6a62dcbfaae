"""The syntax of the identifiers a deployment names: Hub ids, revisions, S3 locations, KMS keys, secrets.

Each check is a full match (``re.fullmatch``: a trailing newline never passes as it does with ``$``) and returns the
problem in words, or None. These values reach IAM statements, serving.properties, environment variables and the
rendered handler, so each is held to its own service's syntax, not merely "some text".
"""

from __future__ import annotations

import ipaddress
import re

# Any control character, and the Unicode line and paragraph separators (Python's str.splitlines() breaks on them).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# The Hub's repo ids: an optional namespace and a name, each 1-96 of letters, digits, '-', '_', '.', not starting or
# ending with '-' or '.', without '--' or '..' (huggingface_hub's validate_repo_id).
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"(?:{_HUB_PART}/)?{_HUB_PART}")
# Git refs as the Hub takes them for revisions: branches, tags (refs/pr/1 too), commit hashes.
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}")
# S3 bucket names (general purpose buckets) and the object key characters AWS calls safe, less '*' (an IAM and
# s5cmd wildcard); '/' separates segments.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_KEY_SEGMENT = re.compile(r"[A-Za-z0-9!_.'()=+@,-]{1,255}")
MAX_S3_KEY = 1024
KMS_KEY = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key|alias)/[A-Za-z0-9/_-]{1,256}")
SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}")


def control_character_problem(value: str) -> str | None:
    match = CONTROL.search(value)
    if match is None:
        return None
    return (
        f"holds a control character ({match.group()!r} at position {match.start()}): settings are one line of "
        "printable text"
    )


def hub_id_problem(value: str) -> str | None:
    if _HUB_ID.fullmatch(value) and "--" not in value and ".." not in value:
        return None
    return (
        "is not a Hugging Face Hub id (org/name, each part 1-96 of letters, digits, '-', '_', '.', not starting or "
        "ending with '-' or '.', no '--' or '..'), an s3://bucket/prefix nor a local model folder"
    )


def local_folder_problem(value: str) -> str | None:
    """A local model folder names the weights prefix too (``models/<model_id>/<revision>/``), which IAM statements
    end with ``*``: a wildcard or '#' in the path would widen the grant or end the properties value."""
    bad = sorted(set(value) & set("*?#\\[]"))
    if bad:
        return f"holds {''.join(bad)!r}, which the weights prefix cannot (IAM wildcards, properties comments)"
    return None


def revision_problem(value: str) -> str | None:
    if (
        _REVISION.fullmatch(value)
        and ".." not in value
        and "//" not in value
        and not value.endswith(("/", ".", ".lock"))
    ):
        return None
    return "is not a Hub revision (a branch, tag or commit: letters, digits, '.', '_', '-', '/'; at most 255)"


def bucket_problem(bucket: str) -> str | None:
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or ".-" in bucket or "-." in bucket:
        return (
            f"bucket {bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-', starting and ending with a "
            "letter or digit)"
        )
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        return None
    return f"bucket {bucket!r} is formatted as an IP address, which S3 refuses"


def s3_prefix_problem(value: str) -> str | None:
    """An ``s3://bucket/prefix[/]`` location with a non-empty prefix: a whole bucket is never granted."""
    if not value.startswith("s3://"):
        if value[:5].lower() == "s3://":
            return f"write the scheme in lowercase: s3://{value[5:]}"
        return "is not an S3 location: use s3://<bucket>/<prefix>/"
    bucket, _, prefix = value.removeprefix("s3://").partition("/")
    problem = bucket_problem(bucket)
    if problem:
        return problem
    if not prefix.strip("/"):
        return (
            f"names the whole bucket {bucket!r}: add a prefix (s3://{bucket}/<prefix>/), since the endpoint's role is "
            "granted everything under it"
        )
    segments = prefix.removesuffix("/").split("/")
    for segment in segments:
        if segment in (".", "..") or not _KEY_SEGMENT.fullmatch(segment):
            return (
                f"prefix segment {segment!r} is not allowed: use letters, digits and !_.'()=+@,- between single '/' "
                "(no '*', spaces, '..' or empty segments)"
            )
    if len(prefix.encode()) > MAX_S3_KEY:
        return f"prefix is longer than S3's {MAX_S3_KEY}-byte keys"
    return None


def kms_key_problem(value: str) -> str | None:
    if value == "create" or KMS_KEY.fullmatch(value):
        return None
    return "is neither 'create' nor a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>)"


def secret_problem(value: str) -> str | None:
    """Secrets Manager secret name or ARN (the message never repeats the value: it might be a token itself)."""
    if SECRET_ARN.fullmatch(value) if value.startswith("arn:") else SECRET_NAME.fullmatch(value):
        return None
    return (
        "is not a Secrets Manager secret name (1-512 of A-Z a-z 0-9 / _ + = . @ -) or ARN "
        "(arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
    )
