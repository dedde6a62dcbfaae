#!/usr/bin/env python3
"""The cheapest instance, engine and TP degree that meet a latency or throughput target, estimated offline.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/recommend.py.
"""

from lmi_deploy.commands.recommend import main

if __name__ == "__main__":
    raise SystemExit(main())
