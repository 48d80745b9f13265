"""Run ordinary Triton launches as Pascal code on a newer NVIDIA GPU.

Three changes to an installed triton, all made from outside its files:
- `driver.active.get_current_target()` answers GPUTarget("cuda", 61, 32), so every kernel is
  compiled for sm_61 (and the patched triton's pre-Volta rewrites run);
- the cubin stage returns the sm_61 PTX text, NUL-terminated, which cuModuleLoadData accepts
  and the driver JIT-compiles for the GPU at hand;
- each launch records the compiled kernel, so the caller can read the shared memory it asked
  for (what a P40 would refuse above 49,152 B, while a Hopper card allows more).

The triton given must already carry the Pascal patch series (see overlay_patched_triton);
the stock one fails at load ("a PTX JIT compilation failed") on kernels with eviction hints
or ordered atomics.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pascal_forge.errors import PascalForgeError
from pascal_forge.pascal import P40, SHARED_MEMORY_PER_BLOCK

_TARGET = re.compile(r"^\s*\.target\s+(sm_\w+)", re.MULTILINE)


class PascalFormError(PascalForgeError):
    """The Pascal form cannot be set up, or a kernel is not Pascal code."""


def ptx_target(ptx: str) -> str:
    """The `.target` of a PTX text ("sm_61"), or "" if it names none."""
    match = _TARGET.search(ptx)
    return match.group(1) if match else ""


def ptx_as_binary(ptx: str) -> bytes:
    """The PTX as the module image the driver loads: NUL-terminated text.

    Refuses PTX that is not for sm_6x: then the run would measure Hopper code, not Pascal's.
    """
    target = ptx_target(ptx)
    if not re.fullmatch(r"sm_6\d", target):
        raise PascalFormError(
            f"the cubin stage got PTX for {target or 'no target'}, not sm_6x: the forced target "
            "did not reach the compiler (is get_current_target patched before the first launch?)"
        )
    return ptx.encode() + b"\0"


@dataclass
class Launch:
    kernel: str
    shared: int
    num_warps: int
    num_stages: int
    target: str


@dataclass
class LaunchLog:
    """Every kernel launched since the Pascal form was installed, in order."""

    launches: list[Launch] = field(default_factory=list)

    def since(self, start: int) -> list[Launch]:
        return self.launches[start:]


@contextmanager
def pascal_form(capability: int = P40.capability) -> Iterator[LaunchLog]:
    """Install the three changes above on the imported triton; undo them on exit."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia import compiler as nvidia
    from triton.runtime.jit import JITFunction

    driver = triton.runtime.driver.active
    log = LaunchLog()
    saved_target = driver.get_current_target
    saved_cubin = nvidia.CUDABackend.make_cubin
    saved_run = JITFunction.run

    def make_cubin(self: Any, src: str, metadata: dict, opt: Any, capability: int) -> bytes:
        return ptx_as_binary(src)

    def record(kernel: Any, name: str) -> None:
        if kernel is not None and hasattr(kernel, "metadata"):
            metadata = kernel.metadata
            log.launches.append(
                Launch(
                    kernel=name,
                    shared=int(metadata.shared),
                    num_warps=int(getattr(metadata, "num_warps", 0)),
                    num_stages=int(getattr(metadata, "num_stages", 0)),
                    target=ptx_target(kernel.asm.get("ptx", "")),
                )
            )

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        kernel = saved_run(self, *args, **kwargs)
        record(kernel, self.fn.__name__)
        return kernel

    # Inductor compiles through triton.compile (JITFunction keeps its own reference to it).
    saved_compile = triton.compile

    def compile(*args: Any, **kwargs: Any) -> Any:
        kernel = saved_compile(*args, **kwargs)
        record(kernel, getattr(kernel.metadata, "name", "?"))
        return kernel

    driver.get_current_target = lambda: GPUTarget("cuda", capability, 32)
    nvidia.CUDABackend.make_cubin = make_cubin
    JITFunction.run = run
    triton.compile = compile
    try:
        yield log
    finally:
        triton.compile = saved_compile
        driver.get_current_target = saved_target
        nvidia.CUDABackend.make_cubin = saved_cubin
        JITFunction.run = saved_run


@contextmanager
def p40_device_queries(
    name: str = P40.name, capability: tuple[int, int] = P40.major_minor, shared: int = SHARED_MEMORY_PER_BLOCK
) -> Iterator[None]:
    """torch and triton describe the GPU as a P40 while this is in place.

    Kernels that tune themselves to the GPU read it: FLA's ops pick their block lists at import
    from torch's device name and capability and triton's max_shared_mem; and triton refuses to
    load a kernel that asks more shared memory than max_shared_mem (OutOfResources), as a P40
    does, so an autotuner drops those configs instead of keeping one the H200 allows.
    """
    import torch
    import triton

    utils = triton.runtime.driver.active.utils
    saved_name, saved_capability = torch.cuda.get_device_name, torch.cuda.get_device_capability
    saved_properties = utils.get_device_properties

    def properties(device: int) -> dict:
        return {**saved_properties(device), "max_shared_mem": shared}

    torch.cuda.get_device_name = lambda device=None: name
    torch.cuda.get_device_capability = lambda device=None: capability
    utils.get_device_properties = properties
    try:
        yield
    finally:
        torch.cuda.get_device_name, torch.cuda.get_device_capability = saved_name, saved_capability
        utils.get_device_properties = saved_properties


# --------------------------------------------------------------------------- patched triton

OVERLAY_MANIFEST = "overlay.json"


def sha256_text(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_overlay(stock: Path, patched: Path, files: list[str], destination: Path) -> None:
    """Keep the patched versions of `files` (package-relative) with the stock files' sha256.

    Made where GNU patch and the released wheel are at hand; applied on the GPU machine,
    which has neither, by overlay_patched_triton.
    """
    destination.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name in files:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(patched / name, target)
        manifest[name] = {
            "stock_sha256": sha256_text((stock / name).read_bytes()),
            "patched_sha256": sha256_text((patched / name).read_bytes()),
        }
    (destination / OVERLAY_MANIFEST).write_text(json.dumps(manifest, indent=1))


def overlay_patched_triton(installed: Path, overlay: Path, destination: Path) -> list[str]:
    """Copy the installed `triton` package to destination/triton with the overlay's files.

    Each replaced file must be byte-identical to the released one the series was made on;
    otherwise the installed triton is another build and the series says nothing about it.
    """
    manifest = json.loads((overlay / OVERLAY_MANIFEST).read_text())
    package = destination / "triton"
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(installed, package, symlinks=True)
    for name, sums in manifest.items():
        found = sha256_text((package / name).read_bytes())
        if found != sums["stock_sha256"]:
            raise PascalFormError(
                f"{installed / name}: sha256 {found} is not the released triton's "
                f"{sums['stock_sha256']}; the patch series was made for another file"
            )
        shutil.copyfile(overlay / name, package / name)
    return sorted(manifest)
