"""A djl_python-compatible runtime, written from the fact sheet (§2), to run rendered handlers outside the container.

``djl_python/`` here is importable as the top-level ``djl_python`` package (see :func:`load_handler`), so a
rendered ``model.py`` runs unmodified: what runs locally is byte-for-byte what ships. A handler is given the
``Input``/``Output`` of its container's release (:mod:`lmi_deploy.runtime.versions`): a method that release lacks
is missing here too.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import uuid
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from lmi_deploy.runtime import versions

RUNTIME_PATH = str(Path(__file__).parent)
# The handler the parity checks run (copied as model.py; it imports djl_python, so it is not imported here).
PARITY_PROBE = Path(__file__).parent / "parity_probe.py"
_IMPORTING = threading.Lock()


def djl_python_package() -> ModuleType:
    """The ``djl_python`` package handlers import (ours, importable by that name)."""
    if RUNTIME_PATH not in sys.path:
        sys.path.insert(0, RUNTIME_PATH)
    return importlib.import_module("djl_python")


@cache
def api_for(release: versions.Release) -> tuple[Any, Any]:
    """``(Input, Output)`` as ``release``'s djl_python has them."""
    package = djl_python_package()
    inputs, outputs = package.inputs, package.outputs
    input_class = type(
        "Input",
        (inputs.Input,),
        {
            "__module__": "djl_python.inputs",
            "batch_by_key": release.has(versions.IS_BATCH_BY_KEY),
            "batch_request_properties": release.has(versions.BATCH_REQUEST_PROPERTIES),
            "sliced_batch_keys": release.has(versions.ZERO_PADDED_BATCH_KEYS),
            "json_by_prefix": release.has(versions.JSON_CONTENT_TYPE_PREFIX),
        },
    )
    mixins = [
        mixin
        for mixin, change in (
            (outputs.PropertyGetters, versions.OUTPUT_PROPERTY_GETTERS),
            (outputs.StreamContent, versions.STREAM_CONTENT),
        )
        if release.has(change)
    ]
    output_class = type(
        "Output",
        (*mixins, outputs.OutputBase),
        {"__module__": "djl_python.outputs", "error_message": release.error_message},
    )
    return input_class, output_class


def load_handler(model_py: str | Path, release: versions.Release | None = None) -> ModuleType:
    """Import a rendered ``model.py`` as a fresh module, with our ``djl_python`` importable beside it.

    While it is imported, ``djl_python.Input``/``Output`` (and ``djl_python.inputs.Input``, ``outputs.Output``)
    are ``release``'s classes, so the names the handler imports are that release's.
    """
    package = djl_python_package()
    # as the container's service loader does: the model's folder is importable (its lmi_handlers/ package)
    folder = str(Path(model_py).resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    input_class, output_class = api_for(release or versions.Release())
    name = f"lmi_handler_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, model_py)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import handler {model_py}")
    module = importlib.util.module_from_spec(spec)
    # registered, as the server's import registers it: torch.compile looks the handler's globals up by module name
    sys.modules[name] = module
    slots = [(package, "Input"), (package, "Output"), (package.inputs, "Input"), (package.outputs, "Output")]
    with _IMPORTING:
        saved = [getattr(owner, attribute) for owner, attribute in slots]
        for (owner, attribute), value in zip(slots, [input_class, output_class] * 2, strict=True):
            setattr(owner, attribute, value)
        try:
            spec.loader.exec_module(module)
        finally:
            for (owner, attribute), value in zip(slots, saved, strict=True):
                setattr(owner, attribute, value)
    return module
