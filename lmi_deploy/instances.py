"""Catalog of the SageMaker instance types LLM endpoints use: accelerators, their memory, volume support.

GPU counts and memory come from sagemaker-core's bundled ``instance_gpu_info.json`` where it lists the type;
the rest (g6, g6e, p5e/p5en, inf2, trn1, and g5.xlarge, which the JSON lacks) from the fact sheet
(``shared/reference/lmi-serving.md`` §7).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Literal

AcceleratorKind = Literal[
    "A10G", "T4", "L4", "L40S", "V100", "A100", "A100-80GB", "H100", "H200", "Inferentia2", "Trainium"
]

# (accelerator kind, count, memory per accelerator in GiB). For Neuron types the count is NeuronCores
# (what tensor_parallel_degree counts there) and the memory is per NeuronCore (32 GiB per device, 2 cores each).
_FACT_SHEET: dict[str, tuple[AcceleratorKind, int, float]] = {
    **{f"ml.g4dn.{s}": ("T4", 1, 16.0) for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g4dn.12xlarge": ("T4", 4, 16.0),
    **{f"ml.g5.{s}": ("A10G", 1, 24.0) for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g5.12xlarge": ("A10G", 4, 24.0),
    "ml.g5.24xlarge": ("A10G", 4, 24.0),
    "ml.g5.48xlarge": ("A10G", 8, 22.35),  # 183,104 MiB in all per sagemaker-core
    **{f"ml.g6.{s}": ("L4", 1, 22.35) for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g6.12xlarge": ("L4", 4, 22.35),
    "ml.g6.24xlarge": ("L4", 4, 22.35),
    "ml.g6.48xlarge": ("L4", 8, 22.35),
    **{f"ml.g6e.{s}": ("L40S", 1, 44.7) for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "ml.g6e.12xlarge": ("L40S", 4, 44.7),
    "ml.g6e.24xlarge": ("L40S", 4, 44.7),
    "ml.g6e.48xlarge": ("L40S", 8, 44.7),
    "ml.p3.2xlarge": ("V100", 1, 16.0),
    "ml.p3.8xlarge": ("V100", 4, 16.0),
    "ml.p3.16xlarge": ("V100", 8, 16.0),
    "ml.p3dn.24xlarge": ("V100", 8, 32.0),
    "ml.p4d.24xlarge": ("A100", 8, 40.0),
    "ml.p4de.24xlarge": ("A100-80GB", 8, 80.0),
    "ml.p5.48xlarge": ("H100", 8, 80.0),
    "ml.p5e.48xlarge": ("H200", 8, 131.3),  # 141 GB
    "ml.p5en.48xlarge": ("H200", 8, 131.3),
    "ml.inf2.xlarge": ("Inferentia2", 2, 16.0),
    "ml.inf2.8xlarge": ("Inferentia2", 2, 16.0),
    "ml.inf2.24xlarge": ("Inferentia2", 12, 16.0),
    "ml.inf2.48xlarge": ("Inferentia2", 24, 16.0),
    "ml.trn1.2xlarge": ("Trainium", 2, 16.0),
    "ml.trn1.32xlarge": ("Trainium", 32, 16.0),
    "ml.trn1n.32xlarge": ("Trainium", 32, 16.0),
}

# Families where SageMaker refuses VolumeSizeInGB (instance storage instead), as sagemaker-core's
# ``volume_size_supported``: any family with a "d" in its name, and these prefixes.
_NO_VOLUME_FAMILY_PREFIXES = ("g5", "g6", "g7e", "p5", "p6-b200", "trn1", "trn2")


@dataclass(frozen=True)
class InstanceType:
    """One instance type's accelerators as lmi-deploy sizes against them."""

    name: str
    accelerator: AcceleratorKind
    accelerator_count: int
    memory_per_accelerator_gib: float

    @property
    def family(self) -> str:
        return self.name.split(".")[1]

    @property
    def is_neuron(self) -> bool:
        return self.accelerator in ("Inferentia2", "Trainium")

    @property
    def accelerator_noun(self) -> str:
        return "NeuronCores" if self.is_neuron else "GPUs"

    @property
    def supports_volume_size(self) -> bool:
        family = self.family
        return "d" not in family and not family.startswith(_NO_VOLUME_FAMILY_PREFIXES)

    def valid_tensor_parallel_degrees(self) -> list[int]:
        """Degrees that split this instance's accelerators evenly into whole model copies."""
        return [d for d in range(1, self.accelerator_count + 1) if self.accelerator_count % d == 0]


def _sagemaker_core_gpu_info() -> dict[str, dict[str, int]]:
    """The ``us-east-1`` table of sagemaker-core's bundled GPU info, read without importing the SDK (slow)."""
    path = metadata.distribution("sagemaker-core").locate_file("sagemaker/core/image_uri_config/instance_gpu_info.json")
    table: dict[str, dict[str, int]] = json.loads(path.read_text())["us-east-1"]
    return table


@cache
def catalog() -> dict[str, InstanceType]:
    """All known instance types by name; sagemaker-core's numbers override the fact sheet's where it has them."""
    sdk = _sagemaker_core_gpu_info()
    result: dict[str, InstanceType] = {}
    for name, (kind, count, mem) in _FACT_SHEET.items():
        if name in sdk and not kind.startswith(("Inferentia", "Trainium")):
            count = sdk[name]["Count"]
            mem = round(sdk[name]["TotalGpuMemoryInMiB"] / count / 1024, 2)
        result[name] = InstanceType(name, kind, count, mem)
    return result


def get(name: str) -> InstanceType | None:
    return catalog().get(name)


# Host (instance) memory in GiB, which inference components reserve with MinMemoryRequiredInMb. From
# aws/sagemaker-hyperpod-cli ``quota_allocation_util.py`` (INSTANCE_RESOURCES) where it lists the type; g4dn, p3,
# p3dn, inf2 and trn1.2xlarge from the EC2 instance-type specifications (the fact sheet does not carry them).
_HOST_MEMORY_GIB: dict[str, int] = {
    **{f"ml.g4dn.{s}": m for s, m in (("xlarge", 16), ("2xlarge", 32), ("4xlarge", 64), ("8xlarge", 128))},
    "ml.g4dn.12xlarge": 192,
    "ml.g4dn.16xlarge": 256,
    **{f"ml.{f}.{s}": m for f in ("g5", "g6") for s, m in (("xlarge", 16), ("2xlarge", 32), ("4xlarge", 64))},
    **{f"ml.{f}.{s}": m for f in ("g5", "g6") for s, m in (("8xlarge", 128), ("16xlarge", 256))},
    **{f"ml.{f}.{s}": m for f in ("g5", "g6") for s, m in (("12xlarge", 192), ("24xlarge", 384), ("48xlarge", 768))},
    **{f"ml.g6e.{s}": m for s, m in (("xlarge", 32), ("2xlarge", 64), ("4xlarge", 128), ("8xlarge", 256))},
    **{f"ml.g6e.{s}": m for s, m in (("16xlarge", 512), ("12xlarge", 384), ("24xlarge", 768), ("48xlarge", 1536))},
    "ml.p3.2xlarge": 61,
    "ml.p3.8xlarge": 244,
    "ml.p3.16xlarge": 488,
    "ml.p3dn.24xlarge": 768,
    "ml.p4d.24xlarge": 1152,
    "ml.p4de.24xlarge": 1152,
    "ml.p5.48xlarge": 2048,
    "ml.p5e.48xlarge": 2048,
    "ml.p5en.48xlarge": 2048,
    "ml.inf2.xlarge": 16,
    "ml.inf2.8xlarge": 128,
    "ml.inf2.24xlarge": 384,
    "ml.inf2.48xlarge": 768,
    "ml.trn1.2xlarge": 32,
    "ml.trn1.32xlarge": 512,
    "ml.trn1n.32xlarge": 512,
}


def host_memory_gib(name: str) -> int | None:
    """The instance's own memory (not its accelerators'), in GiB; None for a type not in the catalog."""
    return _HOST_MEMORY_GIB.get(name)
