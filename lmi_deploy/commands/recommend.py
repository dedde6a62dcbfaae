#!/usr/bin/env python3
"""The cheapest instance, engine and TP degree that meet a latency or throughput target, estimated offline.

    lmi-deploy recommend --model MODEL_ID [--model-config FILE] [--p50-ms N | --tokens-per-s N]
        [--input-tokens N] [--output-tokens N] [--concurrency N] [--region R] [--max-price-per-hour N]
        [--top N] [--json] [--write-config FILE]

Exit 0 with the ranked options; 1 when none fits or meets the target (the closest miss is named); 2 on bad input.
How each number is estimated: docs/recommend.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from lmi_deploy import containers
from lmi_deploy.errors import ConfigError
from lmi_deploy.recommend import Ask, recommend
from lmi_deploy.recommend_report import as_json, nothing_found, text, write_config


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one-line ConfigErrors (not usage text and exit 2 from inside parse_args)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def _positive(kind: type[int] | type[float], most: float) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not 0 < value <= most:
            raise argparse.ArgumentTypeError(f"{text} must be above 0 and at most {most:g}")
        return value

    return parse


def parser() -> _Parser:
    p = _Parser(prog="lmi-deploy recommend", description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", dest="model_id", required=True, metavar="MODEL_ID", help="Hub id (or local folder) of the model"
    )
    p.add_argument("--model-config", metavar="FILE", help="its config.json (or folder), when not bundled or local")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--p50-ms", type=_positive(float, 3.6e6), help="p50 request latency target, ms")
    target.add_argument("--tokens-per-s", type=_positive(float, 1e9), help="generated tokens/s target, whole instance")
    p.add_argument("--input-tokens", type=_positive(int, 2**20), default=512, help="prompt tokens (default 512)")
    p.add_argument("--output-tokens", type=_positive(int, 2**20), default=128, help="generated tokens (default 128)")
    p.add_argument("--concurrency", type=_positive(int, 1024), default=1, help="requests in flight (default 1)")
    p.add_argument("--region", default="us-east-1", help="where the image must exist (default us-east-1)")
    p.add_argument("--max-price-per-hour", type=_positive(float, 1e6), help="leave out instances above this, USD")
    p.add_argument("--top", type=_positive(int, 1000), default=5, help="options to show (default 5)")
    p.add_argument("--json", action="store_true", help="machine-readable output, every option left out included")
    p.add_argument("--write-config", metavar="FILE", help="write the best option as a deployment file")
    return p


def known_regions() -> set[str]:
    return {r for e in containers.Engine for r in containers.regions(e, containers.versions(e)[-1])}


def ask_from(argv: Sequence[str] | None) -> tuple[Ask, argparse.Namespace]:
    args = parser().parse_args(argv)
    if args.region not in known_regions():
        raise ConfigError(
            f"--region {args.region!r} hosts no LMI image; use one of {', '.join(sorted(known_regions()))}"
        )
    values = {field.name: getattr(args, field.name) for field in fields(Ask)}
    ask = Ask(**{**values, "model_config": str(Path(args.model_config).resolve()) if args.model_config else None})
    return ask, args


def main(argv: Sequence[str] | None = None) -> int:
    """Print the ranked options (or why there are none); exit 1 when none, 2 on bad input."""
    try:
        ask, args = ask_from(argv)
        result = recommend(ask)
        if args.write_config and result.options:
            write_config(Path(args.write_config), result.options[0], result)
    except ConfigError as error:
        print(f"lmi-deploy recommend: {error}", file=sys.stderr)
        return 2
    missing = nothing_found(result)
    print(json.dumps(as_json(result), indent=2) if args.json else text(result))
    if missing:
        print(f"lmi-deploy recommend: {missing}", file=sys.stderr)
        return 1
    if args.write_config:
        print(f"wrote {args.write_config}: check it with lmi-deploy validate --config {args.write_config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
