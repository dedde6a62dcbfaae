#!/usr/bin/env python3
"""The whole deploy flow without an AWS account: emulator, ``cdk bootstrap``, ``cdk deploy --all``, read-back.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/deploy_local.py.
"""

from lmi_deploy.commands.deploy_local import main

if __name__ == "__main__":
    raise SystemExit(main())
