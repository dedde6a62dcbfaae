#!/usr/bin/env python3
"""Measure scripts/validate.py on the public corpus of real serving.properties (tests/corpus/manifest.yaml).

    python scripts/eval_corpus.py [--manifest tests/corpus/manifest.yaml] [--json]

Every case runs through ``validate.main`` in-process, exactly as a user would call it (``--serving-properties FILE
--container TAG [--instance-type T] [--model-config config.json] --json``). Prints the share classified right in both
directions (published configs accepted; known-broken configs refused), per engine and per version, every
misclassification with the validator's messages, and the time per file (p50/p95).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lmi_deploy.commands import validate

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "tests" / "corpus" / "manifest.yaml"
MODEL_CONFIGS = ROOT / "lmi_deploy" / "model_configs"


@dataclass(frozen=True)
class Case:
    """One corpus entry: a serving.properties file, what it was published for, and whether it works."""

    name: str
    expect: str  # "pass" or "fail"
    engine: str
    version: str
    container: str
    instance_type: str | None
    model_id: str
    model_config: str | None
    rule: str | None  # fail cases: the concept that should catch it
    rule_id: str | None  # fail cases: the registry id that must be among the errors, once assigned
    reason: str | None
    path: Path


@dataclass(frozen=True)
class Outcome:
    case: Case
    ok: bool  # validate.py accepted the file (no errors)
    errors: tuple[dict[str, str], ...]
    seconds: float

    @property
    def right(self) -> bool:
        if self.case.expect == "pass":
            return self.ok
        if self.ok:
            return False
        return self.case.rule_id is None or any(e.get("rule") == self.case.rule_id for e in self.errors)


def _file_name(entry: dict[str, Any]) -> str:
    """``NAME.properties``; ``NAME/serving.properties`` for an entry whose source ships a model.py beside it."""
    return f"{entry['name']}/serving.properties" if entry.get("model_py") else f"{entry['name']}.properties"


def load_cases(manifest: Path = MANIFEST) -> list[Case]:
    """The manifest's cases, each with the path of its file."""
    data: dict[str, Any] = yaml.safe_load(manifest.read_text())
    folder = manifest.parent
    return [
        Case(
            name=entry["name"],
            expect=entry["expect"],
            engine=entry["engine"],
            version=str(entry["version"]),
            container=str(entry["container"]),
            instance_type=entry.get("instance_type"),
            model_id=entry["model_id"],
            model_config=entry.get("model_config"),
            rule=entry.get("rule"),
            rule_id=entry.get("rule_id"),
            reason=entry.get("reason"),
            path=folder / entry["expect"] / _file_name(entry),
        )
        for entry in data["cases"]
    ]


def validate_argv(case: Case) -> list[str]:
    """The command line a user would type for this case."""
    argv = ["--serving-properties", str(case.path), "--container", case.container, "--json"]
    if case.instance_type:
        argv += ["--instance-type", case.instance_type]
    if case.model_config:
        argv += ["--model-config", str(MODEL_CONFIGS / case.model_config)]
    return argv


def run_case(case: Case) -> Outcome:
    """Run validate.main on one case and read its JSON answer."""
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = validate.main(validate_argv(case))
    seconds = time.perf_counter() - start
    answer = json.loads(out.getvalue())
    errors = tuple(answer["errors"])
    if (code == 0) != (not errors):
        raise RuntimeError(f"{case.name}: exit code {code} disagrees with the JSON answer ({len(errors)} errors)")
    return Outcome(case, not errors, errors, seconds)


def share(outcomes: Sequence[Outcome]) -> str:
    right = sum(o.right for o in outcomes)
    return f"{right}/{len(outcomes)} ({100 * right / len(outcomes):.0f}%)" if outcomes else "-"


def table(outcomes: Sequence[Outcome], key: str) -> list[str]:
    """One line per engine or version: published accepted, broken refused."""
    lines = [f"{'by ' + key:<24} {'published accepted':>20} {'broken refused':>16}"]
    for value in sorted({getattr(o.case, key) for o in outcomes}, key=_sort_key):
        group = [o for o in outcomes if getattr(o.case, key) == value]
        passes = [o for o in group if o.case.expect == "pass"]
        fails = [o for o in group if o.case.expect == "fail"]
        lines.append(f"{value:<24} {share(passes):>20} {share(fails):>16}")
    return lines


def _sort_key(value: str) -> tuple[int, ...] | tuple[str]:
    parts = value.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (value,)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def describe_miss(outcome: Outcome) -> str:
    case = outcome.case
    where = f"{case.name} [{case.engine} {case.container} {case.instance_type or 'no instance'}]"
    if case.expect == "pass":
        messages = "; ".join(f"{e.get('rule')}: {e.get('message')}" for e in outcome.errors)
        return f"refused published {where}\n    {messages}"
    wanted = f" (wanted {case.rule_id})" if case.rule_id and not outcome.ok else ""
    return f"accepted broken {where}{wanted}\n    expected: {case.rule}: {case.reason}"


def report(outcomes: Sequence[Outcome]) -> list[str]:
    passes = [o for o in outcomes if o.case.expect == "pass"]
    fails = [o for o in outcomes if o.case.expect == "fail"]
    times = [o.seconds for o in outcomes]
    lines = [
        f"corpus: {len(passes)} published, {len(fails)} known-broken",
        f"published accepted: {share(passes)}",
        f"broken refused:     {share(fails)}",
        f"overall right:      {share(outcomes)}",
        f"time per file: p50 {percentile(times, 0.5) * 1000:.0f} ms, p95 {percentile(times, 0.95) * 1000:.0f} ms, "
        f"mean {statistics.fmean(times) * 1000:.0f} ms",
        "",
        *table(outcomes, "engine"),
        "",
        *table(outcomes, "version"),
    ]
    misses = [o for o in outcomes if not o.right]
    lines += ["", f"misclassified ({len(misses)}):", *(describe_miss(o) for o in misses)]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the corpus and print the result; exit 0 (this is a measurement, not a gate)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="corpus manifest (YAML)")
    parser.add_argument("--json", action="store_true", help="one JSON object per case instead of the report")
    args = parser.parse_args(argv)
    outcomes = [run_case(case) for case in load_cases(args.manifest)]
    if args.json:
        for o in outcomes:
            print(
                json.dumps(
                    {
                        "name": o.case.name,
                        "expect": o.case.expect,
                        "ok": o.ok,
                        "right": o.right,
                        "errors": list(o.errors),
                        "seconds": round(o.seconds, 4),
                    }
                )
            )
    else:
        print("\n".join(report(outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
