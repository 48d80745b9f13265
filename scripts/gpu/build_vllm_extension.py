"""Build the current release's CUDA extension for Pascal here, for the engine run on the lent GPU.

    python scripts/gpu/build_vllm_extension.py WORK OUT [--jobs 2] [--cuda-branch 12.9]

WORK keeps the patched tree and CMake's build folder (ninja resumes there after a stop);
OUT receives what prepare_engine_carry.py --extension carries:

- `_C_stable_libtorch.abi3.so`, `_moe_C_stable_libtorch.abi3.so` and three host modules
  (`cumem_allocator`, `fs_io_C`, `spinloop`): vLLM's own CMakeLists.txt, configured offline
  for conda_build_config.yaml's TORCH_CUDA_ARCH_LIST with the CUDA 12 nvcc of scripts/setup-cuda12.sh, built
  with ninja from the sdist with its whole series;
- `libcudart.so.12`, the CUDA 12 runtime they link (the device's torch brings CUDA 13's);
- `compile-times.tsv`, seconds per object from ninja's log (the full-compile count of issue 24).

Two things differ from a recipe build, both because this host has no torch with CUDA:
- Each sm_61 target also embeds compute_61 PTX. vLLM normalises the arch list per source and
  drops a global "+PTX" request (cmake/utils.cmake), so the gencode is widened in build.ninja.
  A non-Pascal GPU then JIT-compiles the sm_61 code path from that PTX, `__CUDA_ARCH__ == 610`
  branches included, which is what the Pascal-form run needs.
- The fake TorchConfig of vllm_checks links no torch library, so the modules get torch's
  libraries as DT_NEEDED entries afterwards. They are the stable-ABI build
  (TORCH_TARGET_VERSION 2.11): their only torch symbols are the `aoti_torch_*` C shims, which the
  device's torch 2.11 exports, and the sonames resolve to the torch that the process has loaded.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

from pascal_forge.checks.vllm.compile import (  # noqa: E402
    CUTLASS_WHEEL,
    configure_pascal_build,
    current_release,
    patched_upstream,
    unpack_members,
)
from pascal_forge.pascal import P40  # noqa: E402
from pascal_forge.recipes.recipe import Recipe  # noqa: E402
from pascal_forge.recipes.variants import arch_list  # noqa: E402

VARIANT_CONFIG = REPO / "conda_build_config.yaml"
UPSTREAM_CACHE = REPO / ".cache" / "upstream"
HEADERS_CACHE = REPO / ".cache" / "vllm-headers"
SETUP_CUDA12 = REPO / "scripts" / "setup-cuda12.sh"
# Every module vLLM's CMake defines for CUDA; the last three are host code (no kernels).
MODULES = ("_C_stable_libtorch", "_moe_C_stable_libtorch", "cumem_allocator", "fs_io_C", "spinloop")
# The torch libraries whose symbols the stable-ABI modules use (aoti_torch_* shims: CPU ones in
# libtorch_cpu, the CUDA stream and guard ones in libtorch_cuda).
TORCH_NEEDED = ("libtorch_cpu.so", "libtorch_cuda.so", "libc10.so", "libc10_cuda.so")
# GPTQ's reconstruct-then-GEMM path (q_gemm.cu, patch 0041) calls cublasGemmEx/cublasHgemm, which a
# recipe build gets through torch's CUDA libraries. Here they resolve to the cuBLAS that the device's
# torch (CUDA 13) has loaded; the two calls keep their signatures across 12 and 13.
CUBLAS_NEEDED = "libcublas.so.13"
# The P40's code, whose PTX the Pascal-form run JIT-compiles on a newer card.
PTX_ARCH = str(P40.capability)


@dataclass(frozen=True)
class BuiltExtension:
    modules: list[Path]
    runtime: Path
    compile_times: dict[str, float]


def cuda12_root() -> Path:
    result = subprocess.run(["bash", str(SETUP_CUDA12)], capture_output=True, text=True, check=True)
    return Path(result.stdout.strip().splitlines()[-1])


def embed_ptx(build_ninja: Path, arch: str = PTX_ARCH) -> int:
    """Widen every sm_`arch` gencode to also embed compute_`arch` PTX; return how many changed."""
    text = build_ninja.read_text()
    narrow = f"-gencode arch=compute_{arch},code=sm_{arch}"
    wide = f"-gencode arch=compute_{arch},code=[sm_{arch},compute_{arch}]"
    build_ninja.write_text(text.replace(narrow, wide))
    return text.count(narrow)


def compile_times(ninja_log: Path) -> dict[str, float]:
    """Seconds per output of the last build of each, from ninja's log (v5: start, end in ms)."""
    times: dict[str, float] = {}
    for line in ninja_log.read_text().splitlines()[1:]:
        start, end, _mtime, output, _hash = line.split("\t")
        times[output] = (int(end) - int(start)) / 1000
    return times


def build(work: Path, jobs: int, cuda_branch: str) -> BuiltExtension:
    release = current_release(VARIANT_CONFIG)
    recipe = Recipe(name="vllm", directory=REPO / "recipes" / "vllm")
    tree = work / "tree" / f"vllm-{release.version}"
    if not tree.exists():
        tree = patched_upstream(recipe, VARIANT_CONFIG, work / "tree", UPSTREAM_CACHE, release.version)
    torch_include = unpack_members(
        release.torch_wheel, "torch/include/", HEADERS_CACHE / release.torch_wheel.sha256, UPSTREAM_CACHE
    )
    cutlass = unpack_members(
        CUTLASS_WHEEL, "cutlass_library/source/", HEADERS_CACHE / CUTLASS_WHEEL.sha256, UPSTREAM_CACHE
    )
    cuda = cuda12_root()
    cmake_dir = work / "build" / "cmake"
    if not (cmake_dir / "build.ninja").exists():
        configure_pascal_build(
            tree, work / "build", cuda, torch_include, cutlass, arch_list=arch_list(VARIANT_CONFIG),
            torch_version=release.torch_version, cuda_version=cuda_branch,
        )  # fmt: skip
        print(f"compute_{PTX_ARCH} PTX added to {embed_ptx(cmake_dir / 'build.ninja')} compile commands")
    subprocess.run(["ninja", "-j", str(jobs), *MODULES], cwd=cmake_dir, check=True)
    return BuiltExtension(
        modules=[cmake_dir / f"{name}.abi3.so" for name in MODULES],
        runtime=(cuda / "lib64" / "libcudart.so.12").resolve(),
        compile_times=compile_times(cmake_dir / ".ninja_log"),
    )


def package(built: BuiltExtension, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for module in built.modules:
        target = out / module.name
        shutil.copy2(module, target)
        if module.name.startswith(("_C_", "_moe_C_")):
            added = [arg for lib in (*TORCH_NEEDED, CUBLAS_NEEDED) for arg in ("--add-needed", lib)]
            subprocess.run(["patchelf", *added, str(target)], check=True)
    shutil.copy2(built.runtime, out / "libcudart.so.12")
    rows = sorted(built.compile_times.items(), key=lambda item: -item[1])
    objects = [(name, seconds) for name, seconds in rows if re.search(r"\.(cu|cpp)\.o$", name)]
    (out / "compile-times.tsv").write_text("".join(f"{seconds:.1f}\t{name}\n" for name, seconds in objects))
    for path in sorted(out.iterdir()):
        print(f"{path.stat().st_size / 2**20:8.1f} MiB  {path.name}")
    print(f"{len(objects)} objects, {sum(s for _, s in objects) / 60:.0f} min of compile time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cuda-branch", default="12.9", help="the CUDA version vLLM's arch branches see")
    args = parser.parse_args()
    package(build(args.work.resolve(), args.jobs, args.cuda_branch), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
