"""The ``lmi-deploy`` command: every subcommand reachable, one help line each, shared inputs, JSON, completion."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lmi_deploy import command_line
from lmi_deploy.command_line import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_every_command_on_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^  (\S+)\s{2,}\S", out, flags=re.MULTILINE)
    assert listed == [*COMMANDS, "completion"]
    for name in ("validate", "render", "import", "stage", "partition", "serve", "invoke", "bench", "deploy-local"):
        assert name in listed
    assert main([]) == 2  # no command: the same list, as a usage error


def test_every_subcommand_is_a_script_main_taking_the_shared_config_inputs() -> None:
    for name in COMMANDS:
        parser = command_line.command_parser(name)
        assert parser.prog == f"lmi-deploy {name}", name
        options = command_line.option_strings(parser)
        if name in ("validate", "render", "cost", "stage", "partition", "serve", "invoke", "bench", "deploy-local"):
            assert {"--config", "--context"} <= set(options), name
            assert "-c" in {o for a in parser._actions for o in a.option_strings}, name


def test_the_installed_entry_point_and_the_script_agree() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lmi-deploy"] == "lmi_deploy.command_line:entry_point"
    installed = shutil.which("lmi-deploy", path=str(Path(sys.executable).parent))
    assert installed, "lmi-deploy is not installed in the venv: run `make setup`"
    result = subprocess.run([installed, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "deploy-local" in result.stdout


def test_validate_through_the_command_is_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-c", "tensor_parallel_degree=8", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["errors"][0]["rule"] == "LMI302"
    assert main(["validate", "--config", str(ROOT / "deployments" / "llama-2-7b-vllm.yaml")]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("ok")


def test_render_and_cost_print_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--json", "--out", str(tmp_path)]) == 0
    rendered = json.loads(capsys.readouterr().out)
    assert Path(rendered["tarball"]).is_file() and all(Path(f).is_file() for f in rendered["files"])
    assert main(["cost", "--json", "--config", str(ROOT / "deployments" / "llama-2-7b-vllm.yaml")]) == 0
    cost = json.loads(capsys.readouterr().out)
    assert (cost["instance_type"], cost["min_instances"], cost["max_instances"]) == ("ml.g5.2xlarge", 1, 3)
    assert cost["max_monthly_usd"] == pytest.approx(3 * cost["hourly_usd"] * 730, abs=0.01)


def test_unknown_command_and_bad_options_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown command 'deploy'" in err and "deploy-local" in err
    assert main(["cost", "--no-such-option"]) == 2
    assert "lmi-deploy cost: error: unrecognized arguments: --no-such-option" in capsys.readouterr().err
    assert main(["cost", "-c", "instance_type=ml.x9.huge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "instance_type='ml.x9.huge'" in err


def test_bash_completion_completes_commands_and_their_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")

    def complete(*words: str) -> list[str]:
        line = " ".join(["lmi-deploy", *words])
        probe = (
            f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; _lmi_deploy; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
        result = subprocess.run([bash, "-c", probe], capture_output=True, text=True, check=True)
        return result.stdout.split()

    assert complete("dep") == ["deploy-local"]
    assert "--no-demo" in complete("deploy-local", "--")
    assert complete("stage", "--dry") == ["--dry-run"]
    assert complete("completion", "") == ["bash"]
