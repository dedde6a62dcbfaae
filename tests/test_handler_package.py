"""lmi_deploy/handlers/ at import level: what it may import, the Python it targets, and its request rules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmi_deploy.config import load_config
from lmi_deploy.handlers.hub_token import token_from_secret_string
from lmi_deploy.handlers.request import BadRequest, RequestRules
from lmi_deploy.render import render
from tests.conftest import ruff_py39

PACKAGE = Path(__file__).resolve().parent.parent / "lmi_deploy" / "handlers"
# what the containers have beside the standard library; anything else would fail there at import (each engine's
# own library only in its container: fastertransformer.py and deepspeed.py import it when they load; triton comes with
# torch's CUDA builds, and gemv.py does without it)
ALLOWED_ROOTS = {"torch", "transformers", "safetensors", "boto3", "fastertransformer", "deepspeed", "triton"}


def test_package_lints_for_the_oldest_container_python() -> None:
    result = ruff_py39(PACKAGE)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in PACKAGE.glob("*.py"):
        ast.parse(path.read_text(), feature_version=(3, 9))


def test_package_imports_only_itself_the_standard_library_and_the_model_libraries() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            foreign = roots - ALLOWED_ROOTS - set(sys.stdlib_module_names)
            assert not foreign, f"{path.name}:{node.lineno} imports {foreign}"


def test_rendered_folder_imports_the_package_on_its_own(tmp_path: Path) -> None:
    """Only the tarball's folder on sys.path, as in the container: the shipped package imports, and pulls in none of
    lmi_deploy, pydantic or boto3."""
    code = render(load_config({"engine": "accelerate", "hf_token_secret": "hf-token"}), tmp_path)
    modules = sorted(f"lmi_handlers.{path.stem}" for path in (code.directory / "lmi_handlers").glob("*.py"))
    probe = (  # only what the package adds counts (torch itself imports jinja2: the AST test covers that one)
        f"import sys, torch, transformers; before = set(sys.modules); sys.path.insert(0, {str(code.directory)!r}); "
        f"import {', '.join(modules)}; added = set(sys.modules) - before; "
        "print(sorted({m.split('.')[0] for m in added} & {'lmi_deploy', 'pydantic', 'boto3'}))"
    )
    result = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


RULES = RequestRules(
    parameters={"max_new_tokens": ["max_new_tokens", "int"], "temperature": ["temperature", "float"],
                "do_sample": ["do_sample", "bool"], "min_new_tokens": ["min_new_tokens", "int"]},
    bounds={"max_new_tokens": [1, 512], "temperature": [0, 100], "min_new_tokens": [0, 512]},
    lowest_excluded=[],
    max_sequence_length=512,
    max_inputs=2,
    chars_per_token=4,
)  # fmt: skip


def test_rules_map_parameters_to_engine_arguments() -> None:
    assert RULES.parse({"inputs": "hi", "parameters": {"max_new_tokens": 8.0, "do_sample": True}}) == (
        ["hi"],
        {"max_new_tokens": 8, "do_sample": True},
    )


@pytest.mark.parametrize(
    ("body", "chars_per_token", "message"),
    [
        ({"inputs": ["a", "b", "c"]}, 0, '"inputs" holds 3 prompts, more than 2: send several requests'),
        ({"inputs": "x" * 2049}, 0, "input 0 is 2049 characters: more than max_sequence_length=512"),
        ({"inputs": "x" * 600}, 1, "input 0 is 600 characters"),  # a tokenizer's own ratio wins
        ({"inputs": "x", "parameters": {"max_new_tokens": 513}}, 0, "must be in [1, 512]; 512 is this deployment's"),
        ({"inputs": "x", "parameters": {"temperature": float("nan")}}, 0, "must be a finite number, got nan"),
        ({"inputs": "x", "parameters": {"min_new_tokens": 9, "max_new_tokens": 8}}, 0, "ask for at most 8"),
        ({"inputs": "x", "parameters": {"do_sample": True, "temperature": 0}}, 0, "cannot sample"),
        ({"inputs": "x", "parameters": {"top_k": 1}}, 0, "unsupported parameter(s) ['top_k']"),
    ],
)
def test_rules_refuse_with_what_to_change(body: object, chars_per_token: int, message: str) -> None:
    with pytest.raises(BadRequest, match=None) as caught:
        RULES.parse(body, chars_per_token)
    assert message in str(caught.value)


def test_token_from_plain_or_json_secret() -> None:
    assert token_from_secret_string("s", " hf_plain\n") == "hf_plain"
    assert token_from_secret_string("s", json.dumps({"HF_TOKEN": "hf_json"})) == "hf_json"
    with pytest.raises(ValueError, match="secret s is JSON without a 'token' key"):
        token_from_secret_string("s", json.dumps({"other": "x"}))


def test_warm_shapes_parse_and_skip_malformed_items(caplog: pytest.LogCaptureFixture) -> None:
    from lmi_deploy.handlers.fast_decode import parse_warm_shapes

    assert parse_warm_shapes("1x128x64, 4x144x48,,bad,2x3") == [(1, 128, 64), (4, 144, 48)]
    assert "'bad' is not ROWSxPROMPTxNEW" in caplog.text and "'2x3' is not" in caplog.text


@pytest.mark.parametrize(
    ("context", "handler_class"),
    [
        ({"engine": "accelerate", "hf_token_secret": "hf-token"}, "AccelerateHandler"),
        ({"engine": "fastertransformer", "model_id": "google/flan-t5-xxl"}, "FasterTransformerHandler"),
        ({"engine": "deepspeed", "model_id": "EleutherAI/gpt-j-6b", "lmi_version": "0.23.0"}, "DeepSpeedHandler"),
    ],
)
def test_rendered_model_py_holds_only_what_varies(context: dict[str, str], handler_class: str) -> None:
    """Constants, one handler built from them, and ``handle`` handing over to it: no logic left in a template."""
    from lmi_deploy.render import render_files

    tree = ast.parse(render_files(load_config(context))["model.py"])
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
    assert [node.name for node in functions if not isinstance(node, ast.Lambda)] == ["handle"]
    (handle,) = functions
    assert isinstance(handle, ast.FunctionDef) and ast.unparse(handle.body[-1]) == "return HANDLER.handle(inputs)"
    assert len(handle.body) == 2  # its docstring and the hand-over
    controls = (ast.If, ast.For, ast.While, ast.Try, ast.With)
    assert not [node for node in ast.walk(tree) if isinstance(node, controls)]
    built = [
        node.value for node in tree.body if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "HANDLER"
    ]
    assert len(built) == 1 and isinstance(built[0], ast.Call) and ast.unparse(built[0].func) == handler_class
    keywords = {k.arg: ast.unparse(k.value) for k in built[0].keywords}
    assert keywords["hub_token_secret"] == "HUB_TOKEN_SECRET"
