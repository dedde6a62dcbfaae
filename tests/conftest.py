from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ["HF_HUB_OFFLINE"] = "1"  # model facts come from files the tests write or the bundled configs


@pytest.fixture
def deployment_file(tmp_path: Path):
    """Write a deployment YAML file and return its path."""

    def write(text: str, name: str = "deployment.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
