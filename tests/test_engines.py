"""The engine registry (``lmi_deploy/engines/``): every engine is covered everywhere it must be.

Adding an engine is one module in ``lmi_deploy/engines/`` (plus its name in ``Engine``) and its tests; a new engine
that forgets a place fails here with a message saying what to add (CONTRIBUTING.md, "Add an engine").
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from lmi_deploy import containers, engines, performance
from lmi_deploy.config import load_config
from lmi_deploy.engines import ENGINE_ALIASES, ENGINES, Engine, EngineSpec
from lmi_deploy.render import serving_properties
from lmi_deploy.rules.properties_view import from_properties
from tests.test_render import _FAMILY_TOO_NEW, _MATRIX_MODELS

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in (ROOT / "lmi_deploy" / "engines").glob("*.py") if p.stem not in ("__init__", "base"))


def test_every_engine_has_one_module_and_every_module_one_engine() -> None:
    missing = [e.value for e in Engine if e not in ENGINES]
    assert not missing, f"add a module to lmi_deploy/engines/ that registers an EngineSpec for {missing}"
    owners: dict[Engine, str] = {}
    for name in MODULES:
        module = importlib.import_module(f"lmi_deploy.engines.{name}")
        spec = getattr(module, "SPEC", None)
        assert isinstance(spec, EngineSpec), f"lmi_deploy/engines/{name}.py must define SPEC = register(...)"
        assert spec.engine not in owners, f"{spec.engine.value} is declared by {owners[spec.engine]} and {name}"
        owners[spec.engine] = name
    assert list(ENGINES) == list(Engine), "the registry keeps Engine's order (docs/settings.md lists it)"


def test_names_users_type_are_unambiguous() -> None:
    typed = [e.value.lower() for e in Engine] + [a for spec in ENGINES.values() for a in spec.aliases]
    clashes = sorted({name for name in typed if typed.count(name) > 1})
    assert not clashes, f"these names point at more than one engine: {clashes}; drop them from an engine's aliases"
    assert all(alias == alias.lower() for alias in ENGINE_ALIASES), "aliases are compared lower-case"
    assert engines.ENGINE_ALIASES is containers.ENGINE_ALIASES
    rolling = [name for spec in ENGINES.values() for name in spec.rolling_batch_names]
    shared = sorted({name for name in rolling if rolling.count(name) > 1})
    assert not shared, f"option.rolling_batch {shared} is claimed by more than one engine's rolling_batch_names"


def _problems(engine: Engine) -> list[str]:
    """What a new engine module has left out, one line each."""
    spec = ENGINES[engine]
    problems = []
    if not containers.versions(engine):
        problems.append("its ImageLine(s) name no version of sagemaker-core's image config (framework, first, last)")
    if engine not in _MATRIX_MODELS:
        problems.append("add it to _MATRIX_MODELS (models, instance, TP degrees) in tests/test_render.py")
    settings = (ROOT / "docs" / "settings.md").read_text()
    if not spec.summary or f"`{engine.value}` ({spec.summary})" not in settings:
        problems.append("give its EngineSpec a summary (versions, what it is) and run python -m lmi_deploy.docs")
    if spec.rolling_batch and spec.rolling_batch not in spec.rolling_batch_names:
        problems.append(f"list rolling_batch_names=({spec.rolling_batch!r},) so existing files are recognised")
    if spec.custom_template is not None and not (ROOT / "templates" / spec.custom_template).exists():
        problems.append(f"templates/{spec.custom_template} does not exist")
    try:
        performance.engine_speed(engine)
    except KeyError:
        problems.append("add its assumed speed to _ASSUMED_SPEEDS in lmi_deploy/performance.py (recommend uses it)")
    if spec.partitionable and not spec.partition_command(2, "partition.py", "code", "out"):
        problems.append("a partitionable engine needs a partition_command")
    return problems


@pytest.mark.parametrize("engine", list(Engine), ids=lambda e: e.value)
def test_engine_is_covered_everywhere(engine: Engine) -> None:
    problems = _problems(engine)
    assert not problems, f"{engine.value}: " + "; ".join(problems)


@pytest.mark.parametrize("engine", list(Engine), ids=lambda e: e.value)
def test_a_rendered_file_reads_back_as_its_engine(engine: Engine) -> None:
    """What lmi-deploy renders, `scripts/validate.py --serving-properties` must recognise as the same engine at every
    version: otherwise the rules would check an imported or hand-edited file of it as another engine's."""
    if engine not in _MATRIX_MODELS:
        pytest.fail(f"add {engine.value} to _MATRIX_MODELS in tests/test_render.py (its models are rendered here too)")
    models, instance_type, _ = _MATRIX_MODELS[engine]
    for version in containers.versions(engine):
        if version == "0.19.0":
            continue  # refused: it cannot load staged weights
        if (engine, version, models[0].split("/")[0]) in _FAMILY_TOO_NEW:
            continue  # refused: the image's transformers predates the family (LMI106)
        handlers = ("builtin", "custom") if ENGINES[engine].custom_template else ("builtin",)
        for handler in handlers:
            config = load_config(
                {
                    "engine": engine.value,
                    "lmi_version": version,
                    "model_id": models[0],
                    "instance_type": instance_type,
                    "handler": handler,
                }
            )
            text = "".join(f"{key}={value}\n" for key, value in serving_properties(config))
            view = from_properties(
                text,
                version,
                container_tag=config.image_tag,
                instance_type=instance_type,
                has_model_py=handler == "custom",
            )
            assert view.engine is engine, (
                f"{engine.value} {version} handler={handler}: its serving.properties reads back as "
                f"{view.engine.value if view.engine else 'no engine'}; set handler_marks / rolling_batch_names / "
                "recognition_order in its module (lmi_deploy/rules/properties_view.py reads them)"
            )
