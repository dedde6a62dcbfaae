#!/usr/bin/env python3
"""Synth time of the lmi-deploy app next to a bare CDK app with the same five SageMaker resources.

``python benchmarks/synth_time.py [--runs 3]`` runs ``cdk synth -q`` on each, alternating, and prints the median
seconds and their ratio (absolute times on shared machines are noisy; the ratio is the figure to compare). Also
times the failing path: ``-c tensor_parallel_degree=8`` must stop in well under 15 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"


def timed_synth(*args: str) -> tuple[float, int]:
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_CLI_TELEMETRY": "true"}
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = subprocess.run(
            [str(CDK), "synth", "-q", "--output", out, *args], cwd=ROOT, env=env, capture_output=True, check=False
        )
        return time.perf_counter() - started, result.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    bare_app = f"{sys.executable} {ROOT / 'benchmarks' / 'bare_app.py'}"
    ours, bare, failing = [], [], []
    for _ in range(args.runs):
        seconds, code = timed_synth()
        assert code == 0, "lmi-deploy synth failed"
        ours.append(seconds)
        seconds, code = timed_synth("--app", bare_app)
        assert code == 0, "bare app synth failed"
        bare.append(seconds)
        seconds, code = timed_synth("-c", "tensor_parallel_degree=8")
        assert code != 0, "an invalid TP must fail"
        failing.append(seconds)
    ours_median, bare_median, failing_median = (statistics.median(x) for x in (ours, bare, failing))
    print(f"runs: {args.runs} each, alternating; median seconds of `cdk synth -q`")
    print(f"  lmi-deploy app (2 stacks, render, cdk-nag):   {ours_median:6.2f} s")
    print(f"  bare app (same 5 SageMaker resources):        {bare_median:6.2f} s")
    print(f"  ratio lmi-deploy / bare:                      {ours_median / bare_median:6.2f}x")
    ratio = failing_median / bare_median
    print(f"  invalid -c tensor_parallel_degree=8 fails in: {failing_median:6.2f} s ({ratio:.2f}x bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
