#!/usr/bin/env python3
"""A local AWS emulator: moto in server mode on 127.0.0.1, taught the LMI instance types.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/local_aws.py.
"""

from lmi_deploy.commands.local_aws import main

if __name__ == "__main__":
    raise SystemExit(main())
