#!/usr/bin/env python3
"""Staging throughput: our stager vs s5cmd vs ``aws s3 cp --recursive``, against a local S3 server, in one run.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/bench_staging.py.
"""

from lmi_deploy.commands.bench_staging import main

if __name__ == "__main__":
    raise SystemExit(main())
