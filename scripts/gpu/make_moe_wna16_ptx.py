"""Compile vLLM's moe_wna16 kernel for compute_61/compute_60 here, for check_moe_wna16_fp32.py.

    python scripts/gpu/make_moe_wna16_ptx.py DEST [VERSION]

VERSION (default: the current stack's, conda_build_config.yaml) is a vLLM release with a patch
series under recipes/vllm/patches/.
DEST then holds four small PTX files, each with only the half moe_wna16_gemm_kernel entries of
ENTRIES, and manifest.json:
- patched-61.ptx: the whole series, compute_61: patch 0042's fp32 loop (float shared memory);
- patched-60.ptx: the whole series, compute_60: the half2 loop, kept for the P100;
- before-61.ptx / before-60.ptx: the series less 0042 (vLLM's half2 loop; the released file does
  not compile below sm_70 without patch 0003's half add).
nvcc 12.4 (scripts/setup-cuda12.sh) compiles against the CPU torch wheel's headers, as the cost
model does; the PTX is cached in .cache/costmodel-ptx (first run 4 compiles of moe_wna16.cu,
about 20 s each). The GPU machine, which has no nvcc 12, JITs the PTX through its driver.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from make_gptq_ptx import VARIANT_CONFIG, vllm_trees, write_ptx

from pascal_forge.checks.costmodel.compile import CudaSource
from pascal_forge.checks.vllm.compile import current_release

MOE_WNA16 = CudaSource("csrc/moe/moe_wna16.cu")
PATCH = "0042"  # recipes/vllm/patches/<version>/0042-moe-wna16-fp32-math-on-sm61.patch
# moe_wna16_gemm_kernel<half, bit, GROUPS>: GROUPS = BLOCK_SIZE_K / group_size. vLLM's decode
# picks BLOCK_SIZE_K 128 to 512 (get_moe_wna16_block_config) for group size 128; its CUDA path
# takes 4-bit weights only (should_moe_wna16_use_cuda), 8-bit is compiled and checked anyway.
ENTRY = "moe_wna16_gemm_kernelI6__halfLi{bit}ELi{groups}E"
ENTRIES = {
    f"{bit}-{groups}": ENTRY.format(bit=bit, groups=groups)
    for bit, groups in ((4, 1), (4, 2), (4, 4), (8, 1))
}


def main(dest: Path, version: str | None = None) -> int:
    version = version or current_release(VARIANT_CONFIG).version
    with tempfile.TemporaryDirectory(prefix="pascal-forge-moe-wna16-") as scratch:
        trees = vllm_trees(Path(scratch), version, "before", leave_out_patches=(PATCH,))
        write_ptx(dest, version, MOE_WNA16, ENTRIES, trees)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), *sys.argv[2:3]))
