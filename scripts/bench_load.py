"""What scripts/bench_handler.py measures about loading: disk-cold loads against the disk's own read bandwidth, and
startup in a fresh process with the staged compile cache against startup without it.

The page cache is dropped with ``/proc/sys/vm/drop_caches`` where this process may write it (root, outside a
sandbox), else each file is evicted with ``posix_fadvise(DONTNEED)``; which one worked is reported, and a "disk" read
faster than any disk (the eviction did nothing) is flagged rather than reported as a disk's bandwidth.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 64 << 20
_NO_DISK_IS_THIS_FAST = 30e9  # bytes/s: beyond any local NVMe array of these instances; the page cache answered
_COMPILER_CACHES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


@contextlib.contextmanager
def scratch_folder(given: Path | None, prefix: str) -> Iterator[Path]:
    """``given`` (created if missing, kept), else a new temporary folder removed on the way out, however the run
    ends: a benchmark's checkpoints are tens of GB, and a run cut short must not leave them behind."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def cold_compiler_caches() -> Iterator[None]:
    """Empty TorchInductor and Triton caches for what runs inside (nothing compiled before counts), unless the caller
    chose their folders; the folders and the variables are gone afterwards."""
    chosen = [name for name in _COMPILER_CACHES if name not in os.environ]
    with scratch_folder(None, "bench-caches-") as scratch:
        os.environ.update({name: str(scratch / name.lower()) for name in chosen})
        try:
            yield
        finally:
            for name in chosen:
                os.environ.pop(name, None)


def drop_page_cache(files: list[Path], system: bool = True) -> str:
    """Evict ``files`` from the page cache (``system``: the whole cache, where permitted); how it was done
    (``drop_caches``, ``fadvise``, or ``none``)."""
    os.sync()
    if system:
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            return "drop_caches"
        except OSError:
            pass
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return "none"
    for path in files:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            advise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)
    return "fadvise"


def read_bandwidth(files: list[Path]) -> float:
    """Bytes per second of one sequential read of ``files`` (64 MiB at a time, into one reused buffer)."""
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    total = 0
    started = time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as handle:
            while count := handle.readinto(view):
                total += count
    return total / (time.perf_counter() - started)


def disk_cold(files: list[Path], load: Any, release: Any, system: bool = True) -> dict[str, Any]:
    """The disk's sequential read bandwidth (first shard), then ``load()`` timed with every file evicted
    (then ``release()`` frees what it loaded, untimed)."""
    size = sum(path.stat().st_size for path in files)
    method = drop_page_cache(files[:1], system)
    disk = read_bandwidth(files[:1])
    drop_page_cache(files, system)
    started = time.perf_counter()
    loaded = load()
    took = time.perf_counter() - started
    del loaded
    release()
    result = {
        "evicted_by": method,
        "disk_read_gb_s": round(disk / 1e9, 2),
        "load_s": round(took, 2),
        "load_gb_s": round(size / took / 1e9, 2),
        "load_vs_disk": round(size / took / disk, 2),
    }
    if disk > _NO_DISK_IS_THIS_FAST:
        result["warning"] = f"read at {disk / 1e9:.0f} GB/s: the page cache answered ({method}); not a disk figure"
    return result


def startup_in_fresh_process(script: Path, argv: list[str], out: Path) -> dict[str, Any]:
    """Run ``script --startup-only`` in a new process with empty compiler caches; what it reports."""
    command = [sys.executable, str(script), *argv, "--startup-only", str(out)]
    started = time.perf_counter()
    with scratch_folder(None, "bench-startup-") as scratch:
        environment = {**os.environ, **{name: str(scratch / name.lower()) for name in _COMPILER_CACHES}}
        result = subprocess.run(command, env=environment, check=False, capture_output=True, text=True)
    if result.returncode != 0 or not out.exists():
        tail = (result.stderr or result.stdout)[-2000:]
        return {"error": f"exit {result.returncode}", "log_tail": tail}
    report: dict[str, Any] = json.loads(out.read_text())
    report["process_s"] = round(time.perf_counter() - started, 1)
    return report
