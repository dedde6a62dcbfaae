#!/usr/bin/env python3
"""Staging throughput: our stager vs s5cmd vs ``aws s3 cp --recursive``, against a local S3 server, in one run.

    python scripts/bench_staging.py [--shards 4] [--shard-mib 256] [--rounds 2]

Generates the shards once, starts a local S3 server in its own process (lmi-deploy's emulator, ``lmi-deploy
emulator``: moto with full-object checksums computed part by part, as S3 does; ``--stock-moto``: moto as it is,
which copies each multipart object twice more in memory to checksum it), then uploads the same folder with
each tool in turns, each round to a fresh prefix, and prints MiB/s (best of the rounds) and the ratios. It also
measures the server's own ceiling (parallel in-memory PUTs, no files, no hashing): local S3 servers saturate one core,
so no client can go faster than that here. Our figure includes checksumming every byte (CRC64NVME with the AWS CRT,
which S3 then checks); the checksum alone is measured too (GB/s over the same files, from the page cache, in the
stager's threads), so what bounds the stager on a fast network shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lmi_deploy import staging

BUCKET = "bench"
MiB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} is not installed: pip install -r requirements-dev.txt")
    return found


def make_shards(folder: Path, shards: int, shard_mib: int) -> int:
    (folder / "config.json").write_text('{"model_type": "llama"}')
    block = os.urandom(MiB)
    for i in range(shards):
        with (folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors").open("wb") as handle:
            for j in range(shard_mib):
                handle.write(block[j % 256 :] + block[: j % 256])  # distinct blocks, cheap to make
    return sum(p.stat().st_size for p in folder.iterdir())


def server_ceiling(s3: Any, total: int, concurrency: int = 16) -> float:
    """MiB/s of parallel in-memory PUTs of 16 MiB objects: what the server itself can take."""
    body = os.urandom(16 * MiB)
    count = max(4, total // len(body))
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=f"ceiling/{i}", Body=body), range(count)))
    return count * len(body) / MiB / (time.perf_counter() - started)


def checksum_rate(folder: Path, rounds: int) -> float:
    """GB/s of the stager's own checksumming of every file in ``folder`` (best of ``rounds``), nothing uploaded."""
    files = [p for p in folder.iterdir() if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    best = 0.0
    for _ in range(max(1, rounds)):
        started = time.perf_counter()
        with ThreadPoolExecutor(staging.HASH_THREADS) as pool:
            list(pool.map(lambda p: staging.hash_file(p, p.name), files))
        best = max(best, total / 1e9 / (time.perf_counter() - started))
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--stock-moto", action="store_true", help="serve with moto as it is instead of lmi-deploy's emulator"
    )
    args = parser.parse_args(argv)

    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    server = _start_server(port, args.stock_moto, env)
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for _ in range(100):
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="bench-staging-") as tmp:
            folder = Path(tmp)
            total = make_shards(folder, args.shards, args.shard_mib)
            best = _race(_tools(s3, folder, endpoint, env), total, args.rounds)
            ceiling = server_ceiling(s3, total)
            checksum = checksum_rate(folder, args.rounds)
    finally:
        server.terminate()
        server.wait(timeout=10)
    server_name = "moto as it is" if args.stock_moto else "lmi-deploy's emulator"
    print(
        f"{args.shards} x {args.shard_mib} MiB ({total / MiB:.0f} MiB), local S3 server ({server_name}), "
        f"best of {args.rounds}"
    )
    print(f"  {'server ceiling (in-memory PUTs)':34s} {ceiling:8.1f} MiB/s")
    cores = f"{staging.HASH_THREADS} threads on {os.cpu_count()} cores"
    print(f"  {'CRC64NVME checksum alone':34s} {checksum:8.2f} GB/s   ({cores}, files in the page cache)")
    for name, rate in best.items():
        print(
            f"  {name:34s} {rate:8.1f} MiB/s   {rate / best['s5cmd']:.2f}x s5cmd   "
            f"{rate / best['aws s3 cp --recursive']:.2f}x aws cli   {rate / ceiling:.2f}x ceiling"
        )
    return 0


def _start_server(port: int, stock_moto: bool, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """lmi-deploy's emulator (or moto as it is) in its own process, with this Python (its AWS CRT)."""
    serve = ["moto.server", "-H", "127.0.0.1", "-p"] if stock_moto else ["lmi_deploy.commands.local_aws", "--port"]
    return subprocess.Popen(
        [sys.executable, "-m", *serve, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


def _tools(s3: Any, folder: Path, endpoint: str, env: dict[str, str]) -> dict[str, Callable[[str], None]]:
    """Each tool as a function that uploads the folder under a prefix."""
    return {
        "lmi-deploy stager": lambda prefix: _ours(s3, folder, prefix),
        "s5cmd": lambda prefix: _run(
            [_bin("s5cmd"), "--endpoint-url", endpoint, "cp", f"{folder}/*", f"s3://{BUCKET}/{prefix}"], env
        ),
        "aws s3 cp --recursive": lambda prefix: _run(
            [_bin("aws"), "s3", "cp", str(folder), f"s3://{BUCKET}/{prefix}", "--recursive", "--quiet", *_at(endpoint)],
            env,
        ),
    }


def _at(endpoint: str) -> list[str]:
    return ["--endpoint-url", endpoint]


def _race(tools: dict[str, Callable[[str], None]], total: int, rounds: int) -> dict[str, float]:
    """Each tool's best MiB/s over the rounds, run in turns so drift hits every tool alike."""
    best: dict[str, float] = {}
    for round_ in range(rounds):
        for name, run in tools.items():
            started = time.perf_counter()
            run(f"{name.split()[0]}-{round_}/")
            rate = total / MiB / (time.perf_counter() - started)
            best[name] = max(best.get(name, 0.0), rate)
    return best


def _ours(s3: Any, folder: Path, prefix: str) -> None:
    staging.stage(s3, folder, BUCKET, prefix, show_progress=False)


def _run(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
