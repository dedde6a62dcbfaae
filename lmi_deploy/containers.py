"""Catalog of LMI containers: which engine ships in which image, for which versions and regions.

Versions, tags and registries come from sagemaker-core's bundled ``image_uri_config`` (not a hand-kept list);
image URIs are resolved with ``sagemaker.core.image_uris``. The engines themselves (which image lines ship each one,
what it renders) are declared one module each in :mod:`lmi_deploy.engines`; their names stay importable from here.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import metadata
from typing import Any

from lmi_deploy import key_catalog
from lmi_deploy.engines import ENGINE_ALIASES, ENGINES, Engine, EngineSpec, ImageLine, version_key
from lmi_deploy.engines.accelerate import HANDLER_OPTIONS

PARTITIONABLE = tuple(engine for engine, spec in ENGINES.items() if spec.partitionable)


@cache
def _image_config(framework: str) -> dict[str, Any]:
    """sagemaker-core's bundled image config for one framework, read as data (importing the SDK takes seconds)."""
    path = metadata.distribution("sagemaker-core").locate_file(f"sagemaker/core/image_uri_config/{framework}.json")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def _image_line(engine: Engine, version: str) -> ImageLine | None:
    for line in ENGINES[engine].images:
        known = _image_config(line.framework)["versions"]
        in_range = version_key(line.first) <= version_key(version) and (
            line.last is None or version_key(version) <= version_key(line.last)
        )
        if version in known and in_range:
            return line
    return None


def versions(engine: Engine) -> list[str]:
    """Container (DJL) versions that ship this engine, oldest first (from sagemaker-core's image config)."""
    found = {
        version
        for line in ENGINES[engine].images
        for version in _image_config(line.framework)["versions"]
        if _image_line(engine, version) is line
    }
    return sorted(found, key=version_key)


def framework(engine: Engine, version: str) -> str:
    """The sagemaker-core image framework (``djl-lmi``, ``djl-deepspeed``, ...) that ships engine at version."""
    line = _image_line(engine, version)
    if line is None:
        raise KeyError(f"{engine.value} does not ship in {version}")
    return line.framework


def engines_in(version: str) -> list[Engine]:
    """Engines that ship in some container at this version."""
    return [engine for engine in Engine if _image_line(engine, version) is not None]


def regions(engine: Engine, version: str) -> list[str]:
    """Regions that host the engine's image at this version."""
    return sorted(_image_config(framework(engine, version))["versions"][version]["registries"])


def image_tag(engine: Engine, version: str) -> str:
    tag: str = _image_config(framework(engine, version))["versions"][version]["tag_prefix"]
    return tag


# ECR domains of the regions outside amazonaws.com, as sagemaker-core's ``common_utils.ALTERNATE_DOMAINS``.
_ALTERNATE_DOMAINS = {
    "cn-north-1": "amazonaws.com.cn",
    "cn-northwest-1": "amazonaws.com.cn",
    "us-iso-east-1": "c2s.ic.gov",
    "us-iso-west-1": "c2s.ic.gov",
    "us-isob-east-1": "sc2s.sgov.gov",
    "us-isob-west-1": "sc2s.sgov.gov",
    "us-isof-south-1": "csp.hci.ic.gov",
    "us-isof-east-1": "csp.hci.ic.gov",
    "eu-isoe-west-1": "cloud.adc-e.uk",
    "eusc-de-east-1": "amazonaws.eu",
}


def image_uri(engine: Engine, version: str, region: str) -> str:
    """The LMI image URI for a region: ``{account}.dkr.ecr.{region}.{domain}/{repository}:{tag}``.

    Built from sagemaker-core's bundled image config exactly as ``sagemaker.core.image_uris.retrieve`` builds it
    (a test checks every engine x version x region against ``retrieve``); importing the SDK itself costs ~3 s of
    every synth.
    """
    entry = _image_config(framework(engine, version))["versions"][version]
    domain = _ALTERNATE_DOMAINS.get(region, "amazonaws.com")
    return f"{entry['registries'][region]}.dkr.ecr.{region}.{domain}/{entry['repository']}:{entry['tag_prefix']}"


def generation_parameters(engine: Engine, model_type: str) -> dict[str, tuple[str, str]]:
    """The request parameters a custom handler for this engine and model family accepts, and what they map to."""
    return ENGINES[engine].generation_parameters(model_type)


# ---- version-specific serving.properties facts (fact sheet §0, §1, §8) ----


def entry_point(engine: Engine, version: str) -> str | None:
    """The no-code handler module for this engine at this version (None: the server chooses)."""
    return ENGINES[engine].entry_point(version)


def server_engine(engine: Engine, version: str) -> str:
    """serving.properties ``engine=``: the engine's DJL name, where this version's server knows it."""
    name = ENGINES[engine].server_engine
    return name if name in server_engines(version) else "Python"


def weights_key(version: str) -> str:
    """``option.s3url`` where the server downloads S3 weights named by it (0.20-0.26, as the seed writes before
    0.23); ``option.model_id`` otherwise (0.19.0 reads no s3url at all)."""
    old_key = version_key(version) < (0, 23, 0) and key_catalog.upstream_reads("option.s3url", version)
    return "option.s3url" if old_key else "option.model_id"


def dtype_key(version: str) -> str | None:
    """The key a built-in handler of this version reads the dtype from (``data_type`` on 0.19.0), if any."""
    return next((key for key in ("option.dtype", "option.data_type") if key_catalog.upstream_reads(key, version)), None)


def rolling_batch_values(version: str) -> tuple[str, ...]:
    """``option.rolling_batch`` values this version accepts (its RollingBatchEnum; empty before 0.23)."""
    return key_catalog.allowed_values("option.rolling_batch", version) or ()


def rolling_batch_present_means_on(version: str) -> bool:
    """0.23-0.26 turn rolling batch on whenever the key is present, even as ``disable``: omit it there."""
    return (0, 23, 0) <= version_key(version) < (0, 27, 0)


def accepts_tp_max(version: str) -> bool:
    """``option.tensor_parallel_degree=max`` parses from 0.24.0 (earlier: Integer.parseInt fails)."""
    return version_key(version) >= (0, 24, 0)


def server_engines(version: str) -> tuple[str, ...]:
    """Values of ``engine=`` this version's server knows (the engine names djl-serving's providers register)."""
    return key_catalog.allowed_values("engine", version) or ("Python",)


def all_versions() -> list[str]:
    """Every LMI/DJL version that has some container."""
    return sorted({v for e in Engine for v in versions(e)}, key=version_key)


__all__ = [
    "ENGINES",
    "ENGINE_ALIASES",
    "HANDLER_OPTIONS",
    "PARTITIONABLE",
    "Engine",
    "EngineSpec",
    "ImageLine",
    "version_key",
]
