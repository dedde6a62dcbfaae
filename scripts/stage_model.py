#!/usr/bin/env python3
"""Stage a model's weights in the artifacts bucket: resumable, verified, with a manifest.

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/stage_model.py.
"""

from lmi_deploy.commands.stage_model import main

if __name__ == "__main__":
    raise SystemExit(main())
