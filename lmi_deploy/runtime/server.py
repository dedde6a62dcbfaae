"""A local stand-in for the LMI model server: the SageMaker inference contract over our djl_python runtime.

``GET /ping`` answers 200 only once the model loaded (503 while loading, 500 if loading failed); ``POST /invocations``
runs the rendered handler unmodified, as the deployment's container release would (:mod:`lmi_deploy.runtime.versions`):
the warm-up call carries the ``option.*`` values (prefix stripped) and ``handler``; a request carries its HTTP headers;
every call ``handler``, ``device_id`` and ``model_dir``. ``batch_size`` / ``max_batch_delay`` batch requests into one
``Input`` keyed as that release keys them; an empty body reaches the handler; a handler exception is a 424 with the
release's message, an out-of-memory error a 507 where the release says so, a full queue (``job_queue_size``) a 503.
Streamed outputs are sent chunked as they are produced.

Beyond DJL, against clients that misbehave: a request not answered within ``option.request_timeout`` (+ a grace) is
answered 504, and ``/ping`` answers 503 while the worker stays stuck on it; a client that disconnects has its request
cancelled (``Input.is_cancelled()`` turns true, so our handlers stop generating; a queued one is dropped); HTTP errors
are JSON, bodies over 6 MB a 413, slow sockets time out (``http_guard``). Flask serves HTTP (werkzeug's threaded
server).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmi_deploy.request_limits import REALTIME_REQUEST_TIMEOUT_S
from lmi_deploy.runtime import api_for, load_handler
from lmi_deploy.runtime.contract import (
    Reply,
    error_reply,
    handler_properties,
    merge_batch,
    read_serving_properties,
    request_properties,
    server_error,
    split_batch_output,
    stream_output,
)
from lmi_deploy.runtime.http_guard import client_gone, make_http_server
from lmi_deploy.runtime.mpi_workers import WorkerDisconnected, WorkerGroup, mpi_world
from lmi_deploy.runtime.versions import (
    OUT_OF_MEMORY_507,
    SERVER_BATCHING,
    Release,
    release_of,
)

LOG = logging.getLogger("lmi_deploy.serve")
LORA_HANDLER = Path(__file__).parent / "lora_handler.py"  # imports djl_python: loaded as a handler, never imported
ROLLING_BATCH_STAND_IN = ("vllm", "lmi-dist")


@dataclass
class Job:
    """One request in the queue: its body and headers, where its reply goes, and whether its client has gone."""

    body: bytes
    headers: dict[str, str]
    future: Future[Reply] = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)


def _default_device_id() -> str:
    try:
        import torch
    except ImportError:
        return "-1"
    return "0" if torch.cuda.is_available() else "-1"


class ModelServer:
    """One worker: loads the handler, then serves queued requests (in batches when ``batch_size`` > 1).

    ``version`` is the container release to behave as (default: the one named in a rendered serving.properties,
    else the newest).
    """

    POLL_S = 0.1  # how often a waiting request checks its client and its deadline

    def __init__(self, model_code: Path, model_dir: Path, version: str | None = None) -> None:
        self.model_code = Path(model_code)
        self.model_dir = Path(model_dir)
        settings = read_serving_properties(self.model_code)
        self.release: Release = release_of(version or settings.version)
        self.properties = handler_properties(self.model_code, self.model_dir, self.release)
        entry = self.properties.get("entryPoint", "model.py")
        # A rolling-batch engine's handler is the container's own: its local stand-in serves it (and its adapters).
        stand_in = settings.options.get("rolling_batch") in ROLLING_BATCH_STAND_IN and entry == "model.py"
        self.handler_file = LORA_HANDLER if stand_in else self.model_code / "model.py"
        if not entry.endswith(".py"):
            raise ValueError(
                f"serving.properties names the built-in handler {entry}, which exists only inside the LMI container; "
                "serve_local runs bring-your-own handlers (handler=custom)"
            )
        batch_size = int(settings.server.get("batch_size", "1"))
        self.batch_size = batch_size if self.release.has(SERVER_BATCHING) else 1
        self.max_batch_delay_s = int(settings.server.get("max_batch_delay", "100")) / 1000
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=int(settings.server.get("job_queue_size", "1000")))
        self.request_timeout = float(settings.options.get("request_timeout", REALTIME_REQUEST_TIMEOUT_S))
        # a handler that honours the deadline answers within a decode step of it; beyond this it is stuck
        self.grace_s = min(5.0, self.request_timeout / 2)
        self.busy_since: float | None = None
        self.device_id = _default_device_id()
        # The container's model_dir is the folder of the model code; the weights are where model_id (or s3url) points,
        # at their downloaded copy. Without either, the weights sit in model_dir beside the code.
        names_weights = any(key in settings.options for key in ("model_id", "s3url"))
        self.handler_model_dir = str(self.model_code if names_weights else self.model_dir)
        self.Input, self.Output = api_for(self.release)
        # engine=MPI with tensor_parallel_degree > 1: the model copy runs as that many rank processes (a rolling-batch
        # stand-in runs whole in this one)
        world = 1 if stand_in else mpi_world(settings.server, settings.options)
        self.group: WorkerGroup | None = None
        if world > 1:
            self.group = WorkerGroup(self.handler_file, self.release.version, world, self.Output)
        self.state = "loading"
        self.failure = ""
        self._handler: Any = None
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)

    def start(self) -> ModelServer:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while self.state in ("loading", "restarting") and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.state == "ready"

    def health(self) -> tuple[int, dict[str, str]]:
        """``/ping``'s status and body: healthy only when loaded and not stuck on one request past its deadline."""
        if self.state == "ready":
            busy_since = self.busy_since
            busy = time.monotonic() - busy_since if busy_since is not None else 0.0
            if busy <= self.request_timeout + self.grace_s:
                return 200, {"status": "Healthy"}
            overrun = (
                f"the worker has been on one request for {busy:.0f} s, past request_timeout={self.request_timeout:g} s"
            )
            return 503, {"status": "Unhealthy", "error": overrun}
        detail = {"status": self.state, **({"error": self.failure} if self.failure else {})}
        return (500 if self.state == "failed" else 503), detail

    def submit(self, body: bytes, headers: dict[str, str]) -> Future[Reply]:
        """Queue a request; its reply arrives in the future (see :meth:`invoke` for a client that may leave)."""
        return self.queue_job(body, headers).future

    def queue_job(self, body: bytes, headers: dict[str, str]) -> Job:
        job = Job(body, headers)
        if self.state == "restarting":  # PyPredictor: the ranks are being started again after a crash
            job.future.set_result(server_error(400, "TranslateException", "Backend Python process is stopped."))
            return job
        if self.state != "ready":
            job.future.set_result(error_reply(503, "Service Unavailable", f"model is {self.state}"))
            return job
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            job.future.set_result(error_reply(503, "Service Unavailable", "job queue is full"))
        return job

    def invoke(self, body: bytes, headers: dict[str, str], connection: Any = None) -> Reply:
        """Queue a request and wait for its reply; cancel it when the client on ``connection`` leaves or the
        deadline (+ grace) passes without an answer (504, as SageMaker cuts a real-time invocation)."""
        job = self.queue_job(body, headers)
        limit = time.monotonic() + self.request_timeout + self.grace_s
        while True:
            try:
                return job.future.result(timeout=self.POLL_S)
            except TimeoutError:
                pass
            if client_gone(connection):
                job.cancelled.set()
                return error_reply(499, "Client Closed Request", "the client disconnected")
            if time.monotonic() > limit:
                job.cancelled.set()
                return error_reply(
                    504, "Gateway Timeout", f"no answer within request_timeout={self.request_timeout:g} s"
                )

    # ---- the worker ----

    def _engine(self, properties: dict[str, str]) -> dict[str, str]:
        """What the server and the Python engine add to every call: ``handler``, ``device_id``, ``model_dir``."""
        handler = self.properties["handler"]
        return {
            **properties,
            "handler": properties.get("handler", handler),
            "device_id": self.device_id,
            "model_dir": self.handler_model_dir,
        }

    def _load(self) -> bool:
        """Import the handler (or start the ranks) and make the warm-up call; False (state failed) if it fails."""
        try:
            if self.group is not None:
                self.group.start()
            else:
                self._handler = load_handler(self.handler_file, self.release)
            result = self._handler_function()(self.Input.of(self._engine(self.properties)))
            if result is not None and getattr(result, "code", 200) >= 300:
                raise RuntimeError(f"warm-up call answered {result.code}: {result.body()!r}")
        except BaseException as error:
            LOG.exception("model failed to load")
            self.failure, self.state = f"{type(error).__name__}: {error}", "failed"
            return False
        self.state = "ready"
        return True

    def _run(self) -> None:
        if not self._load():
            return
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
            batch = [job for job in batch if self._still_wanted(job)]
            if batch:
                self._serve(batch)
            if self.state == "restarting" and not self._restart_ranks():
                return

    def _still_wanted(self, job: Job) -> bool:
        """False (and the job answered) for a request whose client left, or whose deadline passed, in the queue."""
        if job.cancelled.is_set():
            job.future.set_result(error_reply(499, "Client Closed Request", "the client disconnected while queued"))
            return False
        if time.monotonic() - job.submitted > self.request_timeout:
            waited = f"waited past request_timeout={self.request_timeout:g} s in the queue"
            job.future.set_result(error_reply(504, "Gateway Timeout", waited))
            return False
        return True

    def _handler_function(self) -> Any:
        if self.group is not None:
            return self.group.call
        return getattr(self._handler, self.properties["handler"])

    def _restart_ranks(self) -> bool:
        """After a rank died: stop every rank and start them again, as the server restarts mpirun (requests
        meanwhile are refused, see :meth:`queue_job`)."""
        assert self.group is not None
        self.group.stop()
        LOG.warning("restarting the %d ranks", self.group.world)
        return self._load()

    def _call(self, inputs: Any) -> tuple[Any, Reply | None]:
        """The handler's Output, or the reply the engine makes of its failure (release by release)."""
        self.busy_since = time.monotonic()
        try:
            output = self._handler_function()(inputs)
        except WorkerDisconnected:
            self.state = "restarting"  # the worker loop restarts the ranks once this reply is sent
            return None, server_error(400, "TranslateException", "Python worker disconnected.")
        except Exception as error:
            LOG.exception("handler failed")
            if self.release.is_out_of_memory(error) or getattr(error, "out_of_memory", False):
                return None, Reply(507, b"", {})
            failed = self.Output().error(str(error))
            return None, self._reply(failed)
        finally:
            self.busy_since = None
        if output is None:
            return None, Reply(204, b"")
        if not hasattr(output, "code") or not hasattr(output, "content"):
            if not self.release.has(OUT_OF_MEMORY_507):  # the engine's send() fails outside its try: worker dies
                return None, server_error(400, "TranslateException", "Python worker disconnected.")
            invalid = self.Output().error(f"Invalid output type: {type(output)}")
            return None, self._reply(invalid)
        return output, None

    def _serve(self, batch: list[Job]) -> None:
        if len(batch) == 1:  # a lone request is sent as itself, never as a batch of one
            job = batch[0]
            # the engine reads each body off its socket into a bytearray, which is what a handler gets
            inputs = self.Input.of(self._engine(request_properties(job.headers)), bytearray(job.body))
            inputs.cancelled = job.cancelled  # Input.is_cancelled(), this runtime's addition
            output, failed = self._call(inputs)
            job.future.set_result(failed or self._reply(output, job.cancelled))
            return
        output, failed = self._call(self._merge(batch))
        if failed is None and output.code >= 300:
            failed = self._reply(output)
        if failed is not None:
            replies = [failed] * len(batch)
        else:
            replies = split_batch_output(output.code, output.properties, output.content, len(batch))
        for job, reply in zip(batch, replies, strict=True):
            job.future.set_result(reply)

    def _merge(self, batch: list[Job]) -> Any:
        """Several requests as one Input, keyed as the release's server keys them."""
        merged = self.Input()
        properties, merged.content = merge_batch(self.release, [(job.body, job.headers) for job in batch])
        merged.properties = self._engine(properties)
        return merged

    @staticmethod
    def _reply(output: Any, cancelled: threading.Event | None = None) -> Reply:
        headers = {k.lower(): v for k, v in output.properties.items()}
        if getattr(output, "stream_content", None) is not None:
            return Reply(output.code, stream_output(output, cancelled), headers)
        return Reply(output.code, output.body(), headers, output)


def create_app(server: ModelServer) -> Any:
    """The Flask app speaking the SageMaker contract for one ModelServer."""
    from flask import Flask, Response, request

    app = Flask("lmi-deploy-local")

    @app.get("/ping")
    def ping() -> Response:
        status, detail = server.health()
        return Response(json.dumps(detail), status, content_type="application/json")

    @app.post("/invocations")
    def invocations() -> Any:
        headers = {key: value for key, value in request.headers.items()}
        return http_response(server.invoke(request.get_data(), headers, request.environ.get("werkzeug.socket")))

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


def serve(server: ModelServer, host: str = "127.0.0.1", port: int = 8080, **timeouts: float) -> Any:
    """A started werkzeug server (threaded) for ``server``; call ``.shutdown()`` to stop it.

    ``timeouts``: ``header_timeout`` / ``read_timeout`` of :func:`~lmi_deploy.runtime.http_guard.make_http_server`.
    """
    return make_http_server(create_app(server), host, port, **timeouts)
