"""The two ways into the registry: a typed deployment config, and an existing serving.properties."""

from __future__ import annotations

from typing import Any

from lmi_deploy import containers, instances
from lmi_deploy.model_facts import ModelFacts
from lmi_deploy.rules import runner
from lmi_deploy.rules.derive import Derived, Resolved
from lmi_deploy.rules.estimates import DEFAULT_BATCH, DEFAULT_SEQUENCE_LENGTH, SAGEMAKER_TIMEOUT_MAX_S
from lmi_deploy.rules.registry import Finding
from lmi_deploy.rules.view import View


def _resolved(config: Any, derived: Derived, findings: list[Finding]) -> Resolved:
    tp = derived.tensor_parallel_degree
    if tp is None:  # refused before derivation: carries only the findings, nothing is deployed from it
        tp = config.tensor_parallel_degree if isinstance(config.tensor_parallel_degree, int) else 1
        return Resolved(tp, str(tp), str(config.dtype), DEFAULT_SEQUENCE_LENGTH, DEFAULT_BATCH, 0, 0, 0, [], findings)
    download = min(derived.download_timeout or 0, SAGEMAKER_TIMEOUT_MAX_S)
    startup = min(derived.startup_timeout or 0, SAGEMAKER_TIMEOUT_MAX_S)
    return Resolved(
        tensor_parallel_degree=tp,
        tensor_parallel_property="max" if config.tensor_parallel_degree == "max" else str(tp),
        dtype=derived.dtype or str(config.dtype),
        max_sequence_length=derived.max_sequence_length,
        max_batch_size=derived.max_batch_size,
        model_data_download_timeout=download,
        container_startup_health_check_timeout=startup,
        model_loading_timeout=derived.model_loading_timeout or startup,
        notes=derived.notes,
        findings=findings,
        memory=derived.memory,
    )


def check_deployment(config: Any, facts: ModelFacts | None, facts_note: str) -> Resolved:
    """Derive ``auto`` values and run every rule on a config whose single fields are already valid."""
    derived, findings = runner.check(from_config(config, facts, facts_note))
    return _resolved(config, derived, findings)


def check_serving_properties(view: View) -> tuple[list[str], list[Finding]]:
    """(notes, findings) of an existing serving.properties (read with ``properties_view.from_properties``)."""
    derived, findings = runner.check(view)
    engine = f"{view.engine.value}" if view.engine else "engine unknown"
    return [f"read as {engine} on LMI {view.version}", *derived.notes], findings


def from_config(config: Any, facts: ModelFacts | None, facts_note: str) -> View:
    """The view of a typed deployment (``DeploymentConfig``, whose fields are each already valid)."""
    engine: containers.Engine = config.engine
    version: str = config.lmi_version
    known_version = version in containers.versions(engine)
    entry_point = containers.entry_point(engine, version) if config.handler == "builtin" else None
    return View(
        source="deployment",
        version=version,
        engine=engine,
        server_engine=containers.server_engine(engine, version) if known_version else None,
        entry_point=entry_point,
        rolling_batch=containers.ENGINES[engine].rolling_batch,
        instance_type=config.instance_type,
        instance=instances.get(config.instance_type),
        model_id=config.model_id,
        model_type=config.resolved_model_type,
        facts=facts,
        facts_note=facts_note,
        dtype=config.dtype,
        tensor_parallel=config.tensor_parallel_degree,
        max_sequence_length=config.max_sequence_length,
        max_batch_size=config.max_batch_size,
        handler=config.handler,
        partitioned=config.partitioned,
        weights_delivery=config.weights_delivery,
        download_timeout=config.model_data_download_timeout,
        startup_timeout=config.container_startup_health_check_timeout,
        model_loading_timeout=config.model_loading_timeout,
        reserved_memory_mb=None,
        volume_size_gb=config.volume_size_gb,
        config=config,
        rolling=containers.ENGINES[engine].rolling_batch is not None,
    )
