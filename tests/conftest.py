from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ["HF_HUB_OFFLINE"] = "1"  # model facts come from files the tests write or the bundled configs
os.environ["LMI_DEPLOY_PRICES"] = "bundled"  # synth's cost line from the table; tests of the Price List API stub it
# the handler's Triton kernels run on the CPU in Triton's interpreter (read when a kernel is defined: set before any
# test imports lmi_handlers), so the tests check the kernels' own arithmetic, not a stand-in
os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture
def deployment_file(tmp_path: Path):
    """Write a deployment YAML file and return its path."""

    def write(text: str, name: str = "deployment.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random T5 and Llama with a tokenizer trained here (real Hugging Face folders)."""
    from lmi_deploy import tiny_models

    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: tiny_models.make(root / kind, kind) for kind in ("t5", "llama")}


def ruff_py39(*paths: str | Path) -> subprocess.CompletedProcess[str]:
    """ruff on rendered files as the oldest LMI containers run them (Python 3.9), independent of the repo's config."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--target-version",
            "py39",
            "--select",
            "E,F,W,B,UP",
            "--line-length",
            "120",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``make local`` demo T5, trained once per session (tests copy it where the demo caches it)."""
    from lmi_deploy import demo_model

    return demo_model.make(tmp_path_factory.mktemp("demo") / "demo-model")
