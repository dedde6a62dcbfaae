"""The code stays the shape a newcomer can change safely: no function over 60 lines and no module over 400 lines in
lmi_deploy/ and stacks/, but for the few listed here, each with the reason it is left as it is.

``python -m tests.test_code_shape`` prints the largest functions and modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lmi_deploy", "stacks")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400

# path:function -> why it is longer (remove an entry when the function is split; the test fails on stale entries)
LONG_FUNCTIONS: dict[str, str] = {}

# path -> why it is longer
LONG_MODULES: dict[str, str] = {}


def function_lengths() -> dict[str, int]:
    """``path:name`` (``path:Class.name`` for methods) -> lines, decorators included."""
    lengths: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            relative = path.relative_to(ROOT).as_posix()
            for parent in ast.walk(tree):
                for node in ast.iter_child_nodes(parent):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        owner = f"{parent.name}." if isinstance(parent, ast.ClassDef) else ""
                        first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                        assert node.end_lineno is not None
                        lengths[f"{relative}:{owner}{node.name}"] = node.end_lineno - first + 1
    return lengths


def module_lengths() -> dict[str, int]:
    return {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def test_no_function_over_the_limit() -> None:
    lengths = function_lengths()
    over = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS}
    assert not over, (
        f"functions over {MAX_FUNCTION_LINES} lines: {over}; split them into steps with names that say what each does"
    )
    stale = [name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES]
    assert not stale, f"{stale} are within the limit now (or gone): remove them from LONG_FUNCTIONS"


def test_no_module_over_the_limit() -> None:
    lengths = module_lengths()
    over = {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES and name not in LONG_MODULES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}; split them by what they hold"
    stale = [name for name in LONG_MODULES if lengths.get(name, 0) <= MAX_MODULE_LINES]
    assert not stale, f"{stale} are within the limit now (or gone): remove them from LONG_MODULES"


if __name__ == "__main__":
    for name, lines in sorted(function_lengths().items(), key=lambda item: -item[1])[:10]:
        print(f"{lines:4d}  {name}")
    for name, lines in sorted(module_lengths().items(), key=lambda item: -item[1])[:5]:
        print(f"{lines:4d}  {name}")
