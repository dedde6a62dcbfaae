"""pydantic's validation errors of the config as one line per bad key: the key, the value, what is allowed."""

from __future__ import annotations

import difflib
from typing import Any

from lmi_deploy.rules import settings as setting_rules

# Keys someone might use to put a token itself into a deployment: refused with a pointer to hf_token_secret.
_TOKEN_KEYS = {"hf_token", "hugging_face_hub_token", "huggingface_token", "hub_token", "token", "hf_api_token"}


# Settings whose bad values are not repeated in messages: a mistyped secret name may be the token itself.
_NOT_ECHOED = {"hf_token_secret"}


def describe_errors(errors: list[Any], from_file: set[str], file_source: str, known: list[str]) -> str:
    """One line per bad key (a value failing every branch of a union is one problem, not one per branch);
    ``from_file``: the keys that came from the deployment file ``file_source``; ``known``: the settings' names."""
    lines: dict[str, str] = {}
    for error in errors:
        loc = error["loc"]
        key = str(loc[0]) if loc else ""
        if len(loc) > 1 and isinstance(loc[1], int):  # items of a list setting are problems of their own
            key = ".".join(map(str, loc))
        line = _describe(error, from_file, file_source, known)
        if key and key in lines and error["type"] != "extra_forbidden":
            lines[key] += " or " + str(error["msg"]).removeprefix("Value error, ").lower()
        else:
            lines[key or line] = line
    return "\n".join(lines.values())


def _describe(error: Any, from_file: set[str], file_source: str, known: list[str]) -> str:
    """One line for one pydantic error: the key, the bad value, and what is allowed."""
    key = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    where = file_source if key in from_file else ""
    if len(error["loc"]) > 1 and isinstance(error["loc"][1], int):  # an item of a list setting
        key += f"[{error['loc'][1]}]" + "".join(f".{part}" for part in error["loc"][2:])
    if error["type"] == "extra_forbidden" and key.lower().replace("-", "_") in _TOKEN_KEYS:
        return setting_rules.TOKEN_IN_CONFIG + (
            f" setting {key!r}{where} would put a Hub token in the config: store it in Secrets Manager and set "
            "hf_token_secret to the secret's name (the value is not shown here)"
        )
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known settings: {', '.join(known)}"
        return f"{setting_rules.UNKNOWN_SETTING} unknown setting {key!r}{where}{hint}"
    if not key:  # a cross-field rule: its message already names the keys and values
        return message
    if key in _NOT_ECHOED:
        return f"{setting_rules.INVALID_VALUE} invalid {key}{where} (the value is not shown here): {message}"
    return f"{setting_rules.INVALID_VALUE} invalid {key}={error['input']!r}{where}: {message}"
