#!/usr/bin/env python3
"""Benchmark an endpoint (deployed or local): latency percentiles and throughput over a sweep of concurrencies.

    python scripts/benchmark.py (--url http://127.0.0.1:8080 | --endpoint NAME | [--config FILE] [-c k=v])
        [--target-model NAME | --inference-component NAME] [--requests 100] [--concurrency 1,2,4,8,16]
        [--preset seed|single] [--param key=value ...] [--out-dir DIR]

Prints p50/p90/p99 latency, requests/s, generated tokens/s (as the response's ``generated_tokens`` reports
them, which lmi-deploy's handlers do; else whitespace-separated words of the outputs) and errors per concurrency,
and writes ``benchmark.csv`` and ``benchmark.png``. The ``seed`` preset sends the seed's request: four different
task types in one batch (p99 is the seed's figure).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lmi_deploy.client import Client, EndpointError, parse_params, payload
from lmi_deploy.commands.invoke import add_target_arguments, client_from
from lmi_deploy.errors import ConfigError

PRESETS = {
    # The seed's benchmark: translation, summarization, question answering and sentiment in one request.
    "seed": [
        "translate English to German: The house is wonderful and the garden is big.",
        "summarize: The quick brown fox jumps over the lazy dog. It then runs into the forest and is not seen again.",
        "question: What is the capital of France? context: Paris is the capital and largest city of France.",
        "review: This movie was great, I loved every minute of it. Is this review positive or negative?",
    ],
    "single": ["translate English to German: How old are you?"],
}
FIELDS = ["concurrency", "requests", "errors", "p50_ms", "p90_ms", "p99_ms", "requests_per_s", "tokens_per_s"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def generated_tokens(answer: Any) -> int:
    """Tokens the endpoint says it generated (lmi-deploy handlers report them), else words of the outputs."""
    if isinstance(answer, dict) and isinstance(answer.get("generated_tokens"), list):
        return sum(int(n) for n in answer["generated_tokens"])
    outputs = answer.get("outputs", []) if isinstance(answer, dict) else [answer]
    return sum(len(str(o).split()) for o in (outputs if isinstance(outputs, list) else [outputs]))


def run_level(client: Client, body: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    def one(_: int) -> tuple[float, int, bool]:
        started = time.perf_counter()
        try:
            answer = client.invoke(body)
        except (EndpointError, OSError):
            return time.perf_counter() - started, 0, False
        return time.perf_counter() - started, generated_tokens(answer), True

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - started
    latencies = [seconds * 1000 for seconds, _, ok in results if ok]
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": sum(1 for _, _, ok in results if not ok),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "tokens_per_s": round(sum(n for _, n, _ in results) / elapsed, 2),
    }


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["concurrency"] for r in rows]
    figure, left = plt.subplots(figsize=(7, 4))
    for key, style in (("p50_ms", "o-"), ("p90_ms", "s--"), ("p99_ms", "^-")):
        left.plot(x, [r[key] for r in rows], style, label=key.removesuffix("_ms"))
    left.set_xlabel("concurrency")
    left.set_ylabel("latency (ms)")
    left.set_xscale("log", base=2)
    right = left.twinx()
    right.plot(x, [r["requests_per_s"] for r in rows], "k:", label="requests/s")
    right.set_ylabel("requests/s")
    left.legend(loc="upper left")
    right.legend(loc="upper right")
    left.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: Sequence[str] | None = None, *, runtime: Any = None) -> int:
    """Run the sweep, print the table, write CSV and PNG; exit 2 on bad arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_target_arguments(parser)
    parser.add_argument("--requests", type=int, default=100, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,2,4,8,16", help="comma-separated levels")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="seed")
    parser.add_argument("--param", action="append", default=[], help="generation parameter KEY=VALUE")
    parser.add_argument("--out-dir", default="benchmarks/results", help="where benchmark.csv/png go")
    args = parser.parse_args(argv)
    try:
        client = client_from(args, runtime)
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
        parameters = {"max_new_tokens": 64, **parse_params(args.param)}
    except (ConfigError, ValueError) as error:
        print(f"lmi-deploy: {error}", file=sys.stderr)
        return 2
    body = payload(PRESETS[args.preset], parameters)
    rows = [run_level(client, body, args.requests, level) for level in levels]
    target = args.url or args.endpoint or "the deployment's endpoint"
    if args.target_model or args.inference_component:
        target += f" (model {args.target_model or args.inference_component})"
    print(f"{args.requests} requests per level to {target}, preset {args.preset} ({len(PRESETS[args.preset])} inputs)")
    print("  " + "  ".join(f"{f:>14s}" for f in FIELDS))
    for row in rows:
        print("  " + "  ".join(f"{row[f]!s:>14s}" for f in FIELDS))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "benchmark.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "benchmark.png", f"{target} ({args.preset})")
    print(f"wrote {out / 'benchmark.csv'} and {out / 'benchmark.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
