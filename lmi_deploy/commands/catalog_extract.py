"""Which serving.properties keys one djl-serving source tree reads, and which values its enums allow.

Pure parsing, no git: callers hand in ``{path: text}``. Three readers, one per place a key is read:

- ``server``: the Java front end (``wlm``, ``serving``, ``engines/python`` main sources): ``"option.*"`` literals,
  ``getProperty("key")``-style reads of the model's properties, the worker-count helpers that also read the
  ``gpu.``/``cpu.`` forms, and the ``case "key":`` labels of ``PyModel``'s options switch (``option.`` stripped);
- ``properties``: the pydantic classes in ``djl_python/properties_manager/`` (field names and aliases), with the
  values of the ``Enum``/``Literal`` types of their fields;
- ``handler``: the built-in Python handlers (``properties.get("key")``, ``properties["key"]``, ``"key" in
  properties``), with the values of closed if-chains (``if x == "a": ... raise``) on a parameter named after a key;
- ``docs``: the ``option.*`` keys in the first column of the release's TensorRT-LLM configuration tables (the
  TensorRT-LLM user guide, the TensorRT-LLM sections of the LMI configuration page). The TensorRT-LLM handler hands
  every option to a toolkit outside djl-serving, so for its keys the release's own documentation is the only
  record in the repository. Other engines' tables are not read: they outlive the code (DeepSpeed keys are still
  documented in 0.28, which ships no DeepSpeed).

A key's values count as closed only when every properties class that declares it gives an Enum or ``Literal``;
a key no properties class declares takes the handlers' closed choices. Each class's own view is kept too
(``class_values``, inherited fields included): an engine validates with its own classes (vLLM's quantize enum is
not the Accelerate handler's), so a value another engine's enum allows may still fail on this one.

Python handlers receive ``option.*`` keys with the prefix stripped, so every Python-side name ``k`` is
``option.k``. Keys read only by DJL itself (the ``ai.djl`` core library, outside djl-serving) are not covered.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SERVER = "server"
PROPERTIES = "properties"
HANDLER = "handler"
DOCS = "docs"
PASSTHROUGH = "passthrough"  # declared in an earlier release by a class that now passes unknown keys to its engine

JAVA_ROOTS = ("wlm/src/main/java/", "serving/src/main/java/", "engines/python/src/main/java/")
# HTTP request parameters and the global config.properties share names with model keys but are not read from
# serving.properties.
JAVA_EXCLUDED = ("/serving/http/", "/util/ConfigManager.java")
PYTHON_ROOT = "engines/python/setup/djl_python/"
PROPERTIES_DIR = PYTHON_ROOT + "properties_manager/"
# inputs.py holds the per-request Input object, whose ``properties`` are request headers, not model options.
PYTHON_EXCLUDED = ("/tests/", "/test_", PYTHON_ROOT + "inputs.py", PYTHON_ROOT + "test_model.py")
DOCS_FILES = ("serving/docs/lmi/", "serving/docs/configurations_large_model_inference_containers.md")
_DOCS_ROW = re.compile(r"^\|\s*`?(option\.[A-Za-z_]\w*)`?\s*\|", re.MULTILINE)

# Device types whose prefixed worker keys (``gpu.minWorkers``) the worker helpers read besides the plain key.
DEVICE_TYPES = ("cpu", "gpu")
_WORKER_HELPERS = ("getWorkersProperty", "getWorkersMinMaxProperty")
_OPTION_LITERAL = re.compile(r'"(option\.[A-Za-z][A-Za-z0-9_]*)"')
_SERVER_READ = re.compile(
    r'(?<![\w.])(?:(\w+)\.)?(?:getProperty|intProperty|longProperty|getIntProperty|containsKey)\(\s*"([A-Za-z][\w.]*)"'
)
_INT_VALUE = re.compile(r'\bintValue\(\s*\w+\s*,\s*"([A-Za-z][\w.]*)"')
_WORKER_READ = re.compile(r"\b(?:" + "|".join(_WORKER_HELPERS) + r')\([^;"]*?"([A-Za-z][\w.]*)"')
_INIT_PARAMETER = re.compile(r'getInitParameters\(\)\.get\(\s*"([A-Za-z]\w*)"')
_CASE_LABEL = re.compile(r'\bcase\s+"([A-Za-z][\w]*)"\s*:')
_ENGINE_NAME = re.compile(
    r'getEngineName\(\)\s*\{\s*return\s+"(\w[\w-]*)"\s*;|ENGINE_NAME\s*=\s*"(\w[\w-]*)"\s*;', re.DOTALL
)
# Receivers whose dotted reads are not the model's serving.properties (JVM properties, request inputs).
_JAVA_FOREIGN_RECEIVERS = {"System", "input", "inputs", "decoder", "req", "request", "configManager", "config"}
_PY_RECEIVERS = {"properties", "props", "prop", "properties_dict", "model_properties"}
_PY_SELF_RECEIVERS = {"properties", "__pydantic_extra__"}


@dataclass
class Extraction:
    """What one source tree reads: key -> places (server/properties/handler), key -> allowed values."""

    keys: dict[str, set[str]] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=dict)
    extra_keys_to: set[str] = field(default_factory=set)  # properties classes that accept any further key
    class_keys: dict[str, set[str]] = field(default_factory=dict)  # properties class -> keys it declares
    choices: list[tuple[str, set[str]]] = field(default_factory=list)  # (parameter, closed values), keyed later
    open_keys: set[str] = field(default_factory=set)  # declared somewhere with a type that takes any value
    # properties class -> key -> the values its Enum/Literal allows (empty: any), inherited fields included
    class_values: dict[str, dict[str, set[str]]] = field(default_factory=dict)

    def add(self, key: str, where: str) -> None:
        self.keys.setdefault(key, set()).add(where)

    def allow(self, key: str, values: Iterable[str]) -> None:
        if values := set(values):
            self.values.setdefault(key, set()).update(values)


def is_java_source(path: str) -> bool:
    return path.endswith(".java") and path.startswith(JAVA_ROOTS) and not any(x in path for x in JAVA_EXCLUDED)


def is_python_source(path: str) -> bool:
    return path.startswith(PYTHON_ROOT) and path.endswith(".py") and not any(x in path for x in PYTHON_EXCLUDED)


def is_docs_source(path: str) -> bool:
    return path.startswith(DOCS_FILES) and path.endswith(".md")


def is_source(path: str) -> bool:
    """Whether any reader looks at this path."""
    return is_java_source(path) or is_python_source(path) or is_docs_source(path)


def extract(files: Mapping[str, str]) -> Extraction:
    """Keys and values of one release, from its ``{path: text}`` (paths outside the readers' roots are ignored)."""
    found = Extraction()
    properties_trees = []
    for path, text in sorted(files.items()):
        if is_java_source(path):
            _java_reads(path, text, found)
        elif is_python_source(path) and (tree := _parse_python(text)) is not None:
            in_properties = path.startswith(PROPERTIES_DIR)
            if in_properties:
                properties_trees.append(tree)
            _python_reads(tree, PROPERTIES if in_properties else HANDLER, found)
            _closed_choices(tree, found)
        elif is_docs_source(path):
            for key in tensorrt_llm_table_keys(path, text):
                found.add(key, DOCS)
    _properties_classes(properties_trees, found)
    _engine_names(files, found)
    _key_choices(found)
    for key in found.open_keys:
        found.values.pop(key, None)
    return found


def tensorrt_llm_table_keys(path: str, text: str) -> list[str]:
    """``option.*`` keys in the first column of TensorRT-LLM tables: a whole ``trt*`` page, else the rows under a
    heading that names TensorRT."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.startswith(("trt", "tensorrt")):
        return _DOCS_ROW.findall(text)
    keys, in_section = [], False
    for line in text.splitlines():
        if line.startswith("#"):
            in_section = "tensorrt" in line.lower()
        elif in_section:
            keys += _DOCS_ROW.findall(line)
    return keys


def _java_reads(path: str, text: str, found: Extraction) -> None:
    for key in _OPTION_LITERAL.findall(text):
        found.add(key, SERVER)
    for receiver, key in _SERVER_READ.findall(text):
        if receiver not in _JAVA_FOREIGN_RECEIVERS:
            found.add(key, SERVER)
    for key in _INT_VALUE.findall(text):
        found.add(key, SERVER)
    for key in _INIT_PARAMETER.findall(text):
        found.add(f"option.{key}", SERVER)
    for key in _WORKER_READ.findall(text):
        found.add(key, SERVER)
        for device in DEVICE_TYPES:
            found.add(f"{device}.{key}", SERVER)
    if path.endswith("/PyModel.java"):
        for key in _CASE_LABEL.findall(text):
            found.add(f"option.{key}", SERVER)


def _engine_names(files: Mapping[str, str], found: Extraction) -> None:
    """``engine=`` values: the names the Python engine module's providers register."""
    for path, text in files.items():
        if path.startswith("engines/python/src/main/java/") and path.endswith("EngineProvider.java"):
            for returned, constant in _ENGINE_NAME.findall(text):
                found.allow("engine", [returned or constant])


def _parse_python(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except SyntaxError:  # a file for another interpreter (none known today): skip it rather than fail the release
        return None


def _is_properties_receiver(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _PY_RECEIVERS
    return (
        isinstance(node, ast.Attribute)
        and node.attr in _PY_SELF_RECEIVERS
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _read_key(node: ast.AST) -> str | None:
    """The key a node reads: ``properties.get("k")``, ``properties["k"]`` (a load) or ``"k" in properties``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "pop"):
        return _string(node.args[0]) if node.args and _is_properties_receiver(node.func.value) else None
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_properties_receiver(node.value):
        return _string(node.slice)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn):
        return _string(node.left) if _is_properties_receiver(node.comparators[0]) else None
    return None


def _python_reads(tree: ast.Module, where: str, found: Extraction) -> None:
    for node in ast.walk(tree):
        if (key := _read_key(node)) and re.fullmatch(r"[A-Za-z][\w.]*", key):
            found.add(f"option.{key}", where)


def _name(node: ast.AST) -> str:
    """``Name`` -> its id, ``Attribute`` -> its attribute, else empty."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _class_index(trees: list[ast.Module]) -> dict[str, ast.ClassDef]:
    return {node.name: node for tree in trees for node in tree.body if isinstance(node, ast.ClassDef)}


def _base_names(node: ast.ClassDef) -> set[str]:
    return {_name(base) for base in node.bases}


def _descendants(classes: dict[str, ast.ClassDef], roots: set[str]) -> set[str]:
    """Classes (by name) that derive, directly or through other classes here, from one of ``roots``."""
    found: set[str] = set()
    grew = True
    while grew:
        grew = False
        for name, node in classes.items():
            if name not in found and _base_names(node) & (roots | found):
                found.add(name)
                grew = True
    return found


def _enum_values(node: ast.ClassDef) -> set[str]:
    return {value for stmt in node.body if isinstance(stmt, ast.Assign) and (value := _string(stmt.value)) is not None}


def _annotation_values(annotation: ast.expr, enums: dict[str, set[str]]) -> set[str]:
    """Values an annotation allows: its Enum classes' values and ``Literal[...]`` strings (empty: any)."""
    values: set[str] = set()
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name) and node.id in enums:
            values |= enums[node.id]
        elif isinstance(node, ast.Subscript) and _name(node.value) == "Literal":
            values |= {v for item in ast.walk(node.slice) if (v := _string(item)) is not None}
    return values


def _field_aliases(value: ast.expr | None) -> list[str]:
    if not (isinstance(value, ast.Call) and _name(value.func) == "Field"):
        return []
    return [alias for kw in value.keywords if kw.arg in ("alias", "validation_alias") and (alias := _string(kw.value))]


def _allows_extra(node: ast.ClassDef) -> bool:
    """pydantic v2 ``model_config = ConfigDict(extra="allow")`` or v1 ``class Config: extra = Extra.allow``."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.keyword) and sub.arg == "extra":
            return _string(sub.value) == "allow" or getattr(sub.value, "attr", "") == "allow"
        if isinstance(sub, ast.Assign) and any(getattr(t, "id", "") == "extra" for t in sub.targets):
            return _string(sub.value) == "allow" or getattr(sub.value, "attr", "") == "allow"
    return False


def _own_fields(node: ast.ClassDef, enums: dict[str, set[str]]) -> dict[str, set[str]]:
    """The keys a pydantic class declares itself (field names and aliases) -> its Enum/Literal values (empty: any)."""
    fields: dict[str, set[str]] = {}
    for stmt in node.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        field_name = stmt.target.id
        if field_name.startswith("_") or field_name == "model_config" or "ClassVar" in ast.dump(stmt.annotation):
            continue
        values = _annotation_values(stmt.annotation, enums)
        for key in [f"option.{field_name}", *(f"option.{alias}" for alias in _field_aliases(stmt.value))]:
            fields[key] = values
    return fields


def _inherited_fields(
    name: str, own: dict[str, dict[str, set[str]]], classes: dict[str, ast.ClassDef]
) -> dict[str, set[str]]:
    """A class's fields with those of its bases in this package (a field it redeclares is its own)."""
    fields: dict[str, set[str]] = {}
    for base in sorted(_base_names(classes[name]) & set(own)):
        fields.update(_inherited_fields(base, own, classes))
    fields.update(own[name])
    return fields


def _properties_classes(trees: list[ast.Module], found: Extraction) -> None:
    """Fields (and aliases) of every pydantic model in properties_manager; Enum/Literal values of their types."""
    classes = _class_index(trees)
    enums = {name: _enum_values(classes[name]) for name in _descendants(classes, {"Enum"})}
    own = {name: _own_fields(classes[name], enums) for name in sorted(_descendants(classes, {"BaseModel"}))}
    for name, fields in own.items():
        if _allows_extra(classes[name]):
            found.extra_keys_to.add(name)
        for key, values in fields.items():
            found.add(key, PROPERTIES)
            found.class_keys.setdefault(name, set()).add(key)
            if values:
                found.allow(key, values)
            else:
                found.open_keys.add(key)
        found.class_values[name] = _inherited_fields(name, own, classes)


def _equality_choices(test: ast.expr, params: set[str]) -> tuple[str, set[str]] | None:
    """``p == "a"`` or ``p == "a" or p == "b"`` on a parameter p: (p, {"a", "b"})."""
    parts = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or) else [test]
    names, values = set(), set()
    for part in parts:
        if not (isinstance(part, ast.Compare) and len(part.ops) == 1 and isinstance(part.left, ast.Name)):
            return None
        if isinstance(part.ops[0], ast.Is) and getattr(part.comparators[0], "value", 0) is None:
            names.add(part.left.id)  # ``p is None`` is a guard, not a value
            continue
        value = _string(part.comparators[0])
        if not isinstance(part.ops[0], ast.Eq) or value is None:
            return None
        names.add(part.left.id)
        values.add(value)
    return (names.pop(), values) if len(names) == 1 and names <= params else None


def _chain(statement: ast.If) -> tuple[list[ast.expr], list[ast.stmt]]:
    """The tests of an if/elif chain and its final else body."""
    tests = [statement.test]
    while len(statement.orelse) == 1 and isinstance(statement.orelse[0], ast.If):
        statement = statement.orelse[0]
        tests.append(statement.test)
    return tests, statement.orelse


def _closed_choices(tree: ast.Module, found: Extraction) -> None:
    """Functions whose if-chains on one parameter end in ``raise``: the parameter takes only those values."""
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        params = {arg.arg for arg in func.args.args}
        choices: dict[str, set[str]] = {}
        closed = bool(func.body) and isinstance(func.body[-1], ast.Raise)
        for statement in func.body:
            if not isinstance(statement, ast.If):
                continue
            tests, orelse = _chain(statement)
            closed = closed or (len(orelse) == 1 and isinstance(orelse[0], ast.Raise))
            for test in tests:
                if (choice := _equality_choices(test, params)) is not None:
                    choices.setdefault(choice[0], set()).update(choice[1])
        if closed and len(choices) == 1:
            found.choices.extend(choices.items())


def _key_choices(found: Extraction) -> None:
    """Give each closed choice to the key its parameter is named for (``rolling_batch_type`` -> rolling_batch)."""
    for param, values in found.choices:
        parts = param.split("_")
        for size in range(len(parts), 0, -1):
            key = "option." + "_".join(parts[:size])
            if key in found.keys:
                if PROPERTIES not in found.keys[key]:  # declared fields decide their own values
                    found.allow(key, values)
                break
