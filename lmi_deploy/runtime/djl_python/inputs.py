"""``Input`` as the DJL Python engine hands it to ``handle(inputs)``: properties plus a list of content pairs."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

_BATCH_KEY = re.compile(r"batch_(\d+)\.(.*)")


class Input:
    """The request (or the warm-up call) as the handler sees it.

    The class attributes are the release's behaviour (``lmi_deploy.runtime.versions``); the runtime makes a subclass
    per release. As shipped here they are the newest release's.
    """

    batch_by_key = True  # is_batch(): "batch_size" in properties (0.23+); else batch_size > 1
    batch_request_properties = True  # each batch item gets its own batch_<i>.<header> properties (0.23+)
    sliced_batch_keys = True  # get_batches() reads the index from key[6:9] (0.25+); else the regex
    json_by_prefix = True  # get_data(): application/json by prefix (0.22.1+); else only the exact type

    def __init__(self) -> None:
        self.properties: dict[str, str] = {}
        self.content: list[tuple[str, bytes]] = []
        self.function_name = "handle"
        self.cancelled: threading.Event | None = None  # set by the local server when the client disconnects

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
        return "batch_size" in self.properties if self.batch_by_key else self.get_batch_size() > 1

    def get_batch_size(self) -> int:
        return int(self.properties.get("batch_size", "1"))

    def get_batches(self) -> list[Input]:
        """The requests of a batch, split as the release does (its errors on keys it cannot parse included)."""
        if not self.is_batch():
            return [self]
        batch = [type(self)() for _ in range(self.get_batch_size())]
        if not self.batch_request_properties:
            for item in batch:
                item.properties = self.properties  # shared, as in 0.20-0.22
        for key, value in self.properties.items():
            if self.batch_request_properties and key.startswith("batch_") and key != "batch_size":
                index, name = self._batch_key(key)
                batch[index].properties[name] = value
        for key, data in self.content:
            index, name = self._batch_key(key)
            batch[index].content.append((name, data))
        return batch

    def _batch_key(self, key: str) -> tuple[int, str]:
        if self.sliced_batch_keys:
            return int(key[6:9]), key[10:]
        match = _BATCH_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"Unexpected key in batch input: {key}")
        return int(match.group(1)), match.group(2)

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
        return self._required(key).decode("utf-8")

    def get_as_json(self, key: str | None = None) -> Any:
        return json.loads(self._required(key).decode("utf-8"))

    def _required(self, key: str | None) -> bytes:
        data = self.get_as_bytes(key)
        if data is None:  # what the container's `None.decode(...)` raises, on an empty Input
            raise AttributeError("'NoneType' object has no attribute 'decode'")
        return data

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
        """The content decoded by the request's Content-Type, as djl_python does it (case-sensitive; ``text/csv`` is
        text; JSON by prefix from 0.22.1, the exact ``application/json`` before)."""
        content_type = self.get_property("content-type")
        if content_type == "tensor/ndlist":
            return self.get_as_numpy(key)
        if content_type == "tensor/npz":
            return self.get_as_npz(key)
        if content_type is not None and (
            content_type.startswith("application/json") if self.json_by_prefix else content_type == "application/json"
        ):
            return self.get_as_json(key)
        if content_type is not None and content_type.startswith("text/"):
            return self.get_as_string(key)
        if content_type is not None and content_type.startswith("image/"):
            return self.get_as_image(key)
        return None if not self.content else self.get_as_bytes(key)

    def is_cancelled(self) -> bool:
        """lmi-deploy's local runtime only (the container has no such call): whether the client has gone, so the
        handler can stop working for nobody. Handlers call it through ``getattr`` to run in the container too."""
        return self.cancelled is not None and self.cancelled.is_set()

    def is_empty(self) -> bool:
        return not self.content
