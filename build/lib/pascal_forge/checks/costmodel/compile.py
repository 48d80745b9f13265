"""PTX of vLLM's hot kernels for Pascal, as nvcc 12 and the patched Triton write it.

- CUDA: one vLLM source file at a time, `nvcc -ptx -arch=compute_6x`, against torch's
  headers. The headers of the CPU torch wheel serve: they hold ATen/cuda and c10/cuda; only
  the generated c10/cuda/impl/cuda_cmake_macros.h is missing, and a one-line copy of it is
  written beside them (what torch's CUDA build generates for a shared library build).
- Triton: the `@triton.jit` function is taken from vLLM's own source file (its text,
  unchanged) and compiled by the patched triton for GPUTarget("cuda", 6x, 32) with the
  block sizes that vLLM's launcher picks on CUDA for the shape, in a child process whose
  PYTHONPATH starts with the patched triton tree.

PTX is cached under `cache_dir`, keyed by the sha256 of everything that went in.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import PascalForgeError
from .ptx import KernelCounts

CUDA_CMAKE_MACROS = "#pragma once\n#define C10_CUDA_BUILD_MAIN_LIB\n"
# What vLLM's cmake/utils.cmake passes nvcc besides torch's flags (it drops torch's
# __CUDA_NO_HALF_OPERATORS__ family and adds ENABLE_FP8).
NVCC_FLAGS = (
    "-std=c++17",
    "-O3",
    "--expt-relaxed-constexpr",
    "--expt-extended-lambda",
    "-DENABLE_FP8",
    "-DUSE_CUDA",
)


class CostModelError(PascalForgeError):
    """A kernel of the cost model could not be compiled or read."""


@dataclass(frozen=True)
class CudaSource:
    """A vLLM CUDA source file (relative to the vLLM tree) holding hot kernels."""

    path: str


@dataclass(frozen=True)
class TritonSource:
    """A `@triton.jit` kernel of a vLLM source file, compiled for one set of constexprs."""

    path: str
    function: str
    signature: dict[str, str]  # argument -> Triton type ("*fp16", "i32", "constexpr")
    constants: dict[str, object] = field(default_factory=dict)
    num_warps: int = 4
    # What Triton's JIT specializes at a real launch: arguments whose value (an int, or a
    # pointer's address) is a multiple of 16 get tt.divisibility 16; an int equal to 1 is a
    # constexpr (give it in `constants` with type "constexpr").
    aligned: tuple[str, ...] = ()

    def key(self) -> str:
        return json.dumps(
            [self.path, self.function, self.signature, self.constants, self.num_warps, self.aligned]
        )


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def _cached(cache_dir: Path, key: str, make: Callable[[], str]) -> str:
    target = cache_dir / f"{key}.ptx"
    if target.is_file():
        return target.read_text()
    ptx = make()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_text(ptx)
    os.replace(partial, target)
    return ptx


def cuda_ptx(
    source: CudaSource, capability: int, vllm_tree: Path, torch_include: Path, nvcc: Path, cache_dir: Path
) -> str:
    """The PTX nvcc writes for one vLLM CUDA file at compute_`capability` (-O3, C++17)."""
    text = (vllm_tree / source.path).read_bytes()
    key = _digest("cuda", source.path, text, str(capability), str(nvcc.resolve()), *NVCC_FLAGS)

    def make() -> str:
        with tempfile.TemporaryDirectory(prefix="pascal-forge-ptx-") as scratch:
            shim = Path(scratch) / "c10" / "cuda" / "impl"
            shim.mkdir(parents=True)
            (shim / "cuda_cmake_macros.h").write_text(CUDA_CMAKE_MACROS)
            output = Path(scratch) / "out.ptx"
            command = [
                str(nvcc),
                "-ptx",
                f"-arch=compute_{capability}",
                *NVCC_FLAGS,
                f"-I{scratch}",
                f"-I{torch_include}",
                f"-I{torch_include / 'torch' / 'csrc' / 'api' / 'include'}",
                f"-I{vllm_tree / 'csrc'}",
                str(vllm_tree / source.path),
                "-o",
                str(output),
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise CostModelError(
                    f"nvcc could not compile {source.path} for compute_{capability}:\n{result.stderr[-3000:]}"
                )
            return output.read_text()

    return _cached(cache_dir, key, make)


_TRITON_CHILD = """
import importlib.util, json, sys
from pathlib import Path
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
request = json.loads(Path(sys.argv[1]).read_text())
spec = importlib.util.spec_from_file_location("kernel_source", request["module"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
function = getattr(module, request["function"])
constants = {(function.arg_names.index(name),): value for name, value in request["constants"].items()}
attrs = {(function.arg_names.index(name),): [["tt.divisibility", 16]] for name in request["aligned"]}
source = ASTSource(function, request["signature"], constexprs=constants, attrs=attrs)
kernel = triton.compile(source, target=GPUTarget("cuda", request["capability"], 32),
                        options={"num_warps": request["num_warps"]})
Path(sys.argv[2]).write_text(json.dumps({"ptx": kernel.asm["ptx"], "shared": kernel.metadata.shared,
                                         "num_warps": kernel.metadata.num_warps}))
"""


def _jit_function_text(path: Path, function: str) -> str:
    """The source text of one top-level `@triton.jit` function of a file, decorator included."""
    import ast

    text = path.read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
            return "\n".join(text.splitlines()[start : node.end_lineno])
    raise CostModelError(f"{path}: no top-level function {function}")


def triton_ptx(
    source: TritonSource, capability: int, vllm_tree: Path, triton_tree: Path, cache_dir: Path
) -> str:
    """The PTX the patched triton at `triton_tree` writes for `source` at sm_`capability`."""
    function = _jit_function_text(vllm_tree / source.path, source.function)
    ptxas = triton_tree / "triton" / "backends" / "nvidia" / "bin" / "ptxas"
    key = _digest("triton", source.key(), function, str(capability), str(triton_tree.resolve()))

    def make() -> str:
        with tempfile.TemporaryDirectory(prefix="pascal-forge-ptx-") as scratch:
            module = Path(scratch) / "kernel_source.py"
            # vLLM's module imports vLLM; the kernel needs only triton and its language.
            module.write_text("import triton\nimport triton.language as tl\n\n" + function + "\n")
            request = Path(scratch) / "request.json"
            request.write_text(
                json.dumps(
                    {
                        "module": str(module),
                        "function": source.function,
                        "signature": source.signature,
                        "constants": source.constants,
                        "num_warps": source.num_warps,
                        "aligned": list(source.aligned),
                        "capability": capability,
                    }
                )
            )
            report = Path(scratch) / "report.json"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("TRITON_", "CUDA_"))}
            env |= {
                "PYTHONPATH": str(triton_tree),
                "TRITON_PTXAS_PATH": str(ptxas),
                "TRITON_CACHE_DIR": str(Path(scratch) / "cache"),
                "CUDA_VISIBLE_DEVICES": "",
            }
            result = subprocess.run(
                [sys.executable, "-c", _TRITON_CHILD, str(request), str(report)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if not report.is_file():
                raise CostModelError(
                    f"triton could not compile {source.path}:{source.function} for sm_{capability}:\n"
                    f"{(result.stdout + result.stderr)[-3000:]}"
                )
            return json.loads(report.read_text())["ptx"]

    return _cached(cache_dir, key, make)


def select_entry(counts: dict[str, KernelCounts], entry: str, path: str) -> KernelCounts:
    """The kernel whose mangled name holds `entry`: its fp16 (c10::Half / __half) instance if several."""
    matches = [name for name in counts if entry in name]
    if not matches:
        raise CostModelError(f"{path}: no kernel named like {entry!r} in the PTX (vLLM moved it?)")
    half = [name for name in matches if "Half" in name or "__half" in name]
    return counts[(half or matches)[0]]
