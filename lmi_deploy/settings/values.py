"""Checks and conversions of setting values shared by the config's fields (no pydantic model here)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import JsonValue

from lmi_deploy import identifiers


def shown(default: str) -> dict[str, JsonValue]:
    """The default as docs/settings.md shows it, where the literal default stands for a derived one."""
    return {"shown_default": default}


def one_line_text(value: Any) -> Any:
    """Refuse text with control characters or line separators (in any setting: they would end a properties line,
    a log line or an IAM resource where one value was meant)."""
    if isinstance(value, str):
        problem = identifiers.control_character_problem(value)
        if problem:
            raise ValueError(problem)
    return value


def raise_if(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


def json_if_text(value: Any) -> Any:
    """A list setting given as text (``-c key=[...]``): JSON, or for lists of names a comma-separated string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"is not valid JSON ({error.msg})") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
