#!/usr/bin/env python3
"""What a deployment's instances cost: ``python scripts/cost.py [--config FILE] [-c key=value ...] [--json]``.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/cost.py.
"""

from lmi_deploy.commands.cost import main

if __name__ == "__main__":
    raise SystemExit(main())
