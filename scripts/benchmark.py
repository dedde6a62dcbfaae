#!/usr/bin/env python3
"""Benchmark an endpoint (deployed or local): latency percentiles and throughput over a sweep of concurrencies.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/benchmark.py.
"""

from lmi_deploy.commands.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
