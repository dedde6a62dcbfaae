"""The roles of a representative set of apps may do exactly what the committed fixture says (tests/iam_snapshot.py
builds both): refactoring the constructs that grant them must not widen, narrow or move a single statement."""

from __future__ import annotations

import json
from pathlib import Path

from tests.iam_snapshot import FIXTURE, snapshot, synthesize

INTENDED = "; if the change to what the roles may do is intended: .venv/bin/python -m tests.iam_snapshot --write"


def test_iam_statements_equal_the_fixture(tmp_path: Path) -> None:
    expected = json.loads(FIXTURE.read_text())
    found = snapshot(synthesize(tmp_path))
    assert sorted(found["roles"]) == sorted(expected["roles"]), INTENDED
    for role, policy in expected["roles"].items():
        assert found["roles"][role] == policy, role + INTENDED
    assert found["resource_policies"] == expected["resource_policies"], INTENDED
