#!/usr/bin/env python3
"""Turn an existing serving.properties into a deployment file that renders back to an equivalent one.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/import_properties.py.
"""

from lmi_deploy.commands.import_properties import main

if __name__ == "__main__":
    raise SystemExit(main())
