"""A release's real ``djl_python`` beside lmi-deploy's runtime, on the same handler, weights and requests.

The maintainer check behind ``scripts/check_parity.py``. This module plays the Java side of the LMI server: it
starts the release's ``djl_python_engine.py`` on a Unix socket, sends the warm-up call and the requests in the
binary frame its ``Input.read`` decodes, merges batches as that release's ``PyPredictor.batchPredict`` does, and
turns the ``Output`` frame back into what the server answers over HTTP (status, headers, ``getData()`` or the
chunks). The same requests go to a :class:`~lmi_deploy.runtime.server.ModelServer` for the same release; every
difference is reported. It needs a djl-serving checkout, so it never runs in CI: the tests pin the same
behaviours with lmi-deploy's own runtime (``tests/test_versions.py``).
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lmi_deploy.runtime.contract import (
    Reply,
    get_data,
    handler_properties,
    merge_batch,
    request_properties,
    server_error,
    split_batch_output,
)
from lmi_deploy.runtime.server import ModelServer
from lmi_deploy.runtime.versions import INT_STRING_LENGTHS, SERVER_BATCHING, Release


@dataclass(frozen=True)
class Request:
    """One HTTP request as a client sends it."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass(frozen=True)
class Case:
    """A named exchange: one request, or several sent together as one batch."""

    name: str
    requests: tuple[Request, ...]


@dataclass(frozen=True)
class Answer:
    """What the client gets: status, headers (lower-case names) and the body (chunks joined for a stream)."""

    status: int
    headers: dict[str, str]
    body: bytes
    streamed: bool = False

    def describe(self, width: int = 72) -> str:
        """Status, content type and the start of the body (a stream's chunks joined), on one line."""
        kind = "stream" if self.streamed else "body"
        text = json.dumps(self.body.decode("utf-8", "replace"))[1:-1]
        excerpt = text if len(text) <= width else text[: width - 3] + "..."
        return f"{self.status} {self.headers.get('content-type', '-')} {kind} {len(self.body)} B: {excerpt}"


# ---- the Java side's frames ----


class Frames:
    """Reads and writes the Python engine's binary frames, as this release's Java side does."""

    def __init__(self, conn: socket.socket, release: Release) -> None:
        self.conn = conn
        self.int_lengths = release.has(INT_STRING_LENGTHS)

    def _string(self, value: str | None) -> bytes:
        pack = ">i" if self.int_lengths else ">h"
        if value is None:
            return struct.pack(pack, -1)
        data = value.encode("utf-8")
        return struct.pack(pack, len(data)) + data

    def send(self, properties: Mapping[str, str], content: list[tuple[str, bytes | bytearray]]) -> None:
        frame = bytearray(struct.pack(">h", len(properties)))
        for key, value in properties.items():
            frame += self._string(key) + self._string(value)
        frame += struct.pack(">h", len(content))
        for key, data in content:
            frame += self._string(key) + struct.pack(">i", len(data)) + data
        self.conn.sendall(frame)

    def _exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the Python engine closed the connection")
            data += chunk
        return bytes(data)

    def _int(self, fmt: str) -> int:
        value: int = struct.unpack(fmt, self._exactly(struct.calcsize(fmt)))[0]
        return value

    def _read_string(self) -> str | None:
        size = self._int(">i" if self.int_lengths else ">h")
        return None if size < 0 else self._exactly(size).decode("utf-8")

    def receive(self) -> tuple[int, str, dict[str, str], list[tuple[str | None, bytes]] | None]:
        """(code, message, properties, content); content None for a stream (read it with :meth:`chunks`)."""
        code = self._int(">h")
        message = self._read_string() or ""
        properties = {}
        for _ in range(self._int(">h")):
            key, value = self._read_string(), self._read_string()
            properties[key or ""] = value or ""
        size = self._int(">h")
        if size == -1:
            return code, message, properties, None
        content = []
        for _ in range(size):
            key = self._read_string()
            content.append((key, self._exactly(self._int(">i"))))
        return code, message, properties, content

    def chunks(self) -> Iterator[bytes]:
        while True:
            more = self._exactly(1) == b"\1"
            yield self._exactly(self._int(">i"))
            if not more:
                return


# ---- the container's side: the release's engine worker, driven as its Java side drives it ----


class ContainerWorker:
    """The release's ``djl_python_engine.py`` on a Unix socket, with the model's warm-up done."""

    def __init__(self, python: Path, engine: Path, model_code: Path, model_dir: Path, release: Release, log: IO[str]):
        self.release = release
        self.model_dir = model_dir
        socket_path = model_code.parent / f"engine-{release.version}.sock"
        socket_path.unlink(missing_ok=True)
        command = [str(python), str(engine), "--sock-type", "unix", "--sock-name", str(socket_path)]
        command += ["--model-dir", str(model_code), "--entry-point", "model.py", "--device-id", "-1"]
        environment = {"PYTHONPATH": str(model_code), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(command, cwd=model_code, stdout=log, stderr=subprocess.STDOUT, env=environment)
        self.frames = Frames(self._connect(socket_path), release)
        self.options = handler_properties(model_code, model_dir, release)  # the Java side's init parameters
        self.alive = True

    def _connect(self, path: Path) -> socket.socket:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the engine worker exited ({self.process.returncode}); see its log")
            if path.exists():
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    conn.connect(str(path))
                    return conn
                except OSError:
                    conn.close()
            time.sleep(0.1)
        raise TimeoutError("the engine worker did not open its socket within 120 s")

    def warm_up(self) -> Answer:
        return self._exchange(self.options, [])[0]

    def ask(self, case: Case) -> list[Answer]:
        if len(case.requests) == 1 or not self.release.has(SERVER_BATCHING):
            return [self._single(request) for request in case.requests]
        properties, content = merge_batch(self.release, [(r.body, dict(r.headers)) for r in case.requests])
        return self._exchange({**properties, "handler": "handle"}, content, len(case.requests))

    def _single(self, request: Request) -> Answer:
        properties = {**request_properties(dict(request.headers)), "handler": "handle"}
        return self._exchange(properties, [("data", request.body)])[0]

    def _exchange(
        self, properties: dict[str, str], content: list[tuple[str, bytes | bytearray]], size: int = 1
    ) -> list[Answer]:
        if not self.alive:
            raise RuntimeError("the engine worker died on an earlier case; the server would restart it")
        try:
            self.frames.send(properties, content)
            code, _message, headers, received = self.frames.receive()
        except ConnectionError:  # PyProcess.predict: TranslateException(IOException "Python worker disconnected.")
            self.alive = False
            return [answer(server_error(400, "TranslateException", "Python worker disconnected."))] * size
        if received is None:
            body = b"".join(self.frames.chunks())
            return [Answer(code, {k.lower(): v for k, v in headers.items()}, body, streamed=True)]
        if size == 1:
            return [Answer(code, {k.lower(): v for k, v in headers.items()}, get_data(received))]
        return [answer(reply) for reply in split_batch_output(code, headers, received, size)]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---- lmi-deploy's side ----


def local_answers(server: ModelServer, case: Case) -> list[Answer]:
    """The same requests through lmi-deploy's runtime, submitted together so that they batch."""
    futures: list[Future[Reply]] = [server.submit(r.body, dict(r.headers)) for r in case.requests]
    return [answer(future.result(timeout=300)) for future in futures]


def answer(reply: Reply) -> Answer:
    """What the client gets from a reply (a stream's chunks joined)."""
    headers = {k.lower(): v for k, v in reply.headers.items()}
    if isinstance(reply.body, bytes):
        return Answer(reply.status, headers, reply.body)
    return Answer(reply.status, headers, b"".join(reply.body), streamed=True)


# ---- the cases ----

_JSON = {"Content-Type": "application/json"}


def _json(value: Any, headers: Mapping[str, str] = _JSON) -> Request:
    return Request(json.dumps(value).encode(), headers)


def handler_cases(prompt: str) -> list[Case]:
    """Requests for the rendered Accelerate handler: single, batched, streaming, empty body, a refused parameter."""
    generate = {"max_new_tokens": 4}
    return [
        Case("single", (_json({"inputs": [prompt, prompt[:12]], "parameters": generate}),)),
        Case("batched", tuple(_json({"inputs": prompt[: 8 + i], "parameters": generate}) for i in range(3))),
        Case("stream", (_json({"inputs": prompt, "parameters": generate, "stream": True}),)),
        Case("empty-body", (Request(b"", _JSON),)),
        # the handler bounds its parameters (a 400 before any work), so this no longer reaches generate(); handler
        # exceptions are the probe's "handler-error" case
        Case("bad-parameter", (_json({"inputs": prompt, "parameters": {"num_beams": 0}}),)),
    ]


def probe_cases() -> list[Case]:
    """Requests for the parity probe (lmi_deploy/runtime/parity_probe.py): what the handler is handed."""
    attributes = {**_JSON, "X-Amzn-SageMaker-Custom-Attributes": "tenant=a; trace=7"}
    charset = {"Content-Type": "application/json; charset=utf-8"}
    mixed = [_json({"id": 0}), _json({"id": 1}, charset), Request(b"a,b\n1,2\n", {"Content-Type": "text/csv"})]
    return [
        Case("echo", (_json({"do": "echo"}, attributes),)),
        Case("empty-body", (Request(b"", _JSON),)),
        Case("batched", tuple(mixed)),
        Case("stream", (_json({"do": "stream"}),)),
        Case("stream-not-iterator", (_json({"do": "stream-list"}),)),
        Case("handler-error", (_json({"do": "raise"}),)),
        Case("out-of-memory", (_json({"do": "oom"}),)),
        Case("output-getters", (_json({"do": "getters"}),)),
        Case("not-an-output", (_json({"do": "not-output"}),)),  # last: before 0.23 it kills the worker
    ]


@dataclass(frozen=True)
class Outcome:
    handler: str
    case: str
    container: list[Answer]
    local: list[Answer]

    @property
    def differences(self) -> list[str]:
        found = []
        for index, (theirs, ours) in enumerate(zip(self.container, self.local, strict=True)):
            where = f"request {index}: " if len(self.container) > 1 else ""
            for name in ("status", "streamed", "headers", "body"):
                if getattr(theirs, name) != getattr(ours, name):
                    found.append(f"{where}{name}: container {getattr(theirs, name)!r} | local {getattr(ours, name)!r}")
        return found


def report(outcomes: list[Outcome], release: Release, ref: str, local: Release | None = None) -> list[str]:
    """The lines check_parity prints for one release: each case's verdict and the container's answer."""
    against = f", local runtime as {local.version}" if local and local != release else ""
    lines = [f"== djl-serving {release.version} ({ref}{against}) =="]
    for outcome in outcomes:
        differences = outcome.differences
        verdict = "same" if not differences else f"{len(differences)} DIFFERENCE(S)"
        lines.append(f"{outcome.handler:>11} {outcome.case:<20} {verdict}")
        lines += [f"{'':>14}{answer.describe()}" for answer in outcome.container]
        lines += [f"{'':>14}- {difference}" for difference in differences]
    total = sum(len(o.differences) for o in outcomes)
    lines.append(f"{release.version}: {len(outcomes)} cases, {total} differences")
    return lines


# ---- one release, end to end ----

BATCHING = "batch_size=3\nmax_batch_delay=300\n"  # added to each serving.properties so that "batched" batches


def resolve_ref(repo: Path, version: str) -> str:
    """The git ref the release's images are built from: ``X.Y.Z-dlc``, else the tag ``vX.Y.Z``."""
    for ref in (f"{version}-dlc", f"origin/{version}-dlc", f"v{version}"):
        found = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            capture_output=True,
            check=False,
        )
        if found.returncode == 0:
            return ref
    raise ValueError(f"{repo} has neither a {version}-dlc branch nor a v{version} tag; give --version {version}=REF")


def install_djl_python(repo: Path, ref: str, work: Path) -> tuple[Path, Path]:
    """A throwaway venv with the release's djl_python installed; (its python, the release's engine script).

    The venv sees this interpreter's packages (torch, transformers) through a .pth file, so only djl_python is new.
    """
    import site
    import sys

    source = work / "djl-serving"
    source.mkdir(parents=True)
    # setup.py reads the version from gradle.properties (to 0.27) or gradle/libs.versions.toml (later)
    paths = ["engines/python/setup"] + [
        path
        for path in ("gradle.properties", "gradle/libs.versions.toml")
        if subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{ref}:{path}"], check=False).returncode == 0
    ]
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, *paths], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "lmi_deploy_parity.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    setup = source / "engines" / "python" / "setup"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(setup)],
        check=True,
        cwd=setup,
    )
    return python, setup / "djl_python_engine.py"


def model_code_for(folder: Path, model_py: Path | str, properties: str) -> Path:
    folder.mkdir(parents=True)
    model = folder / "model.py"
    model.write_text(Path(model_py).read_text() if isinstance(model_py, Path) else model_py)
    (folder / "serving.properties").write_text(properties + BATCHING)
    return folder


def compare(
    handler: str,
    model_code: Path,
    weights: Path,
    release: Release,
    installed: tuple[Path, Path],
    cases: list[Case],
    local_release: Release | None = None,
) -> list[Outcome]:
    """Every case through the release's engine worker and through lmi-deploy's runtime (as ``local_release``,
    by default the same release)."""
    local = ModelServer(model_code, weights, version=(local_release or release).version)
    local.device_id = "-1"  # the CPU, as the worker is told (--device-id -1)
    with (model_code.parent / f"{handler}-engine.log").open("w") as log:
        worker = ContainerWorker(*installed, model_code, weights, release, log)
        try:
            outcomes = [Outcome(handler, "warm-up", [worker.warm_up()], [_warm_up_answer(local)])]
            for case in cases:
                outcomes.append(Outcome(handler, case.name, worker.ask(case), local_answers(local, case)))
        finally:
            worker.close()
    return outcomes


def _warm_up_answer(server: ModelServer) -> Answer:
    server.start()
    if not server.wait_ready(600):
        return Answer(500, {}, server.failure.encode())
    return Answer(204, {}, b"")
