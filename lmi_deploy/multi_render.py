"""Model code of a multi-model deployment: one rendered folder and one archive per model, and the MME staging.

``model_code/<deployment>/<model>/`` holds each model's ``serving.properties`` (and ``model.py``), rendered by
:mod:`lmi_deploy.render` from the model's own config; ``model_code/<deployment>/<model>.tar.gz`` packs it
byte-for-byte identically for identical inputs.

- Inference components: each archive is its model's code artifact (a CDK file asset), laid out as a single
  deployment's (files under ``<model>/``).
- Multi-model endpoint: SageMaker extracts each archive into a model directory of its own, so the files sit at the
  archive's root. The archive is staged as ``s3://<bucket>/mme/<deployment>/<model>-<sha256[:12]>.tar.gz`` (the
  ``TargetModel`` of requests): changed code gets a new name, so an instance never answers from a stale copy it
  loaded before (SageMaker caches loaded models by name).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmi_deploy.multi_model import ModelSpec, MultiModelDeployment
from lmi_deploy.render import pack, render_files, replace_folder, write_files
from lmi_deploy.staging import explain

MME_ROOT = "."  # archive members "./serving.properties": extracted straight into the model directory


@dataclass(frozen=True)
class RenderedModel:
    """One model's rendered folder and its archive."""

    name: str
    directory: Path
    files: tuple[str, ...]
    tarball: Path
    sha256: str

    @property
    def target_model(self) -> str:
        """The archive's name under the MME prefix, which is what ``TargetModel`` names."""
        return archive_name(self.name, self.sha256)


@dataclass(frozen=True)
class RenderedMultiModel:
    directory: Path
    models: tuple[RenderedModel, ...]

    def model(self, name: str) -> RenderedModel:
        return next(m for m in self.models if m.name == name)


def archive_name(name: str, sha256: str) -> str:
    return f"{name}-{sha256[:12]}.tar.gz"


def model_archive(multi: MultiModelDeployment, model: ModelSpec) -> tuple[dict[str, str], bytes]:
    """A model's files and their deterministic archive (for its mode's layout)."""
    files = render_files(model.config)
    return files, pack(files, MME_ROOT if multi.mode == "mme" else model.name)


def target_model(multi: MultiModelDeployment, name: str) -> str:
    """The ``TargetModel`` of a model of a multi-model endpoint, computed without writing anything."""
    model = multi.model(name)
    _, archive = model_archive(multi, model)
    return archive_name(model.name, hashlib.sha256(archive).hexdigest())


def render_multi(multi: MultiModelDeployment, out_root: Path | str = "model_code") -> RenderedMultiModel:
    """Write ``<out_root>/<deployment>/<model>/`` and ``<model>.tar.gz`` for every model, replacing the folder whole."""
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / multi.deployment
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{multi.deployment}."))
    rendered = []
    try:
        for model in multi.models:
            files, archive = model_archive(multi, model)
            folder = staging / model.name
            folder.mkdir()
            write_files(folder, files)
            (staging / f"{model.name}.tar.gz").write_bytes(archive)
            rendered.append(
                RenderedModel(
                    model.name,
                    target / model.name,
                    tuple(sorted(files)),
                    target / f"{model.name}.tar.gz",
                    hashlib.sha256(archive).hexdigest(),
                )
            )
        for path in staging.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        staging.chmod(0o755)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RenderedMultiModel(target, tuple(rendered))


@dataclass(frozen=True)
class StagedArchive:
    name: str
    key: str
    uploaded: bool  # False: the same archive was already there


def stage_mme_archives(
    s3: Any, multi: MultiModelDeployment, rendered: RenderedMultiModel, bucket: str | None = None
) -> list[StagedArchive]:
    """Upload every model's archive under the MME prefix unless an identical one is there (same name, same size).

    The name carries the archive's sha256, so an object of that name and size is that archive. Old archives are
    left in place: requests in flight may still name them.
    """
    bucket = bucket or multi.bucket_name
    staged = []
    for model in rendered.models:
        key = multi.mme_prefix + model.target_model
        data = model.tarball.read_bytes()
        try:
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
                present = int(head.get("ContentLength", -1)) == len(data)
            except Exception as error:  # a 404 is the usual answer: not staged yet
                if _error_code(error) not in ("404", "NoSuchKey", "NotFound"):
                    raise
                present = False
            if not present:
                s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=data,
                    ContentType="application/gzip",
                    ChecksumAlgorithm="SHA256",
                    Metadata={"sha256": model.sha256, "created-by": "lmi-deploy"},
                )
        except Exception as error:
            raise explain(error, bucket, multi.mme_prefix) from None
        staged.append(StagedArchive(model.name, key, not present))
    return staged


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
