"""Input files read with bounds: regular files under a size limit, UTF-8 text, YAML without aliases, duplicate keys or
deep nesting, JSON without deep nesting.

A deployment file or a model's config.json is written by hand or downloaded; either way it must not be able to make
validate, render or synth read forever (``/dev/zero``), expand without bound (a YAML alias bomb) or recurse until
Python gives up (thousands of nested brackets). Every refusal is a :class:`ConfigError` of one line naming the file.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import yaml

from lmi_deploy.errors import UNREADABLE_INPUT, ConfigError

MAX_DEPLOYMENT_FILE_BYTES = 1024 * 1024  # the largest example is ~3 kB
MAX_JSON_FILE_BYTES = 64 * 1024 * 1024  # a config.json is kB; a safetensors index of a 400B-parameter model ~200 kB
MAX_NESTING = 32  # deployment files nest 3 deep (models: [ {settings} ]), config.json files ~4


def _refused(what: str, path: Path, problem: str) -> ConfigError:
    return ConfigError(f"{UNREADABLE_INPUT} {what} {path} {problem}")


def read_text(path: Path, what: str, limit: int) -> str:
    """A regular file's UTF-8 text, or a ConfigError naming ``what`` and ``path``: missing, a directory, a device
    or pipe (which could be read forever), larger than ``limit`` bytes, or not UTF-8."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise _refused(what, path, "does not exist") from None
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"{UNREADABLE_INPUT} {what} {path} cannot be read: {getattr(error, 'strerror', None) or error}"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise _refused(what, path, "is a directory; give the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"{UNREADABLE_INPUT} {what} {path} is not a regular file (a device, pipe or socket); give a file"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)  # the file may have grown since stat
    except OSError as error:
        raise _refused(what, path, f"cannot be read: {error.strerror}") from None
    if len(data) > limit:
        raise _refused(what, path, f"is larger than {limit // 1024} KiB; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{UNREADABLE_INPUT} {what} {path} is not UTF-8 text (undecodable byte at offset {error.start})"
        ) from None


class RefusedYAML(yaml.MarkedYAMLError):
    """Valid YAML that a deployment file may not use (aliases, duplicate keys, deep nesting)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (an alias bomb expands 576 bytes into gigabytes), duplicate keys (YAML
    forbids them; PyYAML silently keeps the last) and nesting deeper than :data:`MAX_NESTING`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise RefusedYAML(
                problem=f"alias *{event.anchor} is not allowed in a deployment file: write the value out",
                problem_mark=event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise RefusedYAML(problem=f"nested deeper than {MAX_NESTING} levels", problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise RefusedYAML(
                    problem=f"duplicate key {key!r} (first at line {seen[key]}); keep one",
                    problem_mark=key_node.start_mark,
                )
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path, what: str = "deployment file") -> Any:
    """A YAML file's content, bounded (see :class:`_BoundedLoader`); a ConfigError of one line otherwise."""
    text = read_text(path, what, MAX_DEPLOYMENT_FILE_BYTES)
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        kind = "refused" if isinstance(error, RefusedYAML) else "is not valid YAML"
        raise _refused(what, path, f"{kind}{where}: {problem}") from None
    except RecursionError:
        raise _refused(what, path, "is nested too deeply") from None
    finally:
        loader.dispose()


def load_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding an object, bounded in size and nesting; a ConfigError of one line otherwise."""
    text = read_text(path, what, MAX_JSON_FILE_BYTES)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{UNREADABLE_INPUT} {what} {path} is not valid JSON: {error.msg} at line {error.lineno}"
        ) from None
    except RecursionError:
        raise _refused(what, path, f"is nested too deeply to be a {what}") from None
    if not isinstance(data, dict):
        raise _refused(what, path, f"must hold a JSON object, not a {type(data).__name__}")
    return data
