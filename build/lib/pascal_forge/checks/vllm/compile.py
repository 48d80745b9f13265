"""Compile checks of each stack's vLLM for Pascal on its real, patched sources.

Two checks, both against the released sdist with our patch series applied:

- CUDA: vLLM's own CMakeLists.txt is configured offline for the TORCH_CUDA_ARCH_LIST of
  conda_build_config.yaml with a CUDA 12 nvcc; every source file it selects is then compiled
  with the exact command CMake wrote to compile_commands.json.
- Triton: vLLM's own kernel launchers run in a child process that reports compute
  capability 6.x; each launch compiles the kernel for that target (nothing runs), and the
  compiled kernel's shared memory is compared with Pascal's 48 KB per block.

Torch's CUDA CMake config cannot run without a full CUDA install, so the configure step
uses a small Torch package config (TORCH_CONFIG below) that does what torch's does for
vLLM: the real headers of the stack's torch, torch's nvcc flags and one -gencode per listed arch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from ...errors import PascalForgeError
from ...pascal import CARDS, SHARED_MEMORY_PER_BLOCK, Card
from ...recipes.patches import apply_series, patch_check_target, recipe_patch_series, unpack_artifact
from ...recipes.recipe import Recipe
from ...recipes.variants import stacks
from ...upstream.artifacts import UpstreamArtifact, fetch
from .. import PACKAGE_ROOT

# CUTLASS headers: vLLM 0.14.0 pins v4.2.1 and 0.34.0 v4.7.1 (git tags); the newest release
# on PyPI is 4.2.0, whose include/ differs from v4.2.1 only in version.h and two SM100
# epilogue files. A Pascal build includes CUTLASS only in the scaled_mm/nvfp4 entry points
# and the AWQ GEMM, which use its basic types.
CUTLASS_WHEEL = UpstreamArtifact(
    project="nvidia-cutlass",
    filename="nvidia_cutlass-4.2.0.0-py3-none-any.whl",
    sha256="f9599ada45c7bcb6bf53f7d3f0a7d154183e53451c01bfa59eecd37dd4a693f6",
)
_CUTLASS_SOURCE = "cutlass_library/source"


@dataclass(frozen=True)
class CheckInputs:
    """What the checks of one vLLM release need that conda_build_config.yaml does not say."""

    # The x86_64 CUDA build of its stack's torch holds the headers a CUDA extension compiles
    # against, generated CUDA config headers included (c10/cuda/impl/cuda_cmake_macros.h).
    torch_wheel: UpstreamArtifact
    # Its Python requirements clash with the venv's (0.34.0 wants transformers >= 5.16.1,
    # 0.14.0 < 5), so they go in a folder of their own (scripts/setup-vllm-deps.sh).
    own_deps: bool


# By the vllm_version of each stack; the stack's torch and triton come from the config.
CHECK_INPUTS = {
    "0.14.0": CheckInputs(
        torch_wheel=UpstreamArtifact(
            project="torch",
            filename="torch-2.9.1-cp311-cp311-manylinux_2_28_x86_64.whl",
            sha256="d033ff0ac3f5400df862a51bdde9bad83561f3739ea0046e68f5401ebfa67c1b",
        ),
        own_deps=False,
    ),
    "0.34.0": CheckInputs(
        torch_wheel=UpstreamArtifact(
            project="torch",
            filename="torch-2.14.0-cp311-cp311-manylinux_2_28_x86_64.whl",
            sha256="8d9e232b6376c62f3090237889fb1cb6887c0ece9f73e6c1052e80fc1481f999",
        ),
        own_deps=True,
    ),
}


@dataclass(frozen=True)
class VllmRelease:
    """What the checks of one stack's vLLM release need besides its sdist."""

    version: str
    torch_version: str  # the torch of its stack (conda_build_config.yaml)
    triton_version: str  # the triton of its stack
    torch_wheel: UpstreamArtifact  # CheckInputs'
    own_deps: bool  # CheckInputs'


TORCH_CONFIG = """\
# What torch's CUDA TorchConfig gives vLLM's CMakeLists: CUDA enabled through
# CUDAToolkit, torch's nvcc flags (Caffe2/public/cuda.cmake), one -gencode per arch of
# TORCH_CUDA_ARCH_LIST, CMAKE_CUDA_ARCHITECTURES off, and an interface target `torch`.
set(Torch_VERSION "@TORCH_VERSION@")
enable_language(CUDA)
# The CUDA version vLLM's arch-list branches see: the compiler's, unless the check asks for
# another branch (no CUDA >= 12.8 nvcc that targets sm_60 installs from PyPI or Debian).
if(DEFINED PASCAL_FORGE_CUDA_VERSION)
  set(CMAKE_CUDA_COMPILER_VERSION "${PASCAL_FORGE_CUDA_VERSION}")
endif()
set(CMAKE_CUDA_ARCHITECTURES OFF)
find_package(CUDAToolkit REQUIRED)
set(CUDA_FOUND TRUE)
set(CUDA_VERSION "${CUDAToolkit_VERSION}")
get_filename_component(CUDA_TOOLKIT_ROOT_DIR "${CUDAToolkit_BIN_DIR}" DIRECTORY)
string(REPLACE ";" " " _torch_arch_list "$ENV{TORCH_CUDA_ARCH_LIST}")
separate_arguments(_torch_arch_list)
foreach(_arch ${_torch_arch_list})
  string(REPLACE "." "" _num "${_arch}")
  string(APPEND CMAKE_CUDA_FLAGS " -gencode arch=compute_${_num},code=sm_${_num}")
endforeach()
string(APPEND CMAKE_CUDA_FLAGS " -Xfatbin -compress-all --expt-relaxed-constexpr --expt-extended-lambda")
add_library(torch INTERFACE IMPORTED)
set_target_properties(torch PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${TORCH_INCLUDE_ROOT};${TORCH_INCLUDE_ROOT}/torch/csrc/api/include"
  INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=1")
set(TORCH_LIBRARIES torch)
set(Torch_FOUND TRUE)
"""
TORCH_CONFIG_VERSION = 'set(PACKAGE_VERSION "@TORCH_VERSION@")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n'


class VllmCheckError(PascalForgeError):
    """A vLLM compile check could not be set up (toolchain, configure step, sources)."""


# --------------------------------------------------------------------------- sources


def releases(variant_config: Path) -> dict[str, VllmRelease]:
    """Each stack's vLLM release by version, the seed's first: the config's stacks and CHECK_INPUTS."""
    found = {}
    for stack in stacks(variant_config):
        inputs = CHECK_INPUTS.get(stack.vllm)
        if inputs is None:
            raise VllmCheckError(
                f"{variant_config}: vllm_version {stack.vllm} has no entry in checks.vllm.compile."
                f"CHECK_INPUTS (it knows {', '.join(CHECK_INPUTS)}): add its torch wheel there"
            )
        if not inputs.torch_wheel.filename.startswith(f"torch-{stack.pytorch}-"):
            raise VllmCheckError(
                f"{variant_config}: vLLM {stack.vllm}'s stack has torch {stack.pytorch}, but its "
                f"CHECK_INPUTS wheel is {inputs.torch_wheel.filename}: give it that torch's wheel"
            )
        found[stack.vllm] = VllmRelease(
            stack.vllm, stack.pytorch, stack.triton, inputs.torch_wheel, inputs.own_deps
        )
    return found


def seed_release(variant_config: Path) -> VllmRelease:
    """The vLLM release of the seed (oldest) stack."""
    return next(iter(releases(variant_config).values()))


def current_release(variant_config: Path) -> VllmRelease:
    """The vLLM release of the current (newest) stack: the highest `vllm_version` of the config."""
    return list(releases(variant_config).values())[-1]


def patched_upstream(
    recipe: Recipe,
    variant_config: Path,
    destination: Path,
    cache_dir: Path | None,
    version: str,
    leave_out: Collection[str] = (),
    leave_out_patches: Collection[str] = (),
) -> Path:
    """One version's `extra: patch-check:` artifact unpacked under `destination`, its series applied.

    Patches that change any of the upstream files in `leave_out` are not applied (those files
    stay as released; the series' other patches must not depend on them), nor those whose
    number (the file name's `NNNN-` prefix) is in `leave_out_patches`.
    """
    target = patch_check_target(recipe, version)
    if target is None:
        raise VllmCheckError(
            f"{recipe.path}: no `extra: patch-check: {version}:` artifact to build the check on"
        )
    tree = unpack_artifact(target, destination, cache_dir)
    series = recipe_patch_series(recipe, variant_config, version)
    touched = [f"+++ b/{path}" for path in leave_out]
    series = [patch for patch in series if not any(t in patch.read_text(encoding="utf-8") for t in touched)]
    series = [patch for patch in series if patch.name.split("-", 1)[0] not in leave_out_patches]
    apply_series(series, tree, target.path_map)
    return tree


def unpack_members(
    artifact: UpstreamArtifact, prefix: str, destination: Path, cache_dir: Path | None
) -> Path:
    """Extract the members of a wheel under `prefix` (once) and return destination/prefix."""
    root = destination / prefix
    if root.is_dir():
        return root
    destination.mkdir(parents=True, exist_ok=True)
    # Unpacked aside and renamed, so an interrupted run never leaves a partial tree behind.
    with tempfile.TemporaryDirectory(dir=destination) as scratch:
        with zipfile.ZipFile(fetch(artifact, cache_dir)) as wheel:
            wheel.extractall(scratch, [name for name in wheel.namelist() if name.startswith(prefix)])
        root.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(scratch) / prefix, root)
    return root


# --------------------------------------------------------------------------- CUDA


@dataclass(frozen=True)
class CompileCommand:
    """One entry of CMake's compile_commands.json."""

    source: str  # relative to the vLLM tree
    command: str
    directory: str


@dataclass(frozen=True)
class CompileResult:
    source: str
    ok: bool
    seconds: float
    errors: str


def configure_pascal_build(
    tree: Path,
    build_dir: Path,
    cuda_root: Path,
    torch_include: Path,
    cutlass_source: Path,
    *,
    arch_list: str,
    torch_version: str,
    cuda_version: str | None = None,
) -> tuple[list[CompileCommand], str]:
    """Configure vLLM's CMakeLists.txt offline for `arch_list` (a TORCH_CUDA_ARCH_LIST: the
    variant config's, recipes.variants.arch_list); return its compile commands and log.

    FETCHCONTENT_FULLY_DISCONNECTED makes any FetchContent download an error, so a
    successful configure also shows that the build downloads nothing. `cuda_version`
    (e.g. "12.9") is the CUDA version vLLM's arch-list branches see instead of the
    compiler's own.
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        raise VllmCheckError("cmake >= 3.26 is not on PATH (pip install cmake ninja)")
    config_dir = build_dir / "torch-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "TorchConfig.cmake").write_text(TORCH_CONFIG.replace("@TORCH_VERSION@", torch_version))
    (config_dir / "TorchConfigVersion.cmake").write_text(
        TORCH_CONFIG_VERSION.replace("@TORCH_VERSION@", torch_version)
    )
    nvcc = cuda_root / "bin" / "nvcc"
    args = [
        cmake,
        "-S",
        str(tree),
        "-B",
        str(build_dir / "cmake"),
        "-G",
        "Ninja",
        "-DCMAKE_BUILD_TYPE=Release",
        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
        "-DFETCHCONTENT_FULLY_DISCONNECTED=ON",
        f"-DVLLM_PYTHON_EXECUTABLE={sys.executable}",
        f"-DTorch_DIR={config_dir}",
        f"-DTORCH_INCLUDE_ROOT={torch_include}",
        f"-DCMAKE_CUDA_COMPILER={nvcc}",
        f"-DCUDAToolkit_ROOT={cuda_root}",
        f"-DVLLM_CUTLASS_SRC_DIR={cutlass_source}",
        f"-DCUTLASS_INCLUDE_DIR={cutlass_source / 'include'}",
        f"-DCUTLASS_TOOLS_UTIL_INCLUDE_DIR={cutlass_source / 'tools' / 'util' / 'include'}",
        *([f"-DPASCAL_FORGE_CUDA_VERSION={cuda_version}"] if cuda_version else []),
    ]
    env = {
        **os.environ,
        "TORCH_CUDA_ARCH_LIST": arch_list,
        "PATH": f"{nvcc.parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        archs = "\n".join(line for line in log.splitlines() if "target architectures" in line)
        raise VllmCheckError(f"vLLM's CMake configure for {arch_list} failed:\n{archs}\n...\n{log[-4000:]}")
    entries = json.loads((build_dir / "cmake" / "compile_commands.json").read_text())
    commands = [
        CompileCommand(
            source=str(Path(entry["file"]).resolve().relative_to(tree.resolve())),
            command=entry["command"],
            directory=entry["directory"],
        )
        for entry in entries
    ]
    return commands, log


def compile_sources(commands: Sequence[CompileCommand], jobs: int = 2) -> list[CompileResult]:
    """Run every compile command, at most `jobs` at a time, in CMake's order."""

    def run(command: CompileCommand) -> CompileResult:
        start = time.monotonic()
        result = subprocess.run(
            command.command, shell=True, cwd=command.directory, capture_output=True, text=True, check=False
        )
        output = result.stdout + result.stderr
        errors = "\n".join(line for line in output.splitlines() if "error" in line.lower())
        return CompileResult(
            command.source, result.returncode == 0, time.monotonic() - start, errors or output
        )

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run, commands))


def gencode_archs(command: str) -> list[str]:
    """The sm_XX targets of one nvcc command line."""
    return sorted({part.split("code=")[1] for part in command.split() if part.startswith("arch=compute_")})


# --------------------------------------------------------------------------- Triton


@dataclass(frozen=True)
class KernelResult:
    """One kernel compiled (or not) for one compute capability."""

    case: str
    kernel: str
    capability: int
    ok: bool
    shared: int
    num_warps: int
    error: str = ""
    # The PTX uses dp4a (the int8 dot product of sm_61, which sm_60 lacks).
    dp4a: bool = False

    @property
    def fits(self) -> bool:
        return self.ok and self.shared <= SHARED_MEMORY_PER_BLOCK


def triton_tree(
    triton_recipe: Recipe, variant_config: Path, destination: Path, cache_dir: Path | None, version: str
) -> tuple[Path, Path]:
    """One stock triton wheel with that version's patches applied; returns (tree, its ptxas)."""
    tree = patched_upstream(triton_recipe, variant_config, destination, cache_dir, version)
    ptxas = tree / "triton" / "backends" / "nvidia" / "bin" / "ptxas"
    ptxas.chmod(0o755)
    return tree, ptxas


def run_triton_probe(
    triton_dir: Path,
    ptxas: Path,
    vllm_tree: Path,
    capability: int,
    version: str,
    deps_dir: Path | None = None,
    only: str = "",
    triton_cache: Path | None = None,
) -> list[KernelResult]:
    """Run vLLM `version`'s launchers in a child process that reports `capability`.

    One result per compiled kernel. `deps_dir` (scripts/setup-vllm-deps.sh) holds the
    Python packages of that release, ahead of the venv's; `only` narrows the cases by name.
    `triton_cache` keeps Triton's compiled kernels between runs (a fresh one by default);
    a cached kernel carries the same metadata, shared memory included.
    """
    with tempfile.TemporaryDirectory(prefix="pascal-forge-triton-") as scratch:
        report = Path(scratch) / "report.json"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TRITON_", "VLLM_", "CUDA_"))
        }
        scripts = PACKAGE_ROOT
        env |= {
            "PYTHONPATH": os.pathsep.join(
                [str(triton_dir), *([str(deps_dir)] if deps_dir else []), str(vllm_tree), str(scripts)]
            ),
            "HF_HUB_OFFLINE": "1",
            # The wheel's CUDA 12.8 ptxas: a CUDA 13 ptxas refuses sm_60/sm_61.
            "TRITON_PTXAS_PATH": str(ptxas),
            "TRITON_CACHE_DIR": str(triton_cache or Path(scratch) / "cache"),
            "CUDA_VISIBLE_DEVICES": "",
        }
        args = ["pascal_forge.checks.vllm.compile", "probe", version, str(capability), str(report), only]
        rows = run_child_report(args, env, report, f"the Triton probe for capability {capability}")
        return [KernelResult(**row) for row in rows]


def run_child_report(module_args: Sequence[str], env: dict[str, str], report: Path, what: str) -> list:
    """Run `python -m MODULE ARGS...` with `env`; the JSON it wrote to `report`.

    A child that dies before writing it raises VllmCheckError naming `what`, with its output.
    """
    result = subprocess.run(
        [sys.executable, "-m", *module_args], env=env, capture_output=True, text=True, check=False
    )
    if not report.is_file():
        output = (result.stdout + result.stderr)[-4000:]
        raise VllmCheckError(f"{what} died:\n{output}")
    return json.loads(report.read_text())


def format_kernel_table(results: Sequence[KernelResult]) -> str:
    """kernel x capability -> ok/FAIL and shared memory, one row per (case, kernel)."""
    capabilities = sorted({r.capability for r in results})
    rows: dict[tuple[str, str], dict[int, KernelResult]] = {}
    for r in results:
        rows.setdefault((r.case, r.kernel), {})[r.capability] = r
    width = max([len(f"{c} / {k}") for c, k in rows] + [10])
    header = f"{'case / kernel':<{width}}" + "".join(f"  {'sm_' + str(c):>22}" for c in capabilities)
    lines = [header, "-" * len(header)]
    for (case, kernel), by_cap in rows.items():
        cells = []
        for capability in capabilities:
            r = by_cap.get(capability)
            if r is None:
                cells.append("-")
            elif not r.ok:
                cells.append("FAIL (compile)")
            else:
                verdict = "ok" if r.fits else "FAIL (>48K)"
                cells.append(f"{verdict} {r.shared:>6} B")
        lines.append(f"{case + ' / ' + kernel:<{width}}" + "".join(f"  {cell:>22}" for cell in cells))
    return "\n".join(lines)


# The rest runs inside the child process started by run_triton_probe.


@cache
def _properties(card: Card) -> object:
    """The card as torch.cuda.get_device_properties describes it (one object per card)."""
    from types import SimpleNamespace

    major, minor = card.major_minor
    return SimpleNamespace(
        name=card.name,
        major=major,
        minor=minor,
        multi_processor_count=card.sms,
        total_memory=card.memory_gib << 30,
        L2_cache_size=card.l2_kib << 10,
        warp_size=32,
        shared_memory_per_block=SHARED_MEMORY_PER_BLOCK,
        shared_memory_per_block_optin=SHARED_MEMORY_PER_BLOCK,
        shared_memory_per_multiprocessor=card.shared_memory_per_sm,
        max_threads_per_multi_processor=2048,
        regs_per_multiprocessor=65536,
    )


@contextmanager
def _pascal_gpu(capability: int) -> Iterator[None]:
    """Make torch (and so vLLM's platform code) see one GPU of `capability`.

    Only the device queries are replaced; vLLM's selection code runs unchanged.
    """
    import torch

    major, minor = divmod(capability, 10)
    name = CARDS[capability].name if capability in CARDS else f"sm_{capability}"
    saved = (torch.cuda.get_device_capability, torch.cuda.get_device_name, torch.cuda.is_available)
    torch.cuda.get_device_capability = lambda device=None: (major, minor)
    torch.cuda.get_device_name = lambda device=None: name
    torch.cuda.is_available = lambda: True
    # Launchers that select the tensors' device first (FLA's input_guard since 0.33.0) select none.
    saved_index = torch.accelerator.device_index
    torch.accelerator.device_index = lambda index=None: nullcontext()
    # The properties launchers size their grids by (since 0.33.0: vLLM's num_compute_units).
    saved_properties = torch.cuda.get_device_properties
    torch.cuda.get_device_properties = lambda device=None: _properties(CARDS[capability])
    try:
        yield
    finally:
        torch.cuda.get_device_capability, torch.cuda.get_device_name, torch.cuda.is_available = saved
        torch.accelerator.device_index = saved_index
        torch.cuda.get_device_properties = saved_properties


@contextmanager
def _compile_only_launches(capability: int) -> Iterator[list[dict]]:
    """Triton kernel launches compile for `capability` (nothing runs) and are recorded.

    Triton's compiler and vLLM's launchers run unchanged; only the driver's device queries
    are answered here and the launch itself is replaced by Triton's own warmup path.
    """
    import torch
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    benchmark: dict = {"active": False, "kernel": None}

    def compile_and_time(kernel_call: Callable[[], None], quantiles: Sequence[float]) -> list[float]:
        """An autotuner's benchmark: compile the config; on Pascal one over 48 KB cannot load.

        Triton's autotuner drops a config whose benchmark raises OutOfResources, as a P40's
        driver makes it do, and keeps the first of the others (all timed alike here).
        """
        from triton.runtime.errors import OutOfResources

        benchmark["active"] = True
        try:
            kernel_call()
        finally:
            benchmark["active"] = False
        shared = benchmark["kernel"].metadata.shared
        if shared > SHARED_MEMORY_PER_BLOCK:
            raise OutOfResources(shared, SHARED_MEMORY_PER_BLOCK, "shared memory")
        return [1.0 for _ in quantiles]

    class CompileOnlyDriver:
        def get_current_device(self) -> int:
            return 0

        def get_benchmarker(self) -> Callable:
            return compile_and_time

        def get_current_stream(self, device: int | None = None) -> int:
            return 0

        def get_current_target(self) -> GPUTarget:
            return GPUTarget("cuda", capability, 32)

        def get_active_torch_device(self) -> torch.device:
            return torch.device("cpu")

    launches: list[dict] = []
    original_run = JITFunction.run

    def compile_only_run(self, *args, grid, warmup, **kwargs):
        if benchmark["active"]:  # an autotuner's trial, not one of vLLM's launches
            benchmark["kernel"] = original_run(self, *args, grid=grid, warmup=True, **kwargs)
            return benchmark["kernel"]
        # Recorded before compiling, so a compile error is reported against this kernel.
        launches.append({"kernel": self.fn.__name__, "compiled": None})
        kernel = original_run(self, *args, grid=grid, warmup=True, **kwargs)
        launches[-1]["compiled"] = kernel
        return kernel

    # Not driver.reset_active() afterwards: that would create Triton's real CUDA driver,
    # which needs libcuda.
    saved_driver = driver._active
    driver.set_active(CompileOnlyDriver())
    JITFunction.run = compile_only_run
    try:
        yield launches
    finally:
        JITFunction.run = original_run
        driver._active = saved_driver


_LIBRARIES: list = []  # torch.library registrations live as long as their Library object
_CUTLASS_CAPABILITY_QUERIES = (
    "cutlass_scaled_mm_supports_fp8",
    "cutlass_scaled_mm_supports_block_fp8",
    "cutlass_group_gemm_supported",
    "cutlass_scaled_mm_supports_fp4",
    "mxfp4_experts_quant_supported",
)
# The compiled extension modules vLLM imports for their side effects (op registration):
# vllm._C in 0.14.0; the stable-ABI vllm._C_stable_libtorch since 0.33.0.
_EXTENSION_MODULES = ("vllm._C", "vllm._C_stable_libtorch", "vllm._moe_C_stable_libtorch")


def _use_cuda_platform() -> None:
    """vLLM's CudaPlatform as current_platform (vllm._C, the built extension, is not needed to select)."""
    import types

    import torch

    for name in _EXTENSION_MODULES:
        sys.modules.setdefault(name, types.ModuleType(name))
    # Capability queries that vLLM's quantization utils call at import. The real ops
    # (csrc/quantization/w8a8/cutlass/scaled_mm_entry.cu) answer False below 8.9.
    library = torch.library.Library("_C", "FRAGMENT")
    for op in _CUTLASS_CAPABILITY_QUERIES:
        library.define(f"{op}(int cuda_device_capability) -> bool")
        library.impl(op, lambda capability: False, "CompositeExplicitAutograd")
    _LIBRARIES.append(library)
    # The device attribute 0.34.0's prefill attention sizes its tile by (csrc/cuda_utils_kernels.cu
    # reads cudaDevAttrMaxSharedMemoryPerBlockOptin): 48 KB on sm_60 and sm_61.
    utils = torch.library.Library("_C_cuda_utils", "FRAGMENT")
    utils.define("get_max_shared_memory_per_block_device_attribute(int device_id) -> int")
    utils.impl(
        "get_max_shared_memory_per_block_device_attribute",
        lambda device_id: SHARED_MEMORY_PER_BLOCK,
        "CompositeExplicitAutograd",
    )
    _LIBRARIES.append(utils)
    import vllm.platforms as platforms
    from vllm.platforms.cuda import CudaPlatform

    platforms._current_platform = CudaPlatform()


def _probe_main(version: str, capability: int, report: Path, only: str = "") -> None:
    import pascal_forge.checks.vllm.cases as vllm_kernel_cases

    rows: list[KernelResult] = []
    with _pascal_gpu(capability), _compile_only_launches(capability) as launches:
        _use_cuda_platform()
        # Host tensors cannot be pinned without a GPU; the FLA launchers (since 0.33.0) stage their
        # chunk indices through vLLM's pinned-copy helper.
        import vllm.utils.torch_utils

        vllm.utils.torch_utils.PIN_MEMORY = False
        for case_name, case in vllm_kernel_cases.cases(version).items():
            if only not in case_name:
                continue
            start = len(launches)
            error = ""
            try:
                case()
            except Exception as exc:  # the table reports it against the kernel being compiled
                error = f"{type(exc).__name__}: {exc}".strip()[:2000]
            names = [launch["kernel"] for launch in launches[start:]] or ["?"]
            for number, name in enumerate(names):
                # One case may launch a kernel twice (fused MoE: gate/up, then down).
                label = f"{name} #{names[:number].count(name) + 1}" if names.count(name) > 1 else name
                compiled = launches[start + number]["compiled"] if launches[start:] else None
                if compiled is None:
                    reason = error or "not compiled"
                    rows.append(KernelResult(case_name, label, capability, False, 0, 0, reason))
                else:
                    metadata = compiled.metadata
                    dp4a = "dp4a" in compiled.asm.get("ptx", "")
                    rows.append(
                        KernelResult(
                            case_name, label, capability, True, metadata.shared, metadata.num_warps, dp4a=dp4a
                        )
                    )
            if error and all(row.ok for row in rows[-len(names) :]):
                rows.append(KernelResult(case_name, "(launcher)", capability, False, 0, 0, error))
    report.write_text(json.dumps([asdict(row) for row in rows], indent=1))


def _refusal(action: Callable[[], object]) -> str:
    """The message of the exception `action` raises, or "" if it goes through."""
    try:
        action()
    except Exception as exc:  # the refusal is what is reported
        return str(exc)
    return ""


def _outcome(action: Callable[[], object]) -> str:
    """What `action` returns, or "refused: " and the message of the exception it raises."""
    try:
        return str(action())
    except Exception as exc:  # the refusal is what is reported
        return f"refused: {exc}"


def _platform_main(capability: int, report: Path) -> None:
    """vLLM's own selection code on a GPU of `capability`: backends, dtypes, refusals."""
    import torch

    with _pascal_gpu(capability):
        _use_cuda_platform()
        from vllm.config.cache import CacheConfig
        from vllm.config.model import _resolve_auto_dtype
        from vllm.platforms import current_platform
        from vllm.v1.attention.backends.registry import AttentionBackendEnum
        from vllm.v1.attention.selector import AttentionSelectorConfig

        def backend(
            use_mla: bool, selected: AttentionBackendEnum | None = None, kv_cache_dtype: str = "auto"
        ) -> str:
            head_size = 576 if use_mla else 128
            config = AttentionSelectorConfig(head_size, torch.float16, kv_cache_dtype, 16, use_mla=use_mla)
            return current_platform.get_attn_backend_cls(selected, config)

        def check_quantization(method: str, checkpoint_config: dict) -> None:
            """vLLM's own check of a checkpoint's quantization against the GPU, on float16."""
            from types import SimpleNamespace

            from vllm.config.vllm import VllmConfig

            model_config = SimpleNamespace(
                model="pascal-forge/quantization-probe",
                quantization=method,
                hf_config=SimpleNamespace(quantization_config=checkpoint_config),
                dtype=torch.float16,
                # 0.33.0: online quantization arguments, none for a checkpoint's own
                quantization_config=None,
                revision=None,
            )
            VllmConfig._get_quantization_config(model_config, load_config=None)

        def check_config(cache_dtype: str) -> str:
            """The KV-cache dtype the platform serves for `cache_dtype` (or its refusal)."""
            from types import SimpleNamespace

            vllm_config = SimpleNamespace(
                parallel_config=SimpleNamespace(worker_cls="auto"),
                cache_config=CacheConfig(cache_dtype=cache_dtype),
                model_config=None,
                scheduler_config=None,
            )
            current_platform.check_and_update_config(vllm_config)
            return vllm_config.cache_config.cache_dtype

        result = {
            "platform": type(current_platform).__name__,
            "capability": current_platform.get_device_capability().as_version_str(),
            "device_name": current_platform.get_device_name(),
            "backend": backend(False),
            "mla_refusal": _refusal(lambda: backend(True)),
            "supported_dtypes": [str(d) for d in current_platform.supported_dtypes],
            "auto_dtype_for_bf16_model": str(
                _resolve_auto_dtype("llama", torch.bfloat16, is_pooling_model=False)
            ),
            "bf16_refusal": _refusal(lambda: current_platform.check_if_supports_dtype(torch.bfloat16)),
            "fp16_refusal": _refusal(lambda: current_platform.check_if_supports_dtype(torch.float16)),
            "fp8_kv_refusal": _refusal(lambda: check_config("fp8")),
            "fp8_e5m2_kv_refusal": _refusal(lambda: check_config("fp8_e5m2")),
            # 0.34.0's 0037 serves an FP8 request with the int8 per-token-head cache.
            "fp8_kv_served_as": _outcome(lambda: check_config("fp8")),
            "auto_kv_refusal": _refusal(lambda: check_config("auto")),
            # 0.33.0's int8 KV cache with per-(token, head) scales; 0.14.0 has no such dtype.
            "int8_kv_refusal": _refusal(lambda: check_config("int8_per_token_head")),
            "int8_kv_backend": _outcome(lambda: backend(False, kv_cache_dtype="int8_per_token_head")),
            "flash_attn_refusal": _refusal(lambda: backend(False, AttentionBackendEnum.FLASH_ATTN)),
            # Checkpoint configs as AutoAWQ and AutoGPTQ write them into config.json.
            "awq_refusal": _refusal(
                lambda: check_quantization("awq", {"bits": 4, "group_size": 128, "zero_point": True})
            ),
            # Naming the quantized modules keeps vLLM from asking the Hub for the checkpoint's files.
            "gptq_refusal": _refusal(
                lambda: check_quantization(
                    "gptq",
                    {
                        "bits": 4,
                        "group_size": 128,
                        "desc_act": False,
                        "sym": True,
                        "modules_in_block_to_quantize": [["self_attn.q_proj", "mlp.down_proj"]],
                    },
                )
            ),
        }
    report.write_text(json.dumps(result, indent=1))


def _serve_main(dropped: str, report: Path) -> None:
    """Build `vllm serve`'s FastAPI app (no engine) from the CLI's default arguments.

    Reports which of the comma-separated import names in `dropped` are importable here (the
    check is only worth something where none is) and the app's routes or the error.
    """
    import importlib.util

    present = [name for name in dropped.split(",") if importlib.util.find_spec(name) is not None]
    routes: list[str] = []
    error = ""
    with _pascal_gpu(61):
        _use_cuda_platform()
        try:
            from vllm.entrypoints.common.cli_args import make_arg_parser
            from vllm.entrypoints.openai.api_server import build_app
            from vllm.utils.argparse_utils import FlexibleArgumentParser

            args = make_arg_parser(FlexibleArgumentParser()).parse_args([])
            app = build_app(args, supported_tasks=("generate",))
            routes = sorted({getattr(route, "path", "") for route in app.routes})
        except Exception as exc:  # the failure is what is reported
            error = f"{type(exc).__name__}: {exc}"
    report.write_text(json.dumps({"present": present, "routes": routes, "error": error}, indent=1))


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[0] == "platform":
        _platform_main(int(args[1]), Path(args[2]))
    elif args[0] == "serve":
        _serve_main(args[1], Path(args[2]))
    else:  # probe VERSION CAPABILITY REPORT [ONLY]
        _probe_main(args[1], int(args[2]), Path(args[3]), args[4] if len(args) > 4 else "")


CaseFn = Callable[[], None]

if __name__ == "__main__":
    main()
