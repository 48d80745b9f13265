"""A whole vLLM engine answering as a Tesla P40 (6.1) or P100 (6.0) on a newer NVIDIA GPU.

What changes, from outside vLLM's and triton's files (installed once per process by
engine_site/sitecustomize.py, never undone):
- torch's device queries: capability, name, and the properties vLLM and FLA size by
  (49,152 B of shared memory per block, the card's SM count); memory stays the real card's;
- vLLM's platform: its CudaPlatform without NVML (NVML would read the real card), told the
  capability and name above, so every Pascal branch of vLLM's Python runs;
- triton: every kernel compiles for sm_6x and the driver JIT-runs that PTX (pascal_form), and
  triton refuses a kernel above 48 KB at load, as a P40 does (p40_device_queries).
vLLM's compiled extension (vllm._C_stable_libtorch, vllm._moe_C_stable_libtorch) is used where
the carry brought it (prepare_engine_carry.py --extension, compute_61 PTX the driver JIT-runs); an
extension module the vllm package lacks is stood in for by an empty module, and the run then keeps
CustomOps on their native PyTorch code (`custom_ops: ["none"]`, run_vllm_engine.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from pascal_form import p40_device_queries, pascal_form

from pascal_forge.pascal import CARDS, SHARED_MEMORY_PER_BLOCK

# Kept for the life of the process: the Pascal form is never undone.
_STACK = contextlib.ExitStack()
EXTENSIONS = ("vllm._C", "vllm._C_stable_libtorch", "vllm._moe_C_stable_libtorch")


def carried_extensions() -> list[str]:
    """The compiled extension modules present in the vllm package on the path (without importing
    vllm: find_spec of the top-level package only locates it)."""
    spec = importlib.util.find_spec("vllm")
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = []
    for extension in EXTENSIONS:
        stem = extension.split(".")[1]
        if any(
            any(Path(folder).glob(f"{stem}.*.so")) or (Path(folder) / f"{stem}.so").is_file()
            for folder in folders
        ):
            found.append(extension)
    return found


class _Properties:
    """The real card's properties with the Pascal card's capability, name, SMs and shared memory."""

    def __init__(self, real: Any, capability: int) -> None:
        card = CARDS[capability]
        self._real = real
        self.name, (self.major, self.minor) = card.name, card.major_minor
        self.multi_processor_count = card.sms
        self.shared_memory_per_block = self.shared_memory_per_block_optin = SHARED_MEMORY_PER_BLOCK
        self.shared_memory_per_multiprocessor = card.shared_memory_per_sm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def install(capability: int) -> None:
    import torch

    card = CARDS[capability]
    name = card.name
    real_properties = torch.cuda.get_device_properties
    torch.cuda.get_device_properties = lambda device=None: _Properties(real_properties(device), capability)
    _STACK.enter_context(p40_device_queries(name=name, capability=card.major_minor))
    _STACK.enter_context(pascal_form(capability))

    # An extension module the carry lacks: an empty module stands where it is imported for its
    # op registrations, and CustomOps run their native code instead (run_vllm_engine.py).
    carried = carried_extensions()
    for extension in EXTENSIONS:
        if extension not in carried:
            sys.modules.setdefault(extension, types.ModuleType(extension))
    import vllm.platforms as platforms
    from vllm.platforms.cuda import NonNvmlCudaPlatform
    from vllm.platforms.interface import DeviceCapability

    major, minor = card.major_minor

    class PascalCudaPlatform(NonNvmlCudaPlatform):
        @classmethod
        def get_device_capability(cls, device_id: int = 0) -> DeviceCapability:
            return DeviceCapability(major, minor)

        @classmethod
        def get_device_name(cls, device_id: int = 0) -> str:
            return name

    platforms._current_platform = PascalCudaPlatform()
