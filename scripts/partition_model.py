#!/usr/bin/env python3
"""Partition a deployment's staged weights ahead of time, as a SageMaker Processing job on the same LMI image.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/partition_model.py.
"""

from lmi_deploy.commands.partition_model import main

if __name__ == "__main__":
    raise SystemExit(main())
