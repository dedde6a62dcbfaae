"""A quiet console for long commands: our lines on the terminal, everything else in a log file.

Inside ``Console(log, verbose=False)``, file descriptors 1 and 2 point at the log, so whatever an emulator, a library,
a thread or a child process prints (warnings, progress bars, ``No Moto CloudFormation support ...``) lands there,
however it was printed; ``console.say`` and ``console.step`` write to the terminal the command started on. With
``verbose=True`` nothing is redirected: everything shows, and the log still receives what ``tee`` hands it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO


class Console:
    def __init__(self, log: Path, verbose: bool = False) -> None:
        self.log = log
        self.verbose = verbose
        self.started = time.monotonic()
        self._saved: tuple[int, int] | None = None
        self._out: IO[str] = sys.stdout
        self._err: IO[str] = sys.stderr

    def __enter__(self) -> Console:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        # Python's warnings and library loggers (moto's "No Moto CloudFormation support ...") to the log by name,
        # whatever else handles the root logger (a test runner's capture, say); on the terminal too when verbose.
        self._handlers: list[logging.Handler] = [logging.FileHandler(self.log)]
        if self.verbose:
            self._handlers.append(logging.StreamHandler(sys.stderr))
        for handler in self._handlers:
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
        logging.captureWarnings(True)
        if self.verbose:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        self._out = os.fdopen(os.dup(self._saved[0]), "w", buffering=1)
        self._err = os.fdopen(os.dup(self._saved[1]), "w", buffering=1)
        log_fd = os.open(self.log, os.O_WRONLY | os.O_APPEND)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        self._python_streams = (sys.stdout, sys.stderr)  # replaced streams (a test's capture) write elsewhere
        sys.stdout = sys.stderr = open(self.log, "a", buffering=1)  # closed in __exit__
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        logging.captureWarnings(False)
        for handler in self._handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
        if self._saved is None:
            return
        sys.stdout.close()
        sys.stdout, sys.stderr = self._python_streams
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._out.close()
        self._err.close()
        self._saved = None

    def say(self, line: str = "") -> None:
        print(line, file=self._out, flush=True)

    def error(self, line: str) -> None:
        print(line, file=self._err, flush=True)

    def tee(self, text: str) -> None:
        """Text for the log (a child's output); on the terminal too when verbose."""
        with self.log.open("a") as handle:
            handle.write(text)
        if self.verbose:
            self._out.write(text)
            self._out.flush()

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.1f} s"

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """``  label ... 6.1 s`` on one line (the time once the step is done; ``failed`` when it raised)."""
        started = time.monotonic()
        print(f"  {label} ...", end="" if not self.verbose else "\n", file=self._out, flush=True)
        try:
            yield
        except BaseException:
            self.say(" failed")
            raise
        self.say(f"{'  ' + label + ' ...' if self.verbose else ''} {time.monotonic() - started:.1f} s")
