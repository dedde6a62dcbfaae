#!/usr/bin/env python3
"""Send the seed's request to a deployed endpoint or a local URL and print the answer.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/invoke.py.
"""

from lmi_deploy.commands.invoke import main

if __name__ == "__main__":
    raise SystemExit(main())
