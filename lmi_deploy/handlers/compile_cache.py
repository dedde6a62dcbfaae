"""option.compile's persistent cache: PyTorch's cache artifacts, made ahead of time and staged beside the weights.

``scripts/partition_model.py`` runs the deployment's own handler once on its instance type (same GPU, same container,
same torch) and saves what the compiler produced (``torch.compiler.save_cache_artifacts``: the FX-graph, AOT and
autotuning caches and their Triton kernels) as ``partitioned/compile-cache/<name>.bin`` under the weights prefix (kept
while the weights stay the same, like a partitioned checkpoint); the server downloads it with the weights, and the
handler loads it before its warm-up, so the buckets compile from cache hits.
The name holds the torch version and the GPU: a cache made elsewhere is never loaded (it would not hit).
"""

from __future__ import annotations

import logging
import os
import re

import torch

FOLDER = "partitioned/compile-cache"  # under the weights


def cache_name() -> str:
    """``torch-<version>-<gpu>.bin`` for this process's torch and first GPU (``cpu`` without one)."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    slug = re.sub(r"[^a-z0-9.]+", "-", f"torch-{torch.__version__}-{device}".lower()).strip("-")
    return f"{slug}.bin"


def load(location: str) -> bool:
    """Load the cache staged under ``location`` for this torch and GPU, if there is one; whether it was loaded."""
    path = os.path.join(location, FOLDER, cache_name())
    if not os.path.isfile(path):
        present = (
            sorted(os.listdir(os.path.join(location, FOLDER))) if os.path.isdir(os.path.join(location, FOLDER)) else []
        )
        logging.info(
            "compile cache: no %s under %s (%s); compiling from scratch",
            cache_name(),
            location,
            present or "none staged",
        )
        return False
    loader = getattr(torch.compiler, "load_cache_artifacts", None)
    if loader is None:
        logging.warning(
            "compile cache: torch %s cannot load cache artifacts; compiling from scratch", torch.__version__
        )
        return False
    try:
        with open(path, "rb") as handle:
            loader(handle.read())
    except Exception as error:  # a damaged or foreign file: compiling from scratch is slower, never wrong
        logging.warning("compile cache: %s could not be loaded (%s); compiling from scratch", path, error)
        return False
    logging.info("compile cache: loaded %s (%.1f MB)", path, os.path.getsize(path) / 1e6)
    return True


def save(folder: str) -> str | None:
    """Write what this process compiled to ``folder/<name>.bin`` (the job uploads ``folder`` to ``FOLDER``); the
    path, or None with nothing to save (nothing compiled, or a torch without cache artifacts)."""
    saver = getattr(torch.compiler, "save_cache_artifacts", None)
    artifacts = saver() if saver is not None else None
    if artifacts is None:
        logging.warning("compile cache: torch %s produced no cache artifacts; nothing saved", torch.__version__)
        return None
    data = artifacts[0]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, cache_name())
    with open(path + ".partial", "wb") as handle:
        handle.write(data)
    os.replace(path + ".partial", path)  # never a half-written cache under the name the handler loads
    logging.info("compile cache: saved %s (%.1f MB)", path, len(data) / 1e6)
    return path
