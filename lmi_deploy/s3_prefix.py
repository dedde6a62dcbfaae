"""What lies under a staging prefix in S3, and removing what a new staging does not hold.

Staging makes its prefix hold exactly the model: a file an earlier staging left there (a single ``model.safetensors``
beside a new sharded checkpoint, say) would otherwise be downloaded with the new files and loaded by whatever reads
the folder by pattern. Listing goes page by page and uses the prefix with its trailing ``/``, so ``models/x/main/``
never matches ``models/x/main2/``; every key is checked to start with the prefix before anything is removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lmi_deploy.errors import ConfigError

MANIFEST = "manifest.json"
PARTITIONED = "partitioned/"  # the partition job's output (lmi_deploy.partition), built from the staged weights
LIST_PAGE_SIZE = 1000
DELETE_BATCH = 1000  # S3's DeleteObjects limit


class PrefixError(ConfigError):
    """Objects under the prefix could not be removed; the message says which and what to do."""


@dataclass(frozen=True)
class Leftovers:
    """Objects under the prefix that a new staging does not hold (names relative to the prefix)."""

    stale: list[str]  # files of an earlier staging
    partitioned: list[str]  # a partitioned checkpoint: valid only for the weights it was built from
    other_stagings: list[str]  # sub-prefixes holding their own manifest.json: another staging, left alone


def list_names(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every object under ``prefix`` (which ends with ``/``), relative to it, over as many pages as there are."""
    if not prefix.endswith("/"):
        raise ValueError(f"prefix {prefix!r} must end with '/'")
    names: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
    )
    for page in pages:
        names.extend(item["Key"][len(prefix) :] for item in page.get("Contents", []) if item["Key"].startswith(prefix))
    return names


def leftovers(existing: Iterable[str], staged: Iterable[str]) -> Leftovers:
    """Sort what is under the prefix but not in ``staged`` (nor the manifest) into the three kinds of Leftovers."""
    names = sorted(existing)
    keep = {*staged, MANIFEST}
    nested = sorted(name.removesuffix(MANIFEST) for name in names if name.endswith("/" + MANIFEST))
    stale: list[str] = []
    partitioned: list[str] = []
    for name in names:
        if name in keep or any(name.startswith(sub) for sub in nested):
            continue
        (partitioned if name.startswith(PARTITIONED) else stale).append(name)
    return Leftovers(stale, partitioned, nested)


def remove(s3: Any, bucket: str, prefix: str, names: list[str]) -> None:
    """Delete ``prefix + name`` for each name, in batches of S3's limit; a key S3 refuses is a PrefixError."""
    for start in range(0, len(names), DELETE_BATCH):
        keys = [prefix + name for name in names[start : start + DELETE_BATCH]]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise PrefixError(
                f"could not remove s3://{bucket}/{first.get('Key')} ({first.get('Code')}: {first.get('Message')}) "
                f"and {len(errors) - 1} more: your identity needs s3:DeleteObject on s3://{bucket}/{prefix}*; "
                "run again (the manifest is written only once the prefix holds exactly the model)"
            )


def summary(names: list[str], shown: int = 10) -> str:
    """``a, b, c and 7 more``: names for a one-line report."""
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")
