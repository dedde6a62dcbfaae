"""A render killed at any point leaves ``model_code/<deployment>/`` whole (old or new, never missing); a synth that
fails leaves no templates that could be deployed."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from lmi_deploy import render as render_module
from lmi_deploy.config import load_config
from lmi_deploy.render import render

OLD = {"engine": "accelerate", "instance_type": "ml.g5.2xlarge", "handler": "custom", "model_id": "acme/flan-t5-x"}
NEW = {**OLD, "handler": "builtin"}  # no model.py: a different set of files


class Killed(BaseException):
    """Stands for SIGKILL at one file-system step (BaseException: nothing may catch it)."""


def _folder(root: Path) -> dict[str, str]:
    folder = root / "flan-t5-x"
    assert folder.is_dir(), "the rendered folder is missing"
    return {str(path.relative_to(folder)): path.read_text() for path in folder.rglob("*") if path.is_file()}


def test_a_kill_at_any_step_leaves_the_old_or_the_new_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old_config, new_config = load_config(OLD), load_config(NEW)
    old = _folder(render(old_config, tmp_path / "clean-old").directory.parent)
    new = _folder(render(new_config, tmp_path / "clean-new").directory.parent)
    assert {"serving.properties", "model.py"} <= set(old) and set(new) == {"serving.properties"}
    steps = {"rename": Path.rename, "exchange": getattr(render_module, "_exchange", None), "rmtree": shutil.rmtree}
    for kill_at in range(1, 8):
        root = tmp_path / f"kill-{kill_at}"
        render(old_config, root)
        calls = [0]

        def step(name: str, kill_at: int = kill_at, calls: list[int] = calls):  # type: ignore[no-untyped-def]
            def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
                calls[0] += 1
                if calls[0] == kill_at:
                    raise Killed(name)
                return steps[name](*args, **kwargs)

            return wrapped

        with monkeypatch.context() as patch, contextlib.suppress(Killed):
            patch.setattr(Path, "rename", step("rename"))
            patch.setattr(render_module, "_exchange", step("exchange"), raising=False)
            patch.setattr(render_module.shutil, "rmtree", step("rmtree"))
            render(new_config, root)
        assert _folder(root) in (old, new), f"killed at step {kill_at}"
        assert _folder(render(new_config, root).directory.parent) == new


def test_without_an_atomic_swap_the_next_render_restores_a_folder_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(OLD)
    render(config, tmp_path)
    monkeypatch.setattr(render_module, "_exchange", lambda first, second: False)
    (tmp_path / "flan-t5-x").rename(tmp_path / ".flan-t5-x.old")  # killed between the two renames
    render(config, tmp_path)
    assert {"serving.properties", "model.py"} <= set(_folder(tmp_path))
    assert not (tmp_path / ".flan-t5-x.old").exists()


def test_a_failed_synth_leaves_no_templates(tmp_path: Path) -> None:
    """cdk-nag refuses after CDK has written the templates: they must not stay in cdk.out to be deployed."""
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam

    from stacks.deployment import add_checks, add_deployment, synthesize
    from tests.test_stacks import ACCOUNT, CDK_JSON_CONTEXT

    config = load_config({}, environment_defaults={"account": ACCOUNT})
    outdir = tmp_path / "cdk.out"
    app = cdk.App(outdir=str(outdir), context=CDK_JSON_CONTEXT)
    stacks = add_deployment(app, config, render(config, tmp_path / "model_code"))
    add_checks(app)
    stacks.endpoint.execution_role.role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    with pytest.raises(Exception, match="AwsSolutions-IAM5"):
        synthesize(app)
    assert not list(outdir.glob("*.template.json")) and not (outdir / "manifest.json").exists()
