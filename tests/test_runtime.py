"""Our djl_python-compatible Input/Output: the methods the fact sheet lists, as handlers use them."""

from __future__ import annotations

import io
import json

import numpy as np

from lmi_deploy.runtime import RUNTIME_PATH, load_handler  # noqa: F401  (puts djl_python on the path)


def classes():
    import sys

    if RUNTIME_PATH not in sys.path:
        sys.path.insert(0, RUNTIME_PATH)
    from djl_python import Input, Output

    return Input, Output


def test_input_accessors_and_batches() -> None:
    Input, _ = classes()
    item = Input.of({"Content-Type": "application/json", "X-Custom": "1"}, b'{"inputs": "hi"}')
    assert item.get_property("content-type") == "application/json" and item.get_property("x-custom") == "1"
    assert item.get_data() == {"inputs": "hi"} and item.get_as_string() == '{"inputs": "hi"}'
    assert not item.is_empty() and not item.is_batch() and item.contains_key("data")
    csv_input = Input.of({"Content-Type": "text/csv"}, b"a,b\n1,2\n")
    assert csv_input.get_data() == "a,b\n1,2\n"  # text/* is text to djl_python's get_data; get_as_csv parses
    assert csv_input.get_as_csv() == [{"a": "1", "b": "2"}]
    buffer = io.BytesIO()
    np.savez(buffer, np.arange(3), np.ones((2, 2)))
    arrays = Input.of({"Content-Type": "tensor/npz"}, buffer.getvalue()).get_data()
    assert [a.tolist() for a in arrays] == [[0, 1, 2], [[1.0, 1.0], [1.0, 1.0]]]
    merged = Input()
    merged.properties = {"batch_size": "2", "batch_001.Content-Type": "text/plain"}
    merged.content = [("batch_000.data", b'{"id": 0}'), ("batch_001.data", b'{"id": 1}')]
    assert merged.is_batch() and [b.get_as_json()["id"] for b in merged.get_batches()] == [0, 1]
    assert merged.get_batches()[1].get_property("content-type") == "text/plain"


def test_output_encodings_and_finalize() -> None:
    _, Output = classes()
    done: list[str] = []
    output = Output().add_as_json({"a": 1}, batch_index=0).add("text", batch_index=1).finalize(done.append, "sent")
    assert [key for key, _ in output.content] == ["batch_0.", "batch_1."]  # the server matches batch_(\d+)\.(.*)
    output.execute_finalize()
    assert done == ["sent"]
    error = Output().error("boom")
    assert (error.code, json.loads(error.body())["error"]) == (424, "boom")
    assert error.body() == b'{\n  "code":424,\n  "message":"invoke handler failure",\n  "error":"boom"\n}'
    npz = Output().add_as_npz([np.arange(2)])
    with np.load(io.BytesIO(npz.body())) as archive:
        assert archive["arr_0"].tolist() == [0, 1]
