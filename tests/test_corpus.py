"""The public corpus (tests/corpus/): published serving.properties must validate, known-broken ones must fail.

Each case runs through scripts/validate.py's ``main`` as a user would call it. ``KNOWN_MISSES`` lists the cases the
validator classifies wrong today, each with its root cause; a listed case is an expected failure, an unlisted miss
fails the suite, and a listed case that becomes right fails the suite too until it is taken off the list. The list is
meant to shrink to zero: fix the rule, never the case.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmi_deploy.commands import eval_corpus
from lmi_deploy.commands.eval_corpus import Case, load_cases, run_case

KNOWN_MISSES: dict[str, str] = {
    # known-broken configurations that pass
}

CASES = load_cases()
CORPUS = Path(eval_corpus.MANIFEST).parent


def test_manifest_describes_every_file_with_its_source() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    listed = {case.path for case in CASES}
    on_disk = set(CORPUS.glob("*/*.properties")) | set(CORPUS.glob("*/*/serving.properties"))
    assert listed == on_disk, f"unlisted: {sorted(on_disk - listed)}; missing: {sorted(listed - on_disk)}"
    published = [case for case in CASES if case.expect == "pass"]
    broken = [case for case in CASES if case.expect == "fail"]
    assert len(published) >= 60 and len(broken) >= 20
    for case in CASES:
        assert case.expect in ("pass", "fail") and re.match(r"^0\.\d+\.\d+$", case.version), case.name
        assert case.container.startswith(case.version), case.name
        if case.model_config:
            assert (eval_corpus.MODEL_CONFIGS / case.model_config).exists(), case.name
    for case in broken:
        assert case.rule and case.reason, f"{case.name}: a known-broken case names its rule and reason"
    assert set(KNOWN_MISSES) <= set(names), f"stale KNOWN_MISSES: {sorted(set(KNOWN_MISSES) - set(names))}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_validator_classifies_case(case: Case) -> None:
    outcome = run_case(case)
    if outcome.right:
        assert case.name not in KNOWN_MISSES, f"{case.name} is now classified right: take it off KNOWN_MISSES"
        return
    if case.name in KNOWN_MISSES:
        pytest.xfail(KNOWN_MISSES[case.name])
    pytest.fail(eval_corpus.describe_miss(outcome))


def test_eval_report_counts_both_directions_and_lists_each_miss(capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_corpus.main([]) == 0
    out = capsys.readouterr().out
    published = sum(case.expect == "pass" for case in CASES)
    broken = len(CASES) - published
    assert f"corpus: {published} published, {broken} known-broken" in out
    missed_published = sum(KNOWN_MISSES.get(c.name) is not None and c.expect == "pass" for c in CASES)
    missed_broken = sum(KNOWN_MISSES.get(c.name) is not None and c.expect == "fail" for c in CASES)
    assert f"published accepted: {published - missed_published}/{published}" in out
    assert f"broken refused:     {broken - missed_broken}/{broken}" in out
    assert re.search(r"time per file: p50 \d+ ms, p95 \d+ ms", out)
    assert "by engine" in out and "by version" in out
    for name in KNOWN_MISSES:
        assert f" {name} [" in out
