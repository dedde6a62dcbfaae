"""A djl_python-compatible runtime, written from the fact sheet (§2), to run rendered handlers outside the container.

``djl_python/`` here is importable as the top-level ``djl_python`` package (see :func:`load_handler`), so a
rendered ``model.py`` runs unmodified: what runs locally is byte-for-byte what ships.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

RUNTIME_PATH = str(Path(__file__).parent)


def load_handler(model_py: str | Path) -> ModuleType:
    """Import a rendered ``model.py`` as a fresh module, with our ``djl_python`` importable beside it."""
    if RUNTIME_PATH not in sys.path:
        sys.path.insert(0, RUNTIME_PATH)
    name = f"lmi_handler_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, model_py)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import handler {model_py}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
