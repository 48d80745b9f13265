"""What is true of Pascal GPUs, written once: their architectures, limits, cards and drivers.

Which architectures the recipes build for is not here: that is conda_build_config.yaml's
`cuda_arch_list` (recipes.variants.arch_list); `capabilities` turns it into numbers. Standard
library only: the GPU harness (scripts/gpu/) carries this file to a machine without the tool's
dependencies, and `pascal-forge doctor` runs before anything else is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

# Compute capabilities of the Pascal family: P100 (6.0), P40/P4/GTX 10xx (6.1), Jetson TX2 (6.2).
PASCAL_ARCHES = ("6.0", "6.1", "6.2")
PASCAL_MAJOR = 6
# CUDA 13's nvcc and ptxas reject every target below sm_75.
FIRST_CUDA_WITHOUT_PASCAL = 13

# Both sm_60 and sm_61 allow 48 KB of shared memory per block; per SM, each card says (Card).
SHARED_MEMORY_PER_BLOCK = 49152


def capability(arch: str) -> int:
    """One TORCH_CUDA_ARCH_LIST entry as a compute capability number: "6.1" (or "6.1+PTX") -> 61."""
    major, minor = arch.strip().removesuffix("+PTX").split(".")
    return int(major) * 10 + int(minor)


def capabilities(arch_list: str) -> tuple[int, ...]:
    """A TORCH_CUDA_ARCH_LIST as compute capability numbers: "6.0;6.1" -> (60, 61)."""
    return tuple(capability(arch) for arch in arch_list.replace(" ", ";").split(";") if arch.strip())


@dataclass(frozen=True)
class Card:
    """One Pascal card as CUDA's device properties describe it."""

    name: str  # cudaDeviceProp.name, as torch.cuda.get_device_name answers
    capability: int
    sms: int
    memory_gib: int
    l2_kib: int
    # CUDA C++ Programming Guide, technical specifications per compute capability: 64 KB on
    # 6.0, 96 KB on 6.1.
    shared_memory_per_sm: int

    @property
    def major_minor(self) -> tuple[int, int]:
        """(6, 1), as torch.cuda.get_device_capability answers."""
        major, minor = divmod(self.capability, 10)
        return major, minor

    @property
    def arch(self) -> str:
        """ "6.1", as TORCH_CUDA_ARCH_LIST and __cuda_arch write it."""
        return "{}.{}".format(*self.major_minor)


# Tesla P100 (PCIe 16 GB, GP100) and Tesla P40 (GP102).
P100 = Card("Tesla P100-PCIE-16GB", 60, sms=56, memory_gib=16, l2_kib=4096, shared_memory_per_sm=65536)
P40 = Card("Tesla P40", 61, sms=30, memory_gib=24, l2_kib=3072, shared_memory_per_sm=98304)
CARDS = {card.capability: card for card in (P100, P40)}

# Driver branch -> the CUDA version it reports (NVIDIA's CUDA Toolkit release notes, Linux).
# R580 is the last branch that supports Pascal; it reports CUDA 13.0.
DRIVER_CUDA = {
    580: "13.0",
    575: "12.9",
    570: "12.8",
    565: "12.7",
    560: "12.6",
    555: "12.5",
    550: "12.4",
    545: "12.3",
    535: "12.2",
    530: "12.1",
    525: "12.0",
}
LAST_PASCAL_BRANCH = 580
LAST_PASCAL_DRIVER = f"R{LAST_PASCAL_BRANCH}"
# The CUDA version the last Pascal driver reports: the machine a driver upgrade gives.
LAST_PASCAL_DRIVER_CUDA = DRIVER_CUDA[LAST_PASCAL_BRANCH]
# Our oldest CUDA build (conda_build_config.yaml, cuda_compiler_version). Our packages carry
# `__cuda >=<their CUDA>`, so an older driver gets a solver message instead of a broken install.
MIN_DRIVER_CUDA = "12.6"
