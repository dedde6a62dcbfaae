"""The ``lmi-deploy`` command: one entry point whose subcommands are the ``main(argv)`` of lmi_deploy/commands/.

``lmi-deploy SUBCOMMAND [options]`` runs ``lmi_deploy/commands/<module>.py``'s ``main`` with the remaining arguments;
``scripts/<module>.py`` is a wrapper around the same ``main``, so ``lmi-deploy validate -c dtype=bf16`` and
``python scripts/validate.py -c dtype=bf16`` are the same program (the Makefile and CI keep calling the scripts).
Modules are imported only when their subcommand runs: ``--help`` answers at once, without loading torch or boto3.
Adding a subcommand is a module in lmi_deploy/commands/ and one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

PROG = "lmi-deploy"


@dataclass(frozen=True)
class Command:
    name: str  # a module of lmi_deploy/commands/ (or a dotted module) with main(argv: Sequence[str] | None) -> int
    summary: str  # one line for `lmi-deploy --help`

    @property
    def module(self) -> str:
        return self.name if "." in self.name else f"lmi_deploy.commands.{self.name}"


COMMANDS: dict[str, Command] = {
    "validate": Command("validate", "check a deployment, or an existing serving.properties, before paying"),
    "render": Command("render", "write model_code/<deployment>/ (serving.properties, model.py, tarball)"),
    "import": Command("import_properties", "turn an existing serving.properties into a deployment file"),
    "cost": Command("cost", "what the deployment's instances cost an hour and a month"),
    "recommend": Command("recommend", "the cheapest instance, engine and TP that meet a latency target"),
    "stage": Command("stage_model", "upload the weights to the artifacts bucket: resumable, verified"),
    "partition": Command("partition_model", "partition staged weights ahead of time (a Processing job)"),
    "serve": Command("scripts.serve_local", "serve the rendered handler locally over the SageMaker contract"),
    "invoke": Command("invoke", "send a request to an endpoint or a local URL and print the answer"),
    "bench": Command("benchmark", "latency and throughput of an endpoint over a sweep of concurrencies"),
    "deploy-local": Command("deploy_local", "deploy into a local AWS emulator, then a demo (`make local`)"),
    "emulator": Command("local_aws", "run the local AWS emulator in the foreground"),
    "bench-staging": Command("bench_staging", "staging throughput vs aws s3 cp, against a local S3"),
    "check-parity": Command("check_parity", "compare the local runtime with a release's djl_python"),
    "eval-corpus": Command("eval_corpus", "measure validate on the corpus of real serving.properties"),
}


def _usage() -> str:
    width = max(len(name) for name in [*COMMANDS, "completion"])
    lines = [
        f"usage: {PROG} COMMAND [options]   ({PROG} COMMAND --help for its options)",
        "",
        "Put LLMs on SageMaker LMI endpoints: validated config, rendered model code, CDK stacks.",
        "Deployment inputs are the same everywhere: --config FILE and -c KEY=VALUE (repeatable).",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines.append(f"  {'completion':<{width}}  print a bash completion script: {PROG} completion bash")
    return "\n".join(lines)


@contextmanager
def _prog(name: str) -> Iterator[None]:
    """argparse names the program after sys.argv[0]: make the subcommand's help say ``lmi-deploy NAME``."""
    saved = sys.argv[0] if sys.argv else ""
    if sys.argv:
        sys.argv[0] = f"{PROG} {name}"
    else:
        sys.argv.append(f"{PROG} {name}")
    try:
        yield
    finally:
        sys.argv[0] = saved


def command_main(name: str) -> Callable[[Sequence[str]], int]:
    return cast(Callable[[Sequence[str]], int], importlib.import_module(COMMANDS[name].module).main)


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser a subcommand builds, caught at its ``parse_args`` before anything runs (for completion)."""
    original = argparse.ArgumentParser.parse_args

    def catch(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Parsed(self)

    argparse.ArgumentParser.parse_args = catch  # type: ignore[method-assign]
    try:
        with _prog(name):
            command_main(name)([])
    except _Parsed as parsed:
        return parsed.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise RuntimeError(f"{COMMANDS[name].module}.main returned without parsing its arguments")


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for action in parser._actions for o in action.option_strings if o.startswith("--"))


def bash_completion() -> str:
    """A bash completion script: subcommands, then each one's options; files where a value is expected."""
    cases = "\n".join(
        f'        {name}) opts="{" ".join(option_strings(command_parser(name)))}" ;;' for name in COMMANDS
    )
    return f"""# bash completion for {PROG}: eval "$({PROG} completion bash)", or save it as
# ~/.local/share/bash-completion/completions/{PROG} (zsh: autoload -U bashcompinit && bashcompinit first)
_lmi_deploy() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" opts=""
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "{" ".join([*COMMANDS, "completion"])} --help" -- "$cur"))
        return
    fi
    case "${{COMP_WORDS[1]}}" in
{cases}
        completion) COMPREPLY=($(compgen -W "bash" -- "$cur")); return ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
    fi
}}
complete -o default -F _lmi_deploy {PROG}
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; exit with its status (2 for an unknown one, with the list)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name == "completion":
        if rest != ["bash"]:
            print(f"{PROG}: usage: {PROG} completion bash", file=sys.stderr)
            return 2
        print(bash_completion(), end="")
        return 0
    if name not in COMMANDS:
        print(f"{PROG}: unknown command {name!r}; one of: {', '.join(COMMANDS)} ({PROG} --help)", file=sys.stderr)
        return 2
    with _prog(name):
        try:
            return command_main(name)(rest)
        except SystemExit as exit_:  # argparse's --help and usage errors
            return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)


def entry_point() -> None:
    sys.exit(main())
