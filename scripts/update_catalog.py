#!/usr/bin/env python3
"""Regenerate lmi-deploy's key catalog from the djl-serving source (maintainers only; needs no network).

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/update_catalog.py.
"""

from lmi_deploy.commands.update_catalog import main

if __name__ == "__main__":
    raise SystemExit(main())
