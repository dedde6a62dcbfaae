"""One module per LMI engine; this registry collects them.

Each module of this package declares its engine's :class:`~lmi_deploy.engines.base.EngineSpec` (images and
versions, server engine, entry point, template, dtypes, model types, hardware; whether it can be partitioned or
served multi-model; the serving.properties keys it renders; how an existing file is recognised as it) and its
engine-specific rules (registered in :mod:`lmi_deploy.rules.registry`). Every module here is imported, so adding an
engine is one new module (plus its :class:`Engine` name in ``base``); ``tests/test_engines.py`` checks it is covered
everywhere it must be.
"""

from __future__ import annotations

import importlib
import pkgutil

from lmi_deploy.engines.base import ENGINES, Engine, EngineSpec, ImageLine, version_key

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

ENGINE_ALIASES: dict[str, Engine] = {
    **{e.value.lower(): e for e in Engine},
    **{alias: spec.engine for spec in ENGINES.values() for alias in spec.aliases},
}

__all__ = ["ENGINES", "ENGINE_ALIASES", "Engine", "EngineSpec", "ImageLine", "version_key"]
