"""Compile vLLM's Exllama 4-bit GPTQ kernel for compute_61/compute_60 here, for check_gptq_fp32.py.

    python scripts/gpu/make_gptq_ptx.py DEST [VERSION]

VERSION (default: the current stack's, conda_build_config.yaml) is a vLLM release with a patch
series under recipes/vllm/patches/.
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

from pascal_forge.checks.costmodel.compile import CudaSource, cuda_ptx
from pascal_forge.checks.vllm.compile import current_release, patched_upstream
from pascal_forge.pascal import P40, P100
from pascal_forge.recipes.patches import patch_check_target, unpack_artifact
from pascal_forge.recipes.recipe import Recipe
from pascal_forge.upstream.artifacts import default_cache_dir

REPO = Path(__file__).resolve().parents[2]
VARIANT_CONFIG = REPO / "conda_build_config.yaml"
Q_GEMM = CudaSource("csrc/quantization/gptq/q_gemm.cu")
ENTRIES = {m_count: f"gemm_half_q_half_gptq_4bit_kernelILb1ELi{m_count}E" for m_count in (1, 8)}


def prune(ptx: str, entries: dict[str, str], path: str) -> tuple[str, dict[str, str]]:
    """The PTX's preamble and only the entries whose mangled name holds one of `entries`' values.

    nvcc writes `// .globl NAME` before each entry; the kernels kept call no .func (all inline)
    and declare their shared memory inside the entry (or as the shared extern they name).
    Returns the pruned PTX and, per key of `entries`, the full mangled name.
    """
    sections = re.split(r"\n(?=\t// \.globl\t)", ptx)
    # A module-scope `.extern .shared` array (moe_wna16's dynamic shared memory) is written after
    # the first `.globl` comment: it moves to the preamble, so it stays whichever entry is kept.
    shared = re.compile(r"^\.extern \.shared [^\n]*;\n", re.MULTILINE)
    declarations = sorted({d for section in sections[1:] for d in shared.findall(section)})
    sections = [sections[0] + "\n" + "".join(declarations)] + [shared.sub("", s) for s in sections[1:]]
    preamble, kept, names = sections[0], [], {}
    for section in sections[1:]:
        name = section.split("\t", 3)[2].strip().splitlines()[0]
        for key, entry in entries.items():
            if entry in name:
                kept.append(section)
                names[key] = name
    if len(names) != len(entries):
        raise SystemExit(f"{path}'s PTX lacks one of {sorted(entries.values())} (vLLM renamed the kernel?)")
    return preamble + "\n" + "\n".join(kept) + "\n", names


def write_ptx(
    dest: Path, version: str, source: CudaSource, entries: dict[str, str], trees: dict[str, Path]
) -> None:
    """DEST/<tree>-<61|60>.ptx, pruned to `entries`, for each named vLLM tree, and manifest.json."""
    nvcc = REPO / ".cache" / "cuda12" / "bin" / "nvcc"
    include = Path(torch.__file__).parent / "include"
    cache = REPO / ".cache" / "costmodel-ptx"
    manifest: dict[str, object] = {"vllm": version, "source": source.path, "kernels": {}}
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for kind, tree in trees.items():
        for capability in (P40.capability, P100.capability):
            ptx = cuda_ptx(source, capability, tree, include, nvcc, cache)
            small, names = prune(ptx, entries, source.path)
            file = f"{kind}-{capability}.ptx"
            (dest / file).write_text(small)
            manifest["kernels"][file] = names
            print(f"{file}: {len(small)} bytes, entries {sorted(names)}")
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def vllm_trees(
    scratch: Path, version: str, before: str, leave_out_patches: tuple[str, ...] = ()
) -> dict[str, Path]:
    """ "patched": the release with the recipe's whole series; `before`: the release as published
    ("released") or, given `leave_out_patches`, with the series less those patches."""
    recipe = Recipe(name="vllm", directory=REPO / "recipes" / "vllm")
    target = patch_check_target(recipe, version)
    if target is None:
        raise SystemExit(f"recipes/vllm has no patch-check artifact for {version}")
    config = VARIANT_CONFIG
    if leave_out_patches:
        reference = patched_upstream(
            recipe,
            config,
            scratch / before,
            default_cache_dir(),
            version,
            leave_out_patches=leave_out_patches,
        )
    else:
        reference = unpack_artifact(target, scratch / before, default_cache_dir())
    patched = patched_upstream(recipe, config, scratch / "patched", default_cache_dir(), version)
    return {before: reference, "patched": patched}


def main(dest: Path, version: str | None = None) -> int:
    version = version or current_release(VARIANT_CONFIG).version
    with tempfile.TemporaryDirectory(prefix="pascal-forge-gptq-") as scratch:
        write_ptx(
            dest,
            version,
            Q_GEMM,
            {str(m): e for m, e in ENTRIES.items()},
            vllm_trees(Path(scratch), version, "released"),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), *sys.argv[2:3]))
