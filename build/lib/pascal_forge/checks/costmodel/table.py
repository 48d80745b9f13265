"""The PTX counts of every kernel the modelled steps launch, for sm_60 and sm_61."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .compile import CostModelError, CudaSource, cuda_ptx, select_entry, triton_ptx
from .kernels import Kernel
from .ptx import KernelCounts, Loop, OpCounts, count_ptx


@dataclass(frozen=True)
class Toolchain:
    """Where the sources and compilers are."""

    vllm_tree: Path  # the patched vLLM sdist
    repository: Path  # this repository (the proposed kernels)
    triton_tree: Path  # the patched triton wheel, unpacked
    torch_include: Path
    nvcc: Path
    cache_dir: Path
    # The vLLM tree with this branch's whole series, for kernels marked `patched`.
    patched_vllm_tree: Path | None = None


def kernel_counts(kernel: Kernel, capability: int, tools: Toolchain) -> KernelCounts:
    source = kernel.source
    tree = tools.vllm_tree
    if kernel.patched:
        if tools.patched_vllm_tree is None:
            raise CostModelError(f"{kernel.name}: the toolchain names no patched vLLM tree")
        tree = tools.patched_vllm_tree
    if isinstance(source, CudaSource):
        ptx = cuda_ptx(source, capability, tree, tools.torch_include, tools.nvcc, tools.cache_dir)
        return select_entry(count_ptx(ptx), kernel.entry, source.path)
    root = tools.repository if kernel.in_repository else tree
    ptx = triton_ptx(source, capability, root, tools.triton_tree, tools.cache_dir)
    (only,) = count_ptx(ptx).values()
    return only


def build_table(
    kernels: Iterable[Kernel], capabilities: Iterable[int], tools: Toolchain
) -> dict[tuple[str, int], KernelCounts]:
    """Compile (or read from the cache) every kernel for every capability; CUDA files one at a time."""
    ordered = sorted(kernels, key=lambda kernel: (kernel.origin, kernel.name))
    return {
        (kernel.name, cap): kernel_counts(kernel, cap, tools) for cap in capabilities for kernel in ordered
    }


# The counts the benchmark compiled last, shipped with the package so that `pascal-forge bench`
# can print a prediction on an owner's machine without vLLM's sources or nvcc.
SHIPPED_COUNTS = Path(__file__).resolve().parent / "kernel_counts.json"


def save_table(table: dict[tuple[str, int], KernelCounts], path: Path) -> None:
    rows = [
        {"kernel": name, "capability": capability, "counts": asdict(counts)}
        for (name, capability), counts in sorted(table.items())
    ]
    path.write_text(json.dumps(rows, indent=1) + "\n")


def load_table(path: Path = SHIPPED_COUNTS) -> dict[tuple[str, int], KernelCounts]:
    """The table `save_table` wrote (by default the one shipped with the package)."""
    if not path.is_file():
        raise CostModelError(f"{path}: no kernel counts; run benchmarks/bench_costmodel.py --write-counts")
    table = {}
    for row in json.loads(path.read_text()):
        counts = row["counts"]
        loops = [
            Loop(**{**loop, "body": OpCounts(**loop["body"]), "tail": OpCounts(**loop["tail"])})
            for loop in counts["loops"]
        ]
        table[(row["kernel"], row["capability"])] = KernelCounts(
            counts["name"], OpCounts(**counts["outside"]), loops
        )
    return table
