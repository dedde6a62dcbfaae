"""A local stand-in for the LMI model server: the SageMaker inference contract over our djl_python runtime.

``GET /ping`` answers 200 only once the model loaded (503 while loading, 500 if loading failed); ``POST /invocations``
runs the rendered handler unmodified. Like DJL: the handler gets the ``serving.properties`` values with ``option.``
stripped plus ``model_dir``; the first call is the empty warm-up that loads the model; ``batch_size`` /
``max_batch_delay`` batch requests into one ``Input`` with ``batch_{i}.`` keys; a handler exception is a 424, an
out-of-memory error a 507, an empty body a 400, a full queue (``job_queue_size``) a 503. Streamed outputs are sent
chunked as they are produced. Flask serves HTTP (werkzeug's threaded server).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmi_deploy.runtime import load_handler
from lmi_deploy.validation import parse_properties

LOG = logging.getLogger("lmi_deploy.serve")


@dataclass
class Reply:
    status: int
    body: bytes | Iterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    output: Any = None  # the handler's Output, for its finalize step


def error_reply(status: int, message: str, error: str) -> Reply:
    body = json.dumps({"code": status, "message": message, "error": error}).encode()
    return Reply(status, body, {"content-type": "application/json"})


def handler_properties(model_code: Path, model_dir: Path) -> dict[str, str]:
    """What DJL hands the handler: every serving.properties value (``option.`` stripped) and ``model_dir``.

    As in the container after the server's own S3 download, an ``s3://`` weights location is replaced by the local
    copy (``model_dir``).
    """
    properties: dict[str, str] = {}
    text = (model_code / "serving.properties").read_text()
    for _, key, value in parse_properties(text):
        properties[key.removeprefix("option.")] = value
    for key in ("model_id", "s3url"):
        if properties.get(key, "").startswith("s3://"):
            properties[key] = str(model_dir)
    properties["model_dir"] = str(model_dir)
    return properties


class ModelServer:
    """One worker: loads the handler, then serves queued requests (in batches when ``batch_size`` > 1)."""

    def __init__(self, model_code: Path, model_dir: Path) -> None:
        self.model_code = Path(model_code)
        self.properties = handler_properties(self.model_code, Path(model_dir))
        entry = self.properties.get("entryPoint", "model.py")
        if not entry.endswith(".py"):
            raise ValueError(
                f"serving.properties names the built-in handler {entry}, which exists only inside the LMI container; "
                "serve_local runs bring-your-own handlers (handler=custom)"
            )
        self.batch_size = int(self.properties.get("batch_size", "1"))
        self.max_batch_delay_s = int(self.properties.get("max_batch_delay", "100")) / 1000
        self.jobs: queue.Queue[tuple[bytes, dict[str, str], Future[Reply]]] = queue.Queue(
            maxsize=int(self.properties.get("job_queue_size", "1000"))
        )
        self.state = "loading"
        self.failure = ""
        self._handler: Any = None
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)

    def start(self) -> ModelServer:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while self.state == "loading" and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.state == "ready"

    def submit(self, body: bytes, headers: dict[str, str]) -> Future[Reply]:
        future: Future[Reply] = Future()
        if self.state != "ready":
            future.set_result(error_reply(503, "Service Unavailable", f"model is {self.state}"))
            return future
        if not body:
            future.set_result(error_reply(400, "Bad Request", "request body is empty"))
            return future
        try:
            self.jobs.put_nowait((body, headers, future))
        except queue.Full:
            future.set_result(error_reply(503, "Service Unavailable", "job queue is full"))
        return future

    # ---- the worker ----

    def _run(self) -> None:
        try:
            self._handler = load_handler(self.model_code / "model.py")
            warm_up = self._handler.Input.of(self.properties)
            result = self._handler.handle(warm_up)
            if result is not None and getattr(result, "code", 200) >= 300:
                raise RuntimeError(f"warm-up call answered {result.code}: {result.body()!r}")
        except BaseException as error:
            LOG.exception("model failed to load")
            self.failure, self.state = f"{type(error).__name__}: {error}", "failed"
            return
        self.state = "ready"
        while True:
            batch = [self.jobs.get()]
            deadline = time.monotonic() + self.max_batch_delay_s
            while len(batch) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self.jobs.get(timeout=remaining))
                except queue.Empty:
                    break
            self._serve(batch)

    def _call(self, inputs: Any) -> tuple[Any, Reply | None]:
        try:
            output = self._handler.handle(inputs)
        except Exception as error:  # MemoryError included
            text = f"{type(error).__name__}: {error}"
            if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
                return None, error_reply(507, "Insufficient Storage", text)
            return None, error_reply(424, "prediction failure", text)
        if output is None:
            return None, Reply(204, b"")
        if not hasattr(output, "code") or not hasattr(output, "content"):
            return None, error_reply(424, "prediction failure", f"handler returned {type(output).__name__}, not Output")
        return output, None

    def _serve(self, batch: list[tuple[bytes, dict[str, str], Future[Reply]]]) -> None:
        Input = self._handler.Input
        if len(batch) == 1:  # a lone request is sent as itself, as DJL 0.23's is_batch() (batch_size > 1) expects
            body, headers, future = batch[0]
            output, failed = self._call(Input.of({**self.properties, **headers}, body))
            future.set_result(failed or self._reply(output))
            return
        merged = Input()
        merged.properties = {**self.properties, **batch[0][1], "batch_size": str(len(batch))}
        merged.content = [(f"batch_{i}.data", body) for i, (body, _, _) in enumerate(batch)]
        output, failed = self._call(merged)
        if failed is None and output.code >= 300:
            failed = self._reply(output)
        if failed is not None:
            for _, _, future in batch:
                future.set_result(failed)
            return
        parts: dict[int, list[bytes]] = {}
        for key, data in output.content:
            if key and key.startswith("batch_"):
                parts.setdefault(int(key[6:].split(".", 1)[0]), []).append(data)
        if sorted(parts) != list(range(len(batch))):
            mismatch = error_reply(500, "Internal Server Error", "Batch output size mismatch")
            for _, _, future in batch:
                future.set_result(mismatch)
            return
        for i, (_, _, future) in enumerate(batch):
            future.set_result(Reply(output.code, b"".join(parts[i]), dict(output.properties)))

    @staticmethod
    def _reply(output: Any) -> Reply:
        headers = {k.lower(): v for k, v in output.properties.items()}
        if output.stream_content is not None:
            return Reply(output.code, _stream(output), headers)
        return Reply(output.code, output.body(), headers, output)


def _stream(output: Any) -> Iterator[bytes]:
    formatter = output.stream_formatter
    try:
        for item in output.stream_content:
            chunk = formatter(item) if formatter else item
            yield chunk if isinstance(chunk, bytes) else str(chunk).encode()
    except Exception as error:  # DJL sends an error chunk and ends the stream
        yield json.dumps({"code": 424, "error": f"{type(error).__name__}: {error}"}).encode() + b"\n"


def create_app(server: ModelServer) -> Any:
    """The Flask app speaking the SageMaker contract for one ModelServer."""
    from flask import Flask, Response, request

    app = Flask("lmi-deploy-local")

    @app.get("/ping")
    def ping() -> Response:
        if server.state == "ready":
            return Response(json.dumps({"status": "Healthy"}), 200, content_type="application/json")
        status = 500 if server.state == "failed" else 503
        detail = {"status": server.state, **({"error": server.failure} if server.failure else {})}
        return Response(json.dumps(detail), status, content_type="application/json")

    @app.post("/invocations")
    def invocations() -> Any:
        headers = {key: value for key, value in request.headers.items()}
        return http_response(server.submit(request.get_data(), headers).result())

    return app


def http_response(reply: Reply) -> Any:
    """A Flask response for a reply: streamed bodies as they are produced, finalize after a whole one is sent."""
    from flask import Response

    if isinstance(reply.body, bytes):
        response = Response(reply.body, reply.status, headers=reply.headers)
        if reply.output is not None:
            response.call_on_close(reply.output.execute_finalize)  # after the response is sent, as DJL does
        return response
    return Response(reply.body, reply.status, headers=reply.headers, direct_passthrough=True)


def serve(server: ModelServer, host: str = "127.0.0.1", port: int = 8080) -> Any:
    """A started werkzeug server (threaded) for ``server``; call ``.shutdown()`` to stop it."""
    from werkzeug.serving import make_server

    http = make_server(host, port, create_app(server), threaded=True)
    threading.Thread(target=http.serve_forever, name="http", daemon=True).start()
    return http
