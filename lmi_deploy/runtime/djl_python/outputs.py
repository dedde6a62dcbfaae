"""``Output`` as a handler returns it: a status, response headers (properties) and content pairs or a stream.

Methods that arrived in a later release live in mixins, so the runtime can hand a handler the class its release
has (``lmi_deploy.runtime.versions``); ``Output`` here is the newest release's.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from typing import Any


class _JSONEncoder(json.JSONEncoder):
    """numpy scalars and arrays, and datetimes, as the container's encoder writes them."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime.datetime):
            return str(o)
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy ships with every handler's dependencies
            return super().default(o)
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        return super().default(o)


def encode_json(value: Any) -> bytes:
    """JSON as the container writes it: indented by 2, no space after ':', non-ASCII kept, NaN refused."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=2, cls=_JSONEncoder, separators=(",", ":"))
    return text.encode("utf-8")


def encode_chunk(data: Any) -> bytes:
    """A stream item (after the formatter) as the container sends it: str as UTF-8, bytes as is, else JSON."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    return encode_json(data)


def _default_stream_output_formatter(item: Any) -> bytes:
    return (json.dumps({"outputs": item}) + "\n").encode("utf-8")


class OutputBase:
    """The methods every release has."""

    error_message = "invoke handler failure"  # Output.error()'s default message ("prediction failure" to 0.30)

    def __init__(self, code: int = 200, message: str = "OK") -> None:
        self.code = code
        self.message = message
        self.properties: dict[str, str] = {}
        self.content: list[tuple[str | None, bytes]] = []
        self.stream_content: Iterator[Any] | None = None
        self.stream_formatter: Callable[[Any], Any] | None = None
        self._finalize: tuple[Callable[..., Any], tuple[Any, ...]] | None = None

    def set_code(self, code: int) -> OutputBase:
        self.code = code
        return self

    def set_message(self, message: str) -> OutputBase:
        self.message = message
        return self

    def error(self, error: str, code: int = 424, message: str | None = None) -> OutputBase:
        self.code, self.message = code, self.error_message if message is None else message
        self.properties["content-type"] = "application/json"
        return self.add_as_json({"code": code, "message": self.message, "error": error})

    def add_property(self, key: str, val: str) -> OutputBase:
        self.properties[key] = val
        return self

    def add(self, value: Any, key: str | None = None, batch_index: int | None = None) -> OutputBase:
        if key is not None and not isinstance(key, str):
            key = str(key)
        if batch_index is not None:
            key = f"batch_{batch_index}.{key or ''}"
        if isinstance(value, str):
            data = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        else:
            data = encode_json(value)
        self.content.append((key, data))
        return self

    def add_as_json(self, val: Any, key: str | None = None, batch_index: int | None = None) -> OutputBase:
        return self.add(encode_json(val), key, batch_index)

    def add_as_numpy(self, np_list: list[Any], key: str | None = None, batch_index: int | None = None) -> OutputBase:
        return self.add_as_npz(np_list, key, batch_index)

    def add_as_npz(self, np_list: list[Any], key: str | None = None, batch_index: int | None = None) -> OutputBase:
        import io

        import numpy as np

        buffer = io.BytesIO()
        np.savez(buffer, *np_list)
        return self.add(buffer.getvalue(), key, batch_index)

    def finalize(self, finalize_function: Callable[..., Any], *args: Any) -> OutputBase:
        """Run ``finalize_function(*args)`` after the response is sent."""
        self._finalize = (finalize_function, args)
        return self

    def execute_finalize(self) -> None:
        if self._finalize is not None:
            function, args = self._finalize
            function(*args)

    def body(self) -> bytes:
        """The HTTP body the server sends for a whole reply: the ``data`` entry, else the first (DJL getData())."""
        for key, data in self.content:
            if key == "data":
                return data
        return self.content[0][1] if self.content else b""


class StreamContent:
    """``add_stream_content`` (0.22.1+)."""

    stream_content: Iterator[Any] | None
    stream_formatter: Callable[[Any], Any] | None

    def add_stream_content(
        self,
        stream_content: Iterator[Any],
        output_formatter: Callable[[Any], Any] | None = _default_stream_output_formatter,
    ) -> Any:
        self.stream_content = stream_content
        self.stream_formatter = output_formatter
        return self


class PropertyGetters:
    """``get_properties`` / ``get_property`` (0.33+)."""

    properties: dict[str, str]

    def get_properties(self) -> dict[str, str]:
        return self.properties

    def get_property(self, key: str) -> str | None:
        return self.properties.get(key)


class Output(PropertyGetters, StreamContent, OutputBase):
    """The newest release's ``Output``."""
