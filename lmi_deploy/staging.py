"""Stage a model's files in S3: select, checksum, upload in parallel, verify, and write a manifest last.

S3 is the state. Every object is sent with its CRC64NVME checksum, computed here over the whole file by the AWS CRT
(a few GB/s a core, files checksummed in parallel threads: the CRT releases the GIL); S3 checks the bytes it receives
against it (a single PUT) or computes the full-object CRC64NVME of the assembled parts and checks it against ours
(multipart, ChecksumType FULL_OBJECT), and stores it. An object already there with the right size and that stored
checksum is intact and is not sent again, whatever the part size and under SSE-S3 or SSE-KMS alike (unlike an ETag,
a checksum does not depend on the encryption). So a re-run uploads nothing, an interrupted run resumes where it
stopped, and a corrupted or missing object is found and sent again. Then what an earlier staging left under the
prefix that this one does not hold is deleted (s3_prefix), so the prefix holds exactly the model. The manifest (size
and CRC64NVME of every file) is deleted before the first change and written only after every object verified and the
prefix holds exactly the set, so there is never a half-written one nor one left claiming the previous set. The model
folder is read by model_folder: no link out of it, nothing unreadable skipped. boto3 clients are passed in; nothing
here reads the environment.
"""

from __future__ import annotations

import base64
import errno
import fnmatch
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmi_deploy import model_folder, s3_prefix
from lmi_deploy.errors import ConfigError

MANIFEST = s3_prefix.MANIFEST
MiB = 1024 * 1024
# Multipart chunk size. The full-object checksum does not depend on it; 16 MiB parts staged 2.1x faster than 64 MiB
# ones in bench_staging (same run); s3transfer raises it for a file of more than 10,000 parts.
PART_SIZE = 16 * MiB
MAX_OBJECT = 5 * 1024**4  # S3's largest object
CHUNK = 8 * MiB  # read size while checksumming
HASH_THREADS = max(2, min(8, os.cpu_count() or 2))  # files checksummed at once

# What a served model needs (the seed's allow-patterns): config, tokenizer, generation config, and the weights.
SUPPORT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "vocab*",
    "merges.txt",
    "*.model",
    "*.tiktoken",
    "added_tokens.json",
    "preprocessor_config.json",
    "chat_template*",
)
SAFETENSORS_PATTERNS = ("*.safetensors", "model.safetensors.index.json")
BIN_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")


class StagingError(ConfigError):
    """Staging cannot go on; the message says what to do."""


@dataclass(frozen=True)
class LocalFile:
    relative: str
    path: Path
    size: int
    crc64nvme: str  # base64 of the whole file's CRC64NVME (8 bytes, big-endian), as S3 reports it


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


def select_files(folder: Path, within: Path | None = None) -> list[str]:
    """Files of a model folder to stage: config, tokenizer and weights; safetensors win over .bin when both exist.

    Links may lead only inside ``within`` (default: the folder; for a Hub snapshot its cache folder); a link out of
    it, or anything unreadable, is an error naming the file (model_folder).
    """
    names = model_folder.list_files(folder, within)
    basenames = {name: name.rsplit("/", 1)[-1] for name in names}
    has_safetensors = any(fnmatch.fnmatch(b, "*.safetensors") for b in basenames.values())
    weights = SAFETENSORS_PATTERNS if has_safetensors else BIN_PATTERNS
    chosen = [n for n in names if any(fnmatch.fnmatch(basenames[n], p) for p in (*SUPPORT_PATTERNS, *weights))]
    if not any(fnmatch.fnmatch(basenames[n], p) for n in chosen for p in weights if "index" not in p):
        raise StagingError(f"{folder} holds no weights (*.safetensors or pytorch_model*.bin); nothing to stage")
    if "config.json" not in chosen:
        raise StagingError(f"{folder} has no config.json at its top; is it a Hugging Face model folder?")
    model_folder.check_files(folder, chosen, within)
    return chosen


def hash_file(path: Path, relative: str, progress: Callable[[int], None] | None = None) -> LocalFile:
    """The file's full-object CRC64NVME, in one read through a reused buffer (the CRT releases the GIL meanwhile)."""
    try:
        from awscrt import checksums
    except ImportError:
        raise StagingError("staging needs the AWS CRT for its checksums: pip install -r requirements.txt") from None
    crc = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            crc = checksums.crc64nvme(view[:count], crc)
            if progress:
                progress(count)
    return LocalFile(relative, path, path.stat().st_size, base64.b64encode(crc.to_bytes(8, "big")).decode())


def _client_error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def explain(error: Exception, bucket: str, prefix: str) -> StagingError:
    """An AWS failure as one line that says what to do."""
    code = _client_error_code(error)
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


class _Progress:
    """A byte counter drawn as one line on stderr (tqdm when installed)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._bar: Any = None
        self.enabled = enabled and total > 0
        if self.enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr)
            except ImportError:
                self._bar = None

    def __call__(self, amount: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(amount)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _remote_state(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        head: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as error:
        if _client_error_code(error) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head


def _intact(head: dict[str, Any] | None, local: LocalFile) -> bool:
    """Size, and the full-object CRC64NVME S3 checked and stored for the bytes it received."""
    if head is None or head.get("ContentLength") != local.size:
        return False
    return head.get("ChecksumCRC64NVME") == local.crc64nvme and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"


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
    prefix = prefix.rstrip("/") + "/" if prefix.rstrip("/") else ""
    if not prefix:
        raise StagingError(
            f"refusing to stage at the root of bucket {bucket}: staging removes what else lies under its prefix; "
            "pass a prefix such as models/<name>/<revision>/"
        )
    names = list(files) if files is not None else select_files(folder, within)
    for name in names:
        if (folder / name).stat().st_size > MAX_OBJECT:
            raise StagingError(f"{name} is larger than S3's largest object (5 TiB); split it into shards")
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as error:
        code = _client_error_code(error)
        raise explain(error if code not in ("404", "NotFound") else _NoSuchBucket(), bucket, "") from None
    try:
        existing = s3_prefix.list_names(s3, bucket, prefix)
        previous = _read_manifest(s3, bucket, prefix) if MANIFEST in existing else None
        manifest = _ManifestGuard(s3, bucket, prefix, present=MANIFEST in existing and not dry_run)
        left = s3_prefix.leftovers(existing, names)
        if left.stale:
            manifest.remove()
        sent = _send(
            s3, folder, bucket, prefix, names, concurrency, show_progress, on_verified, part_size,
            before_change=manifest.remove, dry_run=dry_run,
        )  # fmt: skip
        listed = {i.relative: {"size": i.size, "crc64nvme": i.crc64nvme} for i in sorted(sent.local, key=_relative)}
        same_weights = previous is not None and previous.get("files") == listed
        removed = left.stale + ([] if same_weights else left.partitioned)
        total = sum(i.size for i in sent.local)
        if not dry_run:
            if removed:
                manifest.remove()
                s3_prefix.remove(s3, bucket, prefix, removed)
            manifest.write({**(description or {}), "files": listed, "total_bytes": total})
    except ConfigError:
        raise
    except Exception as error:
        raise explain(error, bucket, prefix) from None
    kept = left.other_stagings + ([s3_prefix.PARTITIONED] if same_weights and left.partitioned else [])
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
        if _client_error_code(error) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return manifest if isinstance(manifest, dict) else None


@dataclass
class _Sent:
    uploaded: list[str]
    skipped: list[str]
    repaired: list[str]
    local: list[LocalFile]


def _send(
    s3: Any,
    folder: Path,
    bucket: str,
    prefix: str,
    names: list[str],
    concurrency: int,
    show_progress: bool,
    on_verified: Callable[[LocalFile], None] | None,
    part_size: int,
    *,
    before_change: Callable[[], None],
    dry_run: bool,
) -> _Sent:
    """Hash every file, upload those not intact in S3 (calling ``before_change`` first) and verify each upload.

    All uploads share one s3transfer manager (parallel files and parallel parts). A pipeline: files are hashed in
    parallel (the CRT releases the GIL), and each one that is not already intact starts uploading as soon as its
    own hash is known, while the others are still hashed.
    """
    from boto3.s3.transfer import TransferConfig, create_transfer_manager
    from s3transfer.subscribers import BaseSubscriber

    total = sum((folder / n).stat().st_size for n in names)
    progress = _Progress(2 * total, "hash+upload", show_progress)  # every byte is read to hash, then maybe sent

    class Progress(BaseSubscriber):  # type: ignore[misc]
        def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
            progress(bytes_transferred)

    sent = _Sent([], [], [], [])
    config = TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=concurrency,
        use_threads=True,
        preferred_transfer_client="classic",  # not the CRT client boto3 picks on some instance types: same behaviour
    )
    try:
        with (
            create_transfer_manager(s3, config) as manager,
            ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="hash") as hashers,
        ):
            # Largest first, so one big shard does not start last and finish alone.
            ordered = sorted(names, key=lambda n: -(folder / n).stat().st_size)
            hashing = [hashers.submit(hash_file, folder / n, n, progress) for n in ordered]
            sending: list[tuple[LocalFile, Any]] = []
            for done in as_completed(hashing):
                item = done.result()
                sent.local.append(item)
                head = _remote_state(s3, bucket, prefix + item.relative)
                if _intact(head, item):
                    sent.skipped.append(item.relative)
                    progress(item.size)
                    continue
                (sent.repaired if head is not None else sent.uploaded).append(item.relative)
                if dry_run:
                    continue
                before_change()
                upload = manager.upload(
                    str(item.path),
                    bucket,
                    prefix + item.relative,
                    # S3 checks the bytes against it (a PUT), or the assembled parts' full-object CRC (multipart)
                    extra_args={"ChecksumAlgorithm": "CRC64NVME", "ChecksumCRC64NVME": item.crc64nvme},
                    subscribers=[Progress()],
                )
                sending.append((item, upload))
            for item, upload in sending:
                upload.result()
                if not _intact(_remote_state(s3, bucket, prefix + item.relative), item):
                    raise StagingError(
                        f"s3://{bucket}/{prefix}{item.relative} does not match the local file after upload (size or "
                        "CRC64NVME differ); run again to retry it"
                    )
                if on_verified is not None:
                    on_verified(item)
    finally:
        progress.close()
    for names_list in (sent.uploaded, sent.skipped, sent.repaired):
        names_list.sort()
    return sent


class _NoSuchBucket(Exception):
    response = {"Error": {"Code": "NoSuchBucket"}}  # noqa: RUF012


# ---- sources ---------------------------------------------------------------------------------------------------


def hub_allow_patterns(repo_files: Iterable[str]) -> list[str]:
    """The seed's allow-patterns for a Hub repo: support files plus safetensors, or .bin when it has no safetensors."""
    has_safetensors = any(f.endswith(".safetensors") for f in repo_files)
    return [*SUPPORT_PATTERNS, *(SAFETENSORS_PATTERNS if has_safetensors else BIN_PATTERNS)]


def download_from_hub(
    model_id: str,
    revision: str,
    token: str | None,
    cache_dir: str | None = None,
    patterns: list[str] | None = None,
) -> Path:
    """A Hub snapshot at a pinned revision with only what serving needs (``patterns``, default: a model's); errors
    say what to do."""
    try:
        from huggingface_hub import HfApi, snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise StagingError("huggingface_hub is not installed: pip install -r requirements.txt") from None
    try:
        files = HfApi(token=token).list_repo_files(model_id, revision=revision)
        path = snapshot_download(
            model_id,
            revision=revision,
            allow_patterns=patterns or hub_allow_patterns(files),
            token=token,
            cache_dir=cache_dir,
        )
    except HFValidationError:
        raise StagingError(
            f"{model_id!r} is neither a local model folder nor a Hub model id (org/name): check the path or the id"
        ) from None
    except GatedRepoError:
        raise StagingError(
            f"{model_id} is gated: accept its license on the Hub, then pass a token with access "
            "(HF_TOKEN, or --token-secret NAME in Secrets Manager)"
        ) from None
    except RevisionNotFoundError:
        raise StagingError(
            f"revision {revision!r} of {model_id} does not exist on the Hub: check the commit or branch"
        ) from None
    except RepositoryNotFoundError:
        raise StagingError(f"{model_id} does not exist on the Hub (or is private: pass a token)") from None
    except LocalEntryNotFoundError:
        raise StagingError(
            f"cannot reach the Hugging Face Hub for {model_id}; download it elsewhere and stage the "
            "local folder with --model PATH"
        ) from None
    except OSError as error:
        if error.errno == 28:
            raise explain(error, "", "") from None
        raise StagingError(f"downloading {model_id}: {error}") from None
    return Path(path)


def token_from(environ: dict[str, str], secrets: Any, secret_name: str | None) -> str | None:
    """The Hub token: from Secrets Manager when a secret is named, else HF_TOKEN. Never printed or written."""
    if secret_name:
        try:
            value = secrets.get_secret_value(SecretId=secret_name)["SecretString"]
        except Exception as error:
            code = _client_error_code(error)
            raise StagingError(
                f"cannot read secret {secret_name!r} ({code or type(error).__name__}): check its name "
                "and that you may call secretsmanager:GetSecretValue on it"
            ) from None
        try:
            parsed = json.loads(value)
        except ValueError:
            return str(value).strip()
        if isinstance(parsed, dict):
            for key in ("token", "HF_TOKEN", "hf_token"):
                if key in parsed:
                    return str(parsed[key])
            raise StagingError(f"secret {secret_name!r} is JSON without a 'token' key")
        return str(parsed)
    return environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN") or None


# ---- .bin -> safetensors -----------------------------------------------------------------------------------------


def convert_bin_to_safetensors(folder: Path, out: Path, within: Path | None = None) -> list[str]:
    """Write ``out`` as ``folder`` with every pytorch_model*.bin shard converted to .safetensors (tensors unchanged).

    Tensors that share storage (tied weights) are cloned, as safetensors stores no aliases. Each file is written
    beside its name and renamed when complete; a write that fails (a full disk) removes its half-written file and is
    one StagingError. Returns the files of ``out`` to stage.
    """
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        raise StagingError("--convert needs torch and safetensors: pip install torch safetensors") from None
    names = select_files(folder, within)
    out.mkdir(parents=True, exist_ok=True)
    converted: dict[str, str] = {}
    for name in names:
        try:
            _convert_one(folder / name, out, name, converted, torch.load, save_file)
        except OSError as error:
            full = error.errno == errno.ENOSPC
            raise StagingError(
                f"{'disk full' if full else error.strerror} while converting {name} into {out}: "
                f"{'free space there or set TMPDIR to a larger disk' if full else 'check that folder'}, then run "
                "again (the half-written file was removed)"
            ) from None
    return select_files(out)


def _convert_one(source: Path, out: Path, name: str, converted: dict[str, str], load: Any, save_file: Any) -> None:
    """One file of the model into ``out``: a .bin shard converted (``converted`` maps old to new shard names, for
    the index after it), the .bin index rewritten for the new names, any other file copied."""
    base = name.rsplit("/", 1)[-1]
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    if fnmatch.fnmatch(base, "pytorch_model*.bin"):
        state = load(source, map_location="cpu", weights_only=True)
        tensors = {key: value.detach().clone().contiguous() for key, value in state.items()}
        target = name[: -len(".bin")].replace("pytorch_model", "model", 1) + ".safetensors"
        _write_whole(out / target, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
        converted[base] = target.rsplit("/", 1)[-1]
    elif base == "pytorch_model.bin.index.json":
        index = json.loads(source.read_text())
        index["weight_map"] = {
            k: converted.get(v, v.replace("pytorch_model", "model").replace(".bin", ".safetensors"))
            for k, v in index.get("weight_map", {}).items()
        }
        target = name.replace("pytorch_model.bin.index.json", "model.safetensors.index.json")
        _write_whole(out / target, lambda tmp: tmp.write_text(json.dumps(index, indent=2)))
    else:
        _write_whole(out / name, lambda tmp: tmp.write_bytes(source.read_bytes()))


def _write_whole(target: Path, write: Callable[[Path], object]) -> None:
    """``write`` a file beside ``target`` and rename it to ``target`` once complete; on failure remove it."""
    partial = target.with_name(target.name + ".partial")
    try:
        write(partial)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
