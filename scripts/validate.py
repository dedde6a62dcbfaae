#!/usr/bin/env python3
"""Check a deployment before paying for it, or lint a serving.properties you already have.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/validate.py.
"""

from lmi_deploy.commands.validate import main

if __name__ == "__main__":
    raise SystemExit(main())
