"""``Output`` as a handler returns it: a status, response headers (properties) and content pairs or a stream."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any


def _default_stream_output_formatter(item: Any) -> str:
    return json.dumps({"outputs": item}) + "\n"


class Output:
    def __init__(self, code: int = 200, message: str = "OK") -> None:
        self.code = code
        self.message = message
        self.properties: dict[str, str] = {}
        self.content: list[tuple[str | None, bytes]] = []
        self.stream_content: Iterable[Any] | None = None
        self.stream_formatter: Callable[[Any], Any] | None = None
        self._finalize: tuple[Callable[..., Any], tuple[Any, ...]] | None = None

    def set_code(self, code: int) -> Output:
        self.code = code
        return self

    def set_message(self, message: str) -> Output:
        self.message = message
        return self

    def error(self, error: str, code: int = 424, message: str = "invoke handler failure") -> Output:
        self.code, self.message = code, message
        self.properties["content-type"] = "application/json"
        self.content = [(None, json.dumps({"code": code, "message": message, "error": error}).encode())]
        return self

    def add_property(self, key: str, val: str) -> Output:
        self.properties[key] = val
        return self

    def get_properties(self) -> dict[str, str]:
        return self.properties

    def get_property(self, key: str) -> str | None:
        return self.properties.get(key)

    @staticmethod
    def _key(key: str | None, batch_index: int | None) -> str | None:
        return f"batch_{batch_index}.{key or 'data'}" if batch_index is not None else key

    def add(self, value: Any, key: str | None = None, batch_index: int | None = None) -> Output:
        if isinstance(value, str):
            data = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        else:
            data = json.dumps(value, indent=2).encode("utf-8")
        self.content.append((self._key(key, batch_index), data))
        return self

    def add_as_json(self, val: Any, key: str | None = None, batch_index: int | None = None) -> Output:
        self.content.append((self._key(key, batch_index), json.dumps(val, ensure_ascii=False).encode("utf-8")))
        return self

    def add_as_numpy(self, np_list: list[Any], key: str | None = None, batch_index: int | None = None) -> Output:
        return self.add_as_npz(np_list, key, batch_index)

    def add_as_npz(self, np_list: list[Any], key: str | None = None, batch_index: int | None = None) -> Output:
        import io

        import numpy as np

        buffer = io.BytesIO()
        np.savez(buffer, *np_list)
        self.content.append((self._key(key, batch_index), buffer.getvalue()))
        return self

    def finalize(self, finalize_function: Callable[..., Any], *args: Any) -> Output:
        """Run ``finalize_function(*args)`` after the response is sent."""
        self._finalize = (finalize_function, args)
        return self

    def execute_finalize(self) -> None:
        if self._finalize is not None:
            function, args = self._finalize
            function(*args)

    def add_stream_content(
        self,
        stream_content: Iterable[Any],
        output_formatter: Callable[[Any], Any] | None = _default_stream_output_formatter,
    ) -> Output:
        self.stream_content = stream_content
        self.stream_formatter = output_formatter
        return self

    def body(self) -> bytes:
        """The response body as the server sends it for a single (unbatched) request."""
        return b"".join(data for _, data in self.content)
