"""The staging run: make a prefix hold exactly the model's files, then write its manifest last."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmi_deploy import s3_prefix
from lmi_deploy.errors import ConfigError
from lmi_deploy.staging.errors import StagingError, client_error_code, explain
from lmi_deploy.staging.local import LocalFile, select_files
from lmi_deploy.staging.upload import MAX_OBJECT, PART_SIZE, Sent, Target, send

MANIFEST = s3_prefix.MANIFEST


@dataclass
class StageResult:
    uploaded: list[str]  # (with dry_run: would be)
    skipped: list[str]
    repaired: list[str]
    manifest_key: str
    total_bytes: int
    removed: list[str] = field(default_factory=list)  # objects of an earlier staging removed from the prefix
    kept: list[str] = field(default_factory=list)  # sub-prefixes left alone: another staging, a matching partitioned/
    dry_run: bool = False


def stage(
    s3: Any,
    folder: Path,
    bucket: str,
    prefix: str,
    *,
    files: Iterable[str] | None = None,
    within: Path | None = None,
    description: dict[str, Any] | None = None,
    concurrency: int = 10,
    show_progress: bool = True,
    on_verified: Callable[[LocalFile], None] | None = None,
    part_size: int = PART_SIZE,
    dry_run: bool = False,
) -> StageResult:
    """Make ``s3://bucket/prefix`` hold exactly ``files`` of ``folder`` (default: select_files) and their manifest.

    Objects already intact are skipped, the others uploaded and verified; then what an earlier staging left under the
    prefix that this one does not hold is removed, and the manifest is written last. The manifest is removed before
    the first change (an upload or a removal), so an interrupted (re-)staging never leaves one claiming a complete
    set. A ``partitioned/`` checkpoint is kept only when the files are those the previous manifest lists (it was
    built from them); otherwise it was built from other weights and is removed too. Sub-prefixes holding their own
    manifest.json are another staging and are left alone. ``dry_run``: hash and compare, change nothing.
    ``on_verified`` is called after each object verified (tests use it to interrupt a run midway).
    """
    prefix = _checked_prefix(prefix, bucket)
    names = list(files) if files is not None else select_files(folder, within)
    _check_sizes(folder, names)
    _check_bucket(s3, bucket)
    try:
        existing = s3_prefix.list_names(s3, bucket, prefix)
        previous = _read_manifest(s3, bucket, prefix) if MANIFEST in existing else None
        manifest = _ManifestGuard(s3, bucket, prefix, present=MANIFEST in existing and not dry_run)
        left = s3_prefix.leftovers(existing, names)
        if left.stale:
            manifest.remove()
        target = Target(
            s3, bucket, prefix, concurrency, part_size, show_progress, on_verified, manifest.remove, dry_run
        )
        sent = send(target, folder, names)
        listed = {i.relative: {"size": i.size, "crc64nvme": i.crc64nvme} for i in sorted(sent.local, key=_relative)}
        same_weights = previous is not None and previous.get("files") == listed
        removed = left.stale + ([] if same_weights else left.partitioned)
        total = sum(i.size for i in sent.local)
        if not dry_run:
            content = {**(description or {}), "files": listed, "total_bytes": total}
            _finish(s3, bucket, prefix, manifest, removed, content)
    except ConfigError:
        raise
    except Exception as error:
        raise explain(error, bucket, prefix) from None
    kept = left.other_stagings + ([s3_prefix.PARTITIONED] if same_weights and left.partitioned else [])
    return _result(sent, prefix, total, removed, kept, dry_run)


def _checked_prefix(prefix: str, bucket: str) -> str:
    """The prefix ending in one slash; never the bucket's root."""
    prefix = prefix.rstrip("/") + "/" if prefix.rstrip("/") else ""
    if not prefix:
        raise StagingError(
            f"refusing to stage at the root of bucket {bucket}: staging removes what else lies under its prefix; "
            "pass a prefix such as models/<name>/<revision>/"
        )
    return prefix


def _check_sizes(folder: Path, names: list[str]) -> None:
    for name in names:
        if (folder / name).stat().st_size > MAX_OBJECT:
            raise StagingError(f"{name} is larger than S3's largest object (5 TiB); split it into shards")


def _check_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as error:
        code = client_error_code(error)
        raise explain(error if code not in ("404", "NotFound") else _NoSuchBucket(), bucket, "") from None


def _finish(
    s3: Any, bucket: str, prefix: str, manifest: _ManifestGuard, removed: list[str], content: dict[str, Any]
) -> None:
    """Remove what an earlier staging left (the manifest first), then write the new manifest."""
    if removed:
        manifest.remove()
        s3_prefix.remove(s3, bucket, prefix, removed)
    manifest.write(content)


def _result(sent: Sent, prefix: str, total: int, removed: list[str], kept: list[str], dry_run: bool) -> StageResult:
    result = StageResult(sent.uploaded, sent.skipped, sent.repaired, prefix + MANIFEST, total, removed, kept)
    result.dry_run = dry_run
    return result


def _relative(item: LocalFile) -> str:
    return item.relative


class _ManifestGuard:
    """The prefix's manifest: removed once, before the first change to the prefix; written last."""

    def __init__(self, s3: Any, bucket: str, prefix: str, present: bool) -> None:
        self._s3, self._bucket, self._key, self._present = s3, bucket, prefix + MANIFEST, present

    def remove(self) -> None:
        if self._present:
            self._s3.delete_object(Bucket=self._bucket, Key=self._key)
            self._present = False

    def write(self, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=body, ContentType="application/json")
        self._present = True


def _read_manifest(s3: Any, bucket: str, prefix: str) -> dict[str, Any] | None:
    """The manifest an earlier staging wrote; None when it is missing or not one of ours."""
    try:
        body = s3.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read()
        manifest = json.loads(body)
    except ValueError:
        return None
    except Exception as error:
        if client_error_code(error) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return manifest if isinstance(manifest, dict) else None


class _NoSuchBucket(Exception):
    response = {"Error": {"Code": "NoSuchBucket"}}  # noqa: RUF012
