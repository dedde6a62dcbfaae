#!/usr/bin/env python3
"""Render a deployment's model code without synthesizing: ``python scripts/render.py [--config FILE] [-c k=v ...]``.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/render.py.
"""

from lmi_deploy.commands.render import main

if __name__ == "__main__":
    raise SystemExit(main())
