"""Which serving.properties keys an LMI release reads: djl-serving's own (``key_catalog``, generated from its
source) and, marked ``lmi-deploy handler``, the options lmi-deploy's own handlers read, because DJL hands every
``option.*`` key to the handler: ``containers.HANDLER_OPTIONS`` (the Accelerate fast path) and the keys each engine's
custom handler template reads, at the versions that ship the engine (``handler_keys``).
"""

from __future__ import annotations

import difflib
import re
from functools import cache
from pathlib import Path

from lmi_deploy import containers, key_catalog

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
LMI_DEPLOY_HANDLER = "lmi-deploy handler"
_HANDLER_READ = re.compile(r'properties(?:\.get\(|\[)\s*"(\w+)"')
_INCLUDE = re.compile(r'\{%\s*include\s+"([\w.]+)"')
HANDLERS_DIR = Path(__file__).resolve().parent / "handlers"
# a handler module a template (``from lmi_handlers.x import``) or a handler module (``from .x import``) imports
_HANDLER_IMPORT = re.compile(r"^from (?:lmi_handlers\.|\.|lmi_handlers import )(\w+)", re.MULTILINE)


def _template_reads(name: str) -> set[str]:
    """``option.*`` keys a handler template (with the templates and handler modules it uses) reads."""
    text = (TEMPLATES_DIR / name).read_text()
    keys = _reads(text)
    for included in _INCLUDE.findall(text):
        keys |= _template_reads(included)
    return keys


def _reads(text: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """``option.*`` keys this code reads from its properties, with those of the handler modules it imports."""
    keys = {f"option.{key}" for key in _HANDLER_READ.findall(text)}
    for module in set(_HANDLER_IMPORT.findall(text)) - seen:
        keys |= _reads((HANDLERS_DIR / f"{module}.py").read_text(), seen | {module})
    return keys


@cache
def handler_keys(version: str) -> frozenset[str]:
    """``option.*`` keys lmi-deploy's own handlers read at this version (DJL hands every option to the handler):
    those of each engine's custom template, where the engine ships at this version."""
    return frozenset(
        key
        for engine, spec in containers.ENGINES.items()
        if spec.custom_template and version in containers.versions(engine)
        for key in _template_reads(spec.custom_template)
    )


@cache
def _ours(version: str) -> frozenset[str]:
    return frozenset(f"option.{name}" for name in containers.HANDLER_OPTIONS) | handler_keys(version)


def where_read(key: str, version: str) -> list[str]:
    """Where this version reads the key (``server``, ``properties``, ``handler``, ``docs``, ``passthrough``,
    ``lmi-deploy handler``)."""
    places = key_catalog.upstream_where_read(key, version)
    return [*places, LMI_DEPLOY_HANDLER] if key in _ours(version) else places


def reads(key: str, version: str) -> bool:
    """Whether LMI ``version`` (or lmi-deploy's handler on it) reads the serving.properties key."""
    return bool(where_read(key, version))


@cache
def keys_read(version: str) -> frozenset[str]:
    return key_catalog.upstream_keys(version) | _ours(version)


def versions_reading(key: str) -> list[str]:
    """The versions that read the key, oldest first."""
    return [version for version in key_catalog.versions() if reads(key, version)]


def near_miss(key: str, version: str) -> str | None:
    """The key this version reads that ``key`` is a likely misspelling of, for a key no release reads; else None.

    A key some release reads is never a typo (it is a key of another release), and one no release reads is a typo
    only when it is close to a key this version reads.
    """
    if versions_reading(key):
        return None
    close = difflib.get_close_matches(key, sorted(keys_read(version)), n=1, cutoff=0.75)
    return close[0] if close else None


def unread_note(key: str, version: str) -> str:
    """Why a key this version does not read has no effect, naming the versions that do read it, or else where an
    unknown key may still go (the engine arguments of a class that passes unknown keys on)."""
    if reading := versions_reading(key):
        return f"{key} is not read by LMI {version} (read in {key_catalog.spans(reading)}): it has no effect"
    if key.startswith("option.") and (classes := key_catalog.accepts_extra_keys(version)):
        return (
            f"{key} is read by no LMI release; LMI {version} passes unknown options on to the engine "
            f"({', '.join(classes)}), which may refuse it at startup"
        )
    return f"{key} is read by no LMI release nor lmi-deploy's handler: unless your model.py reads it, it has no effect"
