"""Stage LoRA adapters as the weights are staged (verified, resumable, with a manifest: ``lmi_deploy.staging``).

A single-model endpoint: each adapter's files under the weights prefix's ``adapters/<name>/`` (each its own staging,
so the weights' staging leaves it alone), where the LMI server registers it at start; folders of adapters the
deployment no longer names are removed. Inference components: each adapter as one deterministic ``adapter.tar.gz``
at :func:`lmi_deploy.adapters.archive_key`, the ArtifactUrl of its adapter inference component.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmi_deploy import adapters, model_folder, s3_prefix, staging
from lmi_deploy.adapters import Adapter

# What an adapter folder holds that serving needs: its config, its weights, and a tokenizer when it brings one.
ADAPTER_PATTERNS = (
    adapters.ADAPTER_CONFIG,
    "adapter_model*.safetensors",
    "adapter_model*.bin",
    *staging.SUPPORT_PATTERNS,
)


@dataclass(frozen=True)
class StagedAdapter:
    name: str
    location: str  # s3:// of its folder or archive
    result: staging.StageResult


def adapter_files(folder: Path, within: Path | None = None) -> list[str]:
    """The files of an adapter folder to stage; an error naming the folder when it is no LoRA adapter."""
    names = [n for n in model_folder.list_files(folder, within) if any(fnmatch.fnmatch(n, p) for p in ADAPTER_PATTERNS)]
    if adapters.ADAPTER_CONFIG not in names or not any(n.startswith("adapter_model") for n in names):
        raise staging.StagingError(
            f"{folder} is no PEFT LoRA adapter folder (adapter_config.json and adapter_model.safetensors at its top)"
        )
    model_folder.check_files(folder, names, within)
    return sorted(names)


@contextmanager
def local_folder(adapter: Adapter, s3: Any, token: str | None) -> Iterator[Path]:
    """The adapter's folder on this machine: as given, downloaded from the Hub at its revision, or from S3."""
    if adapter.kind == "local":
        yield Path(adapter.source).expanduser()
    elif adapter.kind == "hub":
        patterns = list(ADAPTER_PATTERNS)
        yield staging.download_from_hub(adapter.source, adapter.revision or "main", token, patterns=patterns)
    else:
        with tempfile.TemporaryDirectory(prefix="lmi-adapter-") as scratch:
            yield _download_prefix(s3, adapter.source, Path(scratch))


def _download_prefix(s3: Any, uri: str, into: Path) -> Path:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/"
    try:
        names = s3_prefix.list_names(s3, bucket, prefix)
        for name in names:
            if name.endswith("/") or name == s3_prefix.MANIFEST:
                continue
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, prefix + name, str(into / name))
    except Exception as error:
        raise staging.explain(error, bucket, prefix) from None
    return into


def archive(folder: Path, names: list[str], out: Path) -> Path:
    """A gzipped tar of ``names`` at its top, the same bytes for the same files (no times, owners or modes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            data = (folder / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed:
        compressed.write(buffer.getvalue())
    return out


Stage = Callable[..., staging.StageResult]


def stage_folder(
    s3: Any,
    adapter: Adapter,
    folder: Path,
    bucket: str,
    weights_prefix: str,
    stage: Stage = staging.stage,
    **options: Any,
) -> StagedAdapter:
    """A single-model endpoint's adapter: its files under ``<weights>adapters/<name>/``."""
    prefix = adapters.folder_prefix(weights_prefix, adapter)
    names = adapter_files(folder, model_folder.hub_cache_root(folder))
    result = stage(s3, folder, bucket, prefix, files=names, description=_description(adapter), **options)
    return StagedAdapter(adapter.name, f"s3://{bucket}/{prefix}", result)


def stage_archive(
    s3: Any, adapter: Adapter, folder: Path, bucket: str, stage: Stage = staging.stage, **options: Any
) -> StagedAdapter:
    """An adapter inference component's artifact: the folder as one archive at :func:`adapters.archive_key`."""
    key = adapters.archive_key(adapter)
    prefix = key.removesuffix(adapters.ADAPTER_ARCHIVE)
    names = adapter_files(folder, model_folder.hub_cache_root(folder))
    with tempfile.TemporaryDirectory(prefix="lmi-adapter-archive-") as scratch:
        archive(folder, names, Path(scratch) / adapters.ADAPTER_ARCHIVE)
        files = [adapters.ADAPTER_ARCHIVE]
        result = stage(s3, Path(scratch), bucket, prefix, files=files, description=_description(adapter), **options)
    return StagedAdapter(adapter.name, f"s3://{bucket}/{key}", result)


def remove_unnamed(s3: Any, bucket: str, weights_prefix: str, keep: list[Adapter]) -> list[str]:
    """Remove the ``adapters/<name>/`` folders of adapters the deployment no longer names (the server would still
    register them at start); returns the removed folders."""
    root = f"{weights_prefix}{adapters.ADAPTERS_FOLDER}/"
    names = s3_prefix.list_names(s3, bucket, root)
    wanted = {f"{a.name}/" for a in keep}
    gone = sorted(n for n in names if n.split("/", 1)[0] + "/" not in wanted)
    if gone:
        s3_prefix.remove(s3, bucket, root, gone)
    return sorted({n.split("/", 1)[0] for n in gone})


def _description(adapter: Adapter) -> dict[str, Any]:
    return {
        "adapter": adapter.name,
        "source": adapter.source,
        "revision": adapter.revision,
        "created_by": "lmi-deploy",
    }


def place_locally(adapter_list: list[Adapter], code_folder: Path, token: str | None = None) -> list[Path]:
    """Copy each adapter's files into ``<code_folder>/adapters/<name>/``, where the server (and serve_local's
    stand-in) registers adapters at start; Hub adapters are downloaded at their revision first."""
    placed = []
    for adapter in adapter_list:
        if adapter.kind == "s3":
            raise staging.StagingError(
                f"adapter {adapter.name}: {adapter.source} is in S3; to serve it locally download it and set its "
                "source to the folder"
            )
        with local_folder(adapter, None, token) as folder:
            target = code_folder / adapters.ADAPTERS_FOLDER / adapter.name
            for name in adapter_files(folder, model_folder.hub_cache_root(folder)):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                (target / name).write_bytes((folder / name).read_bytes())
        placed.append(target)
    return placed
