#!/usr/bin/env python3
"""Regenerate which model architectures have a head for each option.task, per LMI release (maintainers only).

    python -m lmi_deploy.commands.update_task_heads --djl-serving PATH --wheels DIR [--output FILE]

PATH is a checkout or bare clone of deepjavalibrary/djl-serving; DIR holds the transformers wheels the releases'
GPU images install (``pip download --no-deps transformers==X.Y.Z -d DIR``; the command names any it lacks). For each
LMI version lmi-deploy supports, the release branch (as ``update_catalog`` picks it) gives the transformers version
of the image that runs ``djl_python.huggingface`` and ``djl_python.deepspeed`` (``deepspeed.Dockerfile`` up to
0.27, ``lmi.Dockerfile`` or ``lmi-container-requirements.txt`` after) and the DeepSpeed handler's task table
(``SUPPORTED_TASKS``, ``TASK_TO_MODEL``). Each wheel gives transformers' own tables: the architectures it knows
(``CONFIG_MAPPING_NAMES``), the model types each ``AutoModelFor...`` class maps (``MODEL_FOR_..._MAPPING_NAMES``),
and the pipeline tasks with their PyTorch model classes and aliases. Output: ``lmi_deploy/data/task_heads.json``,
deterministic.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmi_deploy import containers
from lmi_deploy.commands.update_catalog import CatalogError, Checkout, add_release_arguments, generate, locate
from lmi_deploy.task_heads import DATA_FILE

_DOCKER = "serving/docker/"
_DOCKERFILES = (
    "deepspeed.Dockerfile",
    "lmi.Dockerfile",
    "lmi-container-requirements.txt",
    "lmi-container-requirements-common.txt",
)
_VERSION = re.compile(r"^(?:ARG transformers_version=|transformers==)(\d+\.\d+\.\d+)\s*$", re.MULTILINE)
DEEPSPEED = "engines/python/setup/djl_python/deepspeed.py"


def _assigned(tree: ast.Module, name: str) -> ast.expr | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    return None


def deepspeed_tasks(source: str) -> dict[str, str] | None:
    """``djl_python/deepspeed.py``: each task of SUPPORTED_TASKS and the AutoModel class TASK_TO_MODEL loads it with;
    None for a handler without the tables (0.19.0 reads no task)."""
    tree = ast.parse(source)
    supported, table = _assigned(tree, "SUPPORTED_TASKS"), _assigned(tree, "TASK_TO_MODEL")
    if supported is None and table is None:
        return None
    if not isinstance(supported, ast.Set) or not isinstance(table, ast.Dict):
        raise CatalogError("deepspeed.py: SUPPORTED_TASKS or TASK_TO_MODEL is not a literal")
    classes = {
        key.value: value.id
        for key, value in zip(table.keys, table.values, strict=True)
        if isinstance(key, ast.Constant) and isinstance(value, ast.Name)
    }
    tasks = [e.value for e in supported.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return {task: classes[task] for task in sorted(tasks) if task in classes}


def _mapping_keys(node: ast.expr | None) -> list[str]:
    """Keys of an ``OrderedDict([("llama", "LlamaForCausalLM"), ...])`` literal."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.List):
        return []
    pairs = [e for e in node.args[0].elts if isinstance(e, ast.Tuple) and e.elts]
    return sorted({str(p.elts[0].value) for p in pairs if isinstance(p.elts[0], ast.Constant)})


def auto_heads(modeling_auto: str) -> dict[str, list[str]]:
    """``models/auto/modeling_auto.py``: the model types each ``AutoModel...`` class maps to a model class."""
    tree = ast.parse(modeling_auto)
    heads = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not node.name.startswith("AutoModel"):
            continue
        for statement in node.body:
            if isinstance(statement, ast.Assign) and ast.unparse(statement.targets[0]) == "_model_mapping":
                lazy = _assigned(tree, ast.unparse(statement.value))
                if isinstance(lazy, ast.Call) and len(lazy.args) == 2 and isinstance(lazy.args[1], ast.Name):
                    heads[node.name] = _mapping_keys(_assigned(tree, lazy.args[1].id))
    return heads


def _constant(node: ast.expr | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def pipeline_tasks(pipelines: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``pipelines/__init__.py``: each task's PyTorch AutoModel classes (SUPPORTED_TASKS ``pt``), and TASK_ALIASES."""
    tree = ast.parse(pipelines)
    supported, aliases = _assigned(tree, "SUPPORTED_TASKS"), _assigned(tree, "TASK_ALIASES")
    if not isinstance(supported, ast.Dict) or not isinstance(aliases, ast.Dict):
        raise CatalogError("pipelines/__init__.py: SUPPORTED_TASKS or TASK_ALIASES is not a literal")
    tasks = {}
    for key, entry in zip(supported.keys, supported.values, strict=True):
        if not isinstance(key, ast.Constant) or not isinstance(entry, ast.Dict):
            continue
        pt = next((v for k, v in zip(entry.keys, entry.values, strict=True) if _constant(k) == "pt"), None)
        names = {n.id for n in ast.walk(pt) if isinstance(n, ast.Name)} if pt is not None else set()
        tasks[str(key.value)] = sorted(n for n in names if n.startswith("AutoModel"))
    alias_map = {str(_constant(k)): str(_constant(v)) for k, v in zip(aliases.keys, aliases.values, strict=True)}
    return tasks, alias_map


def read_wheel(path: Path) -> dict[str, Any]:
    """transformers' own tables, from one released wheel."""
    with zipfile.ZipFile(path) as wheel:

        def text(name: str) -> str:
            return wheel.read(f"transformers/{name}").decode()

        configuration = ast.parse(text("models/auto/configuration_auto.py"))
        architectures = _mapping_keys(_assigned(configuration, "CONFIG_MAPPING_NAMES"))
        tasks, aliases = pipeline_tasks(text("pipelines/__init__.py"))
        return {
            "architectures": architectures,
            "heads": auto_heads(text("models/auto/modeling_auto.py")),
            "pipeline_tasks": tasks,
            "aliases": aliases,
        }


def release_facts(checkout: Checkout, version: str) -> dict[str, Any]:
    """The transformers version of the image running the Python handlers, and the DeepSpeed handler's tasks."""
    ref, commit, exact = locate(checkout, version)
    pinned = None
    for name in _DOCKERFILES:
        match = _VERSION.search(checkout.text(commit, _DOCKER + name) or "")
        if match:
            pinned = match.group(1)
            break
    deepspeed = checkout.text(commit, DEEPSPEED)
    return {
        "ref": ref,
        "commit": commit,
        "exact": exact,
        "transformers": pinned,
        "deepspeed_tasks": deepspeed_tasks(deepspeed) if deepspeed else None,
    }


def spans(present: Sequence[bool], versions: Sequence[str]) -> list[str]:
    """Where a model type is in a table across ``versions`` (oldest first), as flattened half-open spans:
    ``["4.41.1"]`` from 4.41.1 on; ``["4.22.1", "4.29.2"]`` from 4.22.1 up to, not including, 4.29.2."""
    edges, inside = [], False
    for version, here in zip(versions, present, strict=True):
        if here != inside:
            edges.append(version)
            inside = here
    return edges


def _by_model_type(tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """``{"AutoConfig" or an AutoModel class: {model_type: spans}}`` over every version read."""
    versions = list(tables)
    classes = sorted({name for table in tables.values() for name in table["heads"]})
    listed = {"AutoConfig": [set(t["architectures"]) for t in tables.values()]}
    listed |= {name: [set(t["heads"].get(name, ())) for t in tables.values()] for name in classes}
    return {
        name: {mt: spans([mt in s for s in sets], versions) for mt in sorted(set().union(*sets))}
        for name, sets in listed.items()
    }


def build(checkout: Checkout, wheels: Path, versions: Sequence[str]) -> dict[str, Any]:
    releases = {version: release_facts(checkout, version) for version in versions}
    wanted = sorted({r["transformers"] for r in releases.values() if r["transformers"]}, key=containers.version_key)
    missing = [v for v in wanted if not (wheels / f"transformers-{v}-py3-none-any.whl").is_file()]
    if missing:
        raise CatalogError(
            f"--wheels {wheels}: no wheel for transformers {', '.join(missing)}; get them with "
            f"pip download --no-deps transformers==VERSION -d {wheels}"
        )
    tables = {v: read_wheel(wheels / f"transformers-{v}-py3-none-any.whl") for v in wanted}
    for version, release in releases.items():
        print(f"{version}: {release['ref']} transformers {release['transformers']}", file=sys.stderr)
    return {
        "source": "https://github.com/deepjavalibrary/djl-serving; transformers wheels as released",
        "generated_by": "python -m lmi_deploy.commands.update_task_heads",
        "releases": releases,
        "pipeline_tasks": {v: t["pipeline_tasks"] for v, t in tables.items()},
        "aliases": {v: t["aliases"] for v, t in tables.items()},
        "model_types": _by_model_type(tables),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Read every release and wheel and write the table; exit 2 with one line on a bad checkout or missing wheel."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_release_arguments(parser, DATA_FILE, "table")
    parser.add_argument("--wheels", required=True, type=Path, help="folder of transformers-X.Y.Z-py3-none-any.whl")
    args = parser.parse_args(argv)
    return generate(lambda versions: build(Checkout(args.djl_serving), args.wheels, versions), args)


if __name__ == "__main__":
    sys.exit(main())
