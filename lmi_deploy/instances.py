"""Catalog of the SageMaker instance types LLM endpoints use: accelerators, their memory, volume support.

GPU counts and memory come from sagemaker-core's bundled ``instance_gpu_info.json`` where it lists the type;
the rest (g6, g6e, p5e/p5en, inf2, trn1, and g5.xlarge, which the JSON lacks) from the fact sheet
(``shared/reference/lmi-serving.md`` §7). Per-accelerator speed (memory bandwidth, 16-bit and fp32 FLOP/s) and how the
accelerators of one instance are linked come from the vendors' datasheets, each entry naming its source.
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


@dataclass(frozen=True)
class AcceleratorSpeed:
    """One accelerator's peak numbers as its vendor publishes them: per GPU, or per NeuronCore on inf2/trn1 (half
    of a chip's). ``tflops_16bit`` is the dense tensor-core peak in bf16 (fp16 on T4/V100, which have no bf16)."""

    memory_bandwidth_gb_s: float
    tflops_16bit: float
    tflops_fp32: float
    source: str


ACCELERATOR_SPEED: dict[AcceleratorKind, AcceleratorSpeed] = {
    "T4": AcceleratorSpeed(320, 65, 8.1, "NVIDIA T4 datasheet: 320 GB/s GDDR6, 65 TFLOPS FP16 mixed, 8.1 FP32"),
    "A10G": AcceleratorSpeed(
        600,
        125,
        31.2,
        "NVIDIA A10 datasheet (none is published for the A10G): 600 GB/s, 125 TFLOPS BF16 dense, 31.2 FP32",
    ),
    "L4": AcceleratorSpeed(
        300, 121, 30.3, "NVIDIA L4 datasheet: 300 GB/s, 242 TFLOPS BF16 sparse (121 dense), 30.3 FP32"
    ),
    "L40S": AcceleratorSpeed(
        864, 362, 91.6, "NVIDIA L40S datasheet: 864 GB/s, 733 TFLOPS BF16 sparse (362 dense), 91.6 FP32"
    ),
    "V100": AcceleratorSpeed(900, 125, 15.7, "NVIDIA V100 SXM2 datasheet: 900 GB/s HBM2, 125 TFLOPS FP16, 15.7 FP32"),
    "A100": AcceleratorSpeed(
        1555, 312, 19.5, "NVIDIA A100 datasheet, 40GB SXM: 1,555 GB/s, 312 TFLOPS BF16, 19.5 FP32"
    ),
    "A100-80GB": AcceleratorSpeed(
        2039, 312, 19.5, "NVIDIA A100 datasheet, 80GB SXM: 2,039 GB/s, 312 TFLOPS BF16, 19.5 FP32"
    ),
    "H100": AcceleratorSpeed(
        3350, 989, 67, "NVIDIA H100 SXM datasheet: 3.35 TB/s, 1,979 TFLOPS BF16 sparse (989 dense), 67 FP32"
    ),
    "H200": AcceleratorSpeed(4800, 989, 67, "NVIDIA H200 SXM datasheet: 4.8 TB/s, 1,979 TFLOPS BF16 sparse, 67 FP32"),
    "Inferentia2": AcceleratorSpeed(
        410,
        95,
        23.75,
        "AWS Neuron docs, Inferentia2 architecture: per chip (2 NeuronCore-v2) 820 GB/s, 190 BF16 TFLOPS",
    ),
    "Trainium": AcceleratorSpeed(
        410, 95, 23.75, "AWS Neuron docs, Trainium architecture: per chip (2 NeuronCore-v2) 820 GB/s, 190 BF16 TFLOPS"
    ),
}


@dataclass(frozen=True)
class Interconnect:
    """How one instance's accelerators exchange tensor-parallel partial sums."""

    name: str
    gb_s: float  # per accelerator, one direction
    source: str


# Links by instance family. GPUs of g4dn/g5/g6/g6e talk over PCIe only (no NVLink on T4, A10G, L4, L40S).
_PCIE4 = Interconnect("PCIe (no NVLink)", 32, "PCIe Gen4 x16: 32 GB/s per direction (g5, g6, g6e; g4dn is Gen3)")
_INTERCONNECTS: dict[str, Interconnect] = {
    "g4dn": Interconnect("PCIe (no NVLink)", 16, "PCIe Gen3 x16: 16 GB/s per direction"),
    "g5": _PCIE4,
    "g6": _PCIE4,
    "g6e": _PCIE4,
    "p3": Interconnect("NVLink", 150, "NVIDIA V100 SXM2 datasheet: NVLink 300 GB/s (both directions)"),
    "p3dn": Interconnect("NVLink", 150, "NVIDIA V100 SXM2 datasheet: NVLink 300 GB/s (both directions)"),
    "p4d": Interconnect("NVLink (NVSwitch)", 300, "NVIDIA A100 datasheet: NVLink 600 GB/s (both directions)"),
    "p4de": Interconnect("NVLink (NVSwitch)", 300, "NVIDIA A100 datasheet: NVLink 600 GB/s (both directions)"),
    "p5": Interconnect("NVLink (NVSwitch)", 450, "NVIDIA H100 SXM datasheet: NVLink 900 GB/s (both directions)"),
    "p5e": Interconnect("NVLink (NVSwitch)", 450, "NVIDIA H200 SXM datasheet: NVLink 900 GB/s (both directions)"),
    "p5en": Interconnect("NVLink (NVSwitch)", 450, "NVIDIA H200 SXM datasheet: NVLink 900 GB/s (both directions)"),
    "inf2": Interconnect(
        "NeuronLink-v2",
        192,
        "384 GB/s both ways: half of Trainium's, 2 NeuronLink-v2 ports per chip vs 4 (Neuron NKI architecture guide)",
    ),
    "trn1": Interconnect(
        "NeuronLink-v2", 384, "AWS trn1 instance page: NeuronLink-v2 768 GB/s per chip (both directions)"
    ),
    "trn1n": Interconnect(
        "NeuronLink-v2", 384, "AWS trn1 instance page: NeuronLink-v2 768 GB/s per chip (both directions)"
    ),
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

    @property
    def speed(self) -> AcceleratorSpeed:
        return ACCELERATOR_SPEED[self.accelerator]

    @property
    def interconnect(self) -> Interconnect:
        return _INTERCONNECTS[self.family]

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
