"""The quiet console: our lines on the terminal; what libraries, loggers, warnings and children print, in the log."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from lmi_deploy.console import Console


def noise() -> None:
    print("a library's print")
    warnings.warn("a library's UserWarning", UserWarning, stacklevel=1)
    logging.getLogger("moto").warning("No Moto CloudFormation support for AWS::CloudWatch::Alarm")
    os.write(2, b"a C extension's stderr\n")
    subprocess.run([sys.executable, "-c", "print('a child process')"], check=True)


@pytest.mark.parametrize("verbose", [False, True])
def test_quiet_console_sends_everything_else_to_the_log(
    verbose: bool, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "run.log"
    with Console(log, verbose=verbose) as console:
        with console.step("cdk bootstrap"):
            noise()
        console.say("deployed")
    out, err = capfd.readouterr()
    kept = log.read_text()
    for text in ("a library's print", "UserWarning", "No Moto", "a C extension's stderr", "a child process"):
        assert (text in out + err) is verbose, text  # on the terminal only with -v
        if text not in ("a library's print", "a C extension's stderr", "a child process") or not verbose:
            assert text in kept, text  # and always in the log (prints and children: when not shown)
    if not verbose:
        assert out.splitlines()[0].startswith("  cdk bootstrap ... ") and out.splitlines()[0].endswith(" s")
        assert out.splitlines()[1:] == ["deployed"] and err == ""
    assert "deployed" in out
