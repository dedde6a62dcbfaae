"""``engine=MPI`` locally: one model copy as N rank processes, driven the way the LMI server drives ``mpirun``.

What the container does (djl-serving ``Connection.getPythonStartCmd``, ``PyProcess.predict``, read at 0.23.0 and
0.36.0): ``mpirun -np N`` starts N Python engines, each with ``OMPI_COMM_WORLD_RANK`` / ``_SIZE`` / ``_LOCAL_RANK``
(the engine copies them to ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``), ``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT``
and the copy's ``CUDA_VISIBLE_DEVICES``. The warm-up call and every request go to every rank; the server waits for
all of them and answers with the last rank's output (0.35+ with ``option.use_passive_workers=false``; its passive
default sends requests to rank 0 alone). A rank that dies takes the request down: the server answers
``400 TranslateException "Python worker disconnected."``, stops every rank and starts them again; until they are
back a request is answered ``400 "Backend Python process is stopped."``.

Here each rank is a process (forked where no GPU is visible, so a CPU test pays no second import; spawned otherwise,
as CUDA requires) that imports the rendered ``model.py`` through :func:`lmi_deploy.runtime.load_handler`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import sys
import threading
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

LOG = logging.getLogger("lmi_deploy.serve")
_POLL_S = 0.1


class WorkerDisconnected(RuntimeError):
    """A rank's process ended in the middle of a call (the server's ``IOException: Python worker disconnected.``)."""


class RankFailed(RuntimeError):
    """The answering rank's handler raised: the engine answers it as that exception (424, or 507 for memory)."""

    def __init__(self, message: str, out_of_memory: bool) -> None:
        super().__init__(message)
        self.out_of_memory = out_of_memory


def mpi_world(server: dict[str, str], options: dict[str, str]) -> int:
    """How many ranks a model copy has under ``engine=MPI`` (or ``option.mpi_mode=true``); 1 otherwise."""
    mpi = server.get("engine", "").lower() == "mpi" or options.get("mpi_mode", "").lower() == "true"
    degree = options.get("tensor_parallel_degree", "")
    return int(degree) if mpi and degree.isdigit() and int(degree) > 1 else 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pack(output: Any) -> tuple[Any, ...]:
    """A handler's return value as plain data for the pipe (a stream is read to its end on the rank)."""
    if output is None:
        return ("none",)
    if not hasattr(output, "code") or not hasattr(output, "content"):
        return ("invalid", type(output).__name__)
    chunks = None
    if getattr(output, "stream_content", None) is not None:
        from lmi_deploy.runtime.djl_python.outputs import encode_chunk

        formatter = output.stream_formatter
        chunks = [encode_chunk(formatter(item) if formatter else item) for item in output.stream_content]
    return ("output", output.code, output.message, dict(output.properties), list(output.content), chunks)


def _rank_main(rank: int, world: int, port: int, model_py: str, version: str, pipe: Connection, cancel: Any) -> None:
    """One rank: the environment mpirun and the engine give it, then calls from the pipe until it closes."""
    values = {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    values.update(OMPI_COMM_WORLD_RANK=rank, OMPI_COMM_WORLD_SIZE=world, OMPI_COMM_WORLD_LOCAL_RANK=rank)
    os.environ.update({key: str(value) for key, value in values.items()})
    from lmi_deploy.runtime import api_for, load_handler
    from lmi_deploy.runtime.versions import release_of

    release = release_of(version)
    input_class, _ = api_for(release)
    module = load_handler(model_py, release)
    while True:
        try:
            call = pipe.recv()
        except EOFError:
            call = None
        if call is None:  # the server stops the ranks: leave at once, as mpirun's ranks are killed
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        function, properties, content = call
        inputs = input_class()
        inputs.properties, inputs.content, inputs.cancelled = properties, content, cancel
        try:
            reply = _pack(getattr(module, function)(inputs))
        except Exception as error:  # the engine answers it; the rank lives on
            logging.getLogger("lmi_deploy.serve").exception("rank %d: handler failed", rank)
            reply = ("error", str(error), release.is_out_of_memory(error))
        pipe.send(reply)


class WorkerGroup:
    """The ranks of one model copy; :meth:`call` is the handler function as the server sees it."""

    def __init__(self, model_py: Path, version: str, world: int, output_class: Any) -> None:
        self.model_py, self.version, self.world = str(model_py), version, world
        self.output_class = output_class
        self.processes: list[Any] = []
        self.pipes: list[Connection] = []
        cuda_visible = _cuda_visible()
        self.context: Any = multiprocessing.get_context("spawn" if cuda_visible else "fork")
        self.cancel = self.context.Event()
        self.lock = threading.Lock()

    def start(self) -> None:
        port = _free_port()
        self.cancel.clear()
        for rank in range(self.world):
            parent, child = self.context.Pipe()
            process = self.context.Process(
                target=_rank_main,
                args=(rank, self.world, port, self.model_py, self.version, child, self.cancel),
                name=f"lmi-rank-{rank}",
                daemon=True,
            )
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):  # that rank is gone already
                pipe.send(None)
            pipe.close()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        self.processes, self.pipes = [], []

    def call(self, inputs: Any) -> Any:
        """Send one call to every rank, wait for all, answer with the last rank's output (see the module)."""
        with self.lock:
            self.cancel.clear()
            message = (inputs.properties.get("handler", "handle"), dict(inputs.properties), list(inputs.content))
            for pipe in self.pipes:
                pipe.send(message)
            replies = self._collect(inputs)
        if any(reply != replies[-1] for reply in replies[:-1]):
            LOG.warning("the ranks answered differently; the server returns the last rank's answer")
        return self._unpack(replies[-1])

    def _collect(self, inputs: Any) -> list[tuple[Any, ...]]:
        replies: dict[int, tuple[Any, ...]] = {}
        while len(replies) < self.world:
            waiting = [rank for rank in range(self.world) if rank not in replies]
            ready = wait([self.pipes[r] for r in waiting] + [self.processes[r].sentinel for r in waiting], _POLL_S)
            for rank in waiting:
                try:
                    if self.pipes[rank] in ready and self.pipes[rank].poll():
                        replies[rank] = self.pipes[rank].recv()
                        continue
                except (EOFError, OSError):  # its end of the pipe closed: the process is ending
                    pass
                else:
                    if self.processes[rank].sentinel not in ready:
                        continue
                self.processes[rank].join(5)
                LOG.error("rank %d of %d exited (%s) during a call", rank, self.world, self.processes[rank].exitcode)
                raise WorkerDisconnected("Python worker disconnected.")
            cancelled = getattr(inputs, "cancelled", None)
            if cancelled is not None and cancelled.is_set():
                self.cancel.set()
        return [replies[rank] for rank in range(self.world)]

    def _unpack(self, reply: tuple[Any, ...]) -> Any:
        kind = reply[0]
        if kind == "none":
            return None
        if kind == "error":
            raise RankFailed(reply[1], reply[2])
        if kind == "invalid":
            return type(reply[1], (), {})()
        _, code, message, properties, content, chunks = reply
        output = self.output_class(code, message)
        output.properties, output.content = properties, content
        if chunks is not None:
            output.stream_content, output.stream_formatter = iter(chunks), None
        return output


def _cuda_visible() -> bool:
    """Whether a GPU may be used (without initialising CUDA in this process, which a fork would inherit)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))
