"""``Input`` as the DJL Python engine hands it to ``handle(inputs)``: properties plus a list of content pairs."""

from __future__ import annotations

import json
import re
from typing import Any

_BATCH_KEY = re.compile(r"batch_(\d+)\.(.*)")


class Input:
    def __init__(self) -> None:
        self.properties: dict[str, str] = {}
        self.content: list[tuple[str, bytes]] = []
        self.function_name = "handle"

    # --- building (what the server side does) ---
    @classmethod
    def of(cls, properties: dict[str, str], body: bytes | None = None, key: str = "data") -> Input:
        item = cls()
        item.properties = dict(properties)
        if body is not None:
            item.content.append((key, body))
        return item

    # --- the djl_python API ---
    def is_batch(self) -> bool:
        return self.get_batch_size() > 1

    def get_batch_size(self) -> int:
        return int(self.properties.get("batch_size", "1"))

    def get_batches(self) -> list[Input]:
        batches: dict[int, Input] = {}
        for key, value in self.content:
            match = _BATCH_KEY.fullmatch(key)
            index, name = (int(match.group(1)), match.group(2)) if match else (0, key)
            item = batches.setdefault(index, Input())
            item.properties = dict(self.properties)
            item.content.append((name, value))
        return [batches[i] for i in sorted(batches)]

    def get_function_name(self) -> str:
        return self.function_name

    def get_properties(self) -> dict[str, str]:
        return self.properties

    def get_content(self) -> list[tuple[str, bytes]]:
        return self.content

    def get_property(self, key: str) -> str | None:
        lowered = key.lower()
        for name, value in self.properties.items():
            if name.lower() == lowered:
                return value
        return None

    def contains_key(self, key: str) -> bool:
        return any(name == key for name, _ in self.content)

    def get_as_bytes(self, key: str | None = None) -> bytes | None:
        if not self.content:
            return None
        if key is None:
            for name, value in self.content:
                if name == "data":
                    return value
            return self.content[0][1]
        for name, value in self.content:
            if name == key:
                return value
        raise KeyError(f"{key} not found in Input")

    def get_as_string(self, key: str | None = None) -> str:
        return (self.get_as_bytes(key) or b"").decode("utf-8")

    def get_as_json(self, key: str | None = None) -> Any:
        return json.loads(self.get_as_string(key))

    def get_as_csv(self, key: str | None = None) -> list[dict[str, str]]:
        import csv
        import io

        return list(csv.DictReader(io.StringIO(self.get_as_string(key))))

    def get_as_numpy(self, key: str | None = None) -> list[Any]:
        """An ``.npz`` payload (DJL's NDList encoding is npz too) as a list of arrays."""
        return self.get_as_npz(key)

    def get_as_npz(self, key: str | None = None) -> list[Any]:
        import io

        import numpy as np

        with np.load(io.BytesIO(self.get_as_bytes(key) or b"")) as archive:
            return [archive[name] for name in archive.files]

    def get_as_image(self, key: str | None = None) -> Any:
        import io

        from PIL import Image  # only handlers that take images need Pillow

        return Image.open(io.BytesIO(self.get_as_bytes(key) or b""))

    def get_data(self, key: str | None = None) -> Any:
        content_type = (self.get_property("content-type") or "").lower()
        if content_type.startswith("application/json"):
            return self.get_as_json(key)
        if content_type.startswith("text/csv"):
            return self.get_as_csv(key)
        if content_type.startswith("text/"):
            return self.get_as_string(key)
        if content_type in ("tensor/npz", "tensor/ndlist"):
            return self.get_as_npz(key)
        if content_type.startswith("image/"):
            return self.get_as_image(key)
        return self.get_as_bytes(key)

    def is_empty(self) -> bool:
        return not self.content
