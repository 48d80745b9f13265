"""Compile vLLM's Exllama 4-bit GPTQ kernel for compute_61/compute_60 here, for check_gptq_fp32.py.

    python scripts/gpu/make_gptq_ptx.py DEST [VERSION]

VERSION (default 0.34.0) is a vLLM release with a patch series under recipes/vllm/patches/.
DEST then holds four small PTX files, each with only gemm_half_q_half_gptq_4bit_kernel<true, 1>
and <true, 8> (what decode and an 8-row chunk launch), and manifest.json:
- patched-61.ptx: the series applied, compute_61: patch 0040's fp32 loop;
- patched-60.ptx: the series applied, compute_60: the half2 loop, kept for the P100;
- released-61.ptx / released-60.ptx: the release as published (half2 everywhere).
nvcc 12.4 (scripts/setup-cuda12.sh) compiles against the CPU torch wheel's headers, as the cost
model does; the PTX is cached in .cache/costmodel-ptx (first run about 4 compiles of q_gemm.cu).
The GPU machine, which has no nvcc 12, JITs the PTX through its driver (check_gptq_fp32.py).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from pascal_forge.costmodel.compile import CudaSource, cuda_ptx
from pascal_forge.patches import patch_check_target, unpack_artifact
from pascal_forge.recipes import Recipe
from pascal_forge.sources import default_cache_dir
from pascal_forge.vllm_checks import patched_upstream

REPO = Path(__file__).resolve().parents[2]
Q_GEMM = CudaSource("csrc/quantization/gptq/q_gemm.cu")
ENTRIES = {m_count: f"gemm_half_q_half_gptq_4bit_kernelILb1ELi{m_count}E" for m_count in (1, 8)}


def prune(ptx: str, wanted: list[str]) -> tuple[str, dict[int, str]]:
    """The PTX's preamble and only the entries whose mangled name holds one of `wanted`.

    nvcc writes `// .globl NAME` before each entry; the 4-bit kernels call no .func (all inline)
    and declare their shared memory inside the entry.
    """
    sections = re.split(r"\n(?=\t// \.globl\t)", ptx)
    preamble, kept, names = sections[0], [], {}
    for section in sections[1:]:
        name = section.split("\t", 3)[2].strip().splitlines()[0]
        for m_count, entry in ENTRIES.items():
            if entry in name and entry in wanted:
                kept.append(section)
                names[m_count] = name
    if len(names) != len(wanted):
        raise SystemExit(f"q_gemm.cu's PTX lacks one of {wanted} (vLLM renamed the kernel?)")
    return preamble + "\n" + "\n".join(kept) + "\n", names


def main(dest: Path, version: str = "0.34.0") -> int:
    recipe = Recipe(name="vllm", directory=REPO / "recipes" / "vllm")
    target = patch_check_target(recipe, version)
    if target is None:
        raise SystemExit(f"recipes/vllm has no patch-check artifact for {version}")
    nvcc = REPO / ".cache" / "cuda12" / "bin" / "nvcc"
    include = Path(torch.__file__).parent / "include"
    cache = REPO / ".cache" / "costmodel-ptx"
    manifest: dict[str, object] = {"vllm": version, "kernels": {}}
    with tempfile.TemporaryDirectory(prefix="pascal-forge-gptq-") as scratch:
        trees = {
            "released": unpack_artifact(target, Path(scratch) / "released", default_cache_dir()),
            "patched": patched_upstream(
                recipe,
                REPO / "conda_build_config.yaml",
                Path(scratch) / "patched",
                default_cache_dir(),
                version,
            ),
        }
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for kind, tree in trees.items():
            for capability in (61, 60):
                ptx = cuda_ptx(Q_GEMM, capability, tree, include, nvcc, cache)
                small, names = prune(ptx, list(ENTRIES.values()))
                file = f"{kind}-{capability}.ptx"
                (dest / file).write_text(small)
                manifest["kernels"][file] = {str(m): name for m, name in names.items()}
                print(f"{file}: {len(small)} bytes, entries {sorted(names)}")
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), *sys.argv[2:3]))
