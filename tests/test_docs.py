"""The generated docs pages stay current, and a setting cannot be added without a description and a section."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from lmi_deploy import docs
from lmi_deploy.config import DeploymentConfig
from lmi_deploy.multi_model import FILE_KEYS, ComponentSettings
from lmi_deploy.rules import docs as rules_docs


def test_generated_pages_are_current() -> None:
    assert docs.main(["--check"]) == 0, f"run {docs.COMMAND}"
    text = (docs.ROOT / "docs" / "settings.md").read_text()
    keys = [f.alias or n for n, f in DeploymentConfig.model_fields.items()]
    for key in [*keys, *FILE_KEYS, *ComponentSettings.model_fields]:
        assert f"| `{key}` |" in text, key
    assert "| `compile` | `true` |" in text and "| `instance_count` | `1` |" in text  # shown and literal defaults
    assert r"q\|k\|v" in text  # a pipe in a description does not split the table row


def test_check_names_the_stale_page_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "settings.md").write_text("# Settings\n\nhand-edited\n")
    assert docs.main(["--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"lmi-deploy: {page} is stale (the code it is generated from changed); run python -m lmi_deploy.docs"
        for page in ("docs/settings.md", "docs/rules.md")  # rules.md is missing here: stale too
    ]
    assert "hand-edited" in (tmp_path / "docs" / "settings.md").read_text()  # --check writes nothing
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0
    assert (tmp_path / "docs" / "settings.md").read_text() == docs.settings_page()
    assert (tmp_path / "docs" / "rules.md").read_text() == rules_docs.render()


def test_a_setting_without_description_or_section_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Undocumented(BaseModel):
        size: int = Field(3)

    with pytest.raises(ValueError, match=r"Undocumented.size has no description: add Field\(description=\.\.\.\)"):
        docs._table(Undocumented, ["size"])
    without_scaling = tuple(section for section in docs.SECTIONS if section[0] != "Scaling")
    monkeypatch.setattr(docs, "SECTIONS", without_scaling)
    with pytest.raises(ValueError, match=r"missing \['autoscaling_max_instances', 'autoscaling_min_instances'"):
        docs.settings_page()
