#!/usr/bin/env python3
"""Run a release's real djl_python beside lmi-deploy's runtime and print every difference (maintainers only).

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/check_parity.py.
"""

from lmi_deploy.commands.check_parity import main

if __name__ == "__main__":
    raise SystemExit(main())
