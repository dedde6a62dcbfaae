#!/usr/bin/env python3
"""Measure scripts/validate.py on the public corpus of real serving.properties (tests/corpus/manifest.yaml).

A thin wrapper kept for the paths the Makefile, CI and docs use: the code is lmi_deploy/commands/eval_corpus.py.
"""

from lmi_deploy.commands.eval_corpus import main

if __name__ == "__main__":
    raise SystemExit(main())
