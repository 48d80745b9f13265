"""Import vLLM's Triton kernel modules on a machine that has torch and triton but not vLLM's
other dependencies (the lent GPU has neither pydantic nor pyzmq, and transformers 5).

Only the kernel modules and what they use at call time are real. Modules that the kernel
files import but only touch at import time (decorators, base classes, type names) are replaced
by stubs, which are listed here by name so the report can say which ones were stubbed.
`current_platform` is vLLM's own CudaPlatform, told that the GPU is a Tesla P40 (6.1), so the
launchers pick their Pascal tiles.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pascal_forge.pascal import P40

# fused_moe.py's import-time-only dependencies in vLLM 0.14.0: the package __init__ (which
# pulls in the whole model executor, distributed and config) and the modules whose names
# fused_moe.py only uses to define classes and custom ops it is not called through here.
FUSED_MOE_STUBS_0_14 = (
    "vllm.model_executor.layers.fused_moe.modular_kernel",
    "vllm.model_executor.layers.fused_moe.utils",
    "vllm.model_executor.layers.fused_moe.config",
    "vllm.model_executor.layers.fused_moe.deep_gemm_moe",
    "vllm.model_executor.layers.fused_moe.prepare_finalize",
    "vllm.model_executor.layers.fused_moe.rocm_aiter_fused_moe",
    "vllm.model_executor.layers.fused_moe.topk_weight_and_reduce",
    "vllm.model_executor.custom_op",
    "vllm.model_executor.layers.quantization.utils.mxfp4_utils",
    "vllm.model_executor.layers.quantization.utils.mxfp6_utils",
    "vllm.model_executor.layers.quantization.utils.ocp_mx_utils",
    "vllm.distributed",
    "vllm.config",
    "vllm._aiter_ops",
)

# The same for vLLM 0.33.0's fused_moe.py (its package moved experts, routers and configs).
FUSED_MOE_STUBS_0_33 = (
    "vllm.model_executor.layers.fused_moe.modular_kernel",
    "vllm.model_executor.layers.fused_moe.config",
    "vllm.model_executor.layers.fused_moe.utils",
    "vllm.distributed",
    "vllm.config",
)


# Names a stub answers as the real module does on a plain install, where a stand-in would
# change what the kernels compute: vLLM 0.33.0's kv_cache_interface asks vllm.config.cache for a
# plugin's KV cache dtype handler (none is registered without plugins), and a stand-in answer
# made "auto" look quantized, so reshape_and_cache viewed an fp16 cache as fp8e4nv, which sm_61
# cannot compile.
STUB_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "vllm.config.cache": {"get_kv_cache_dtype_handler": lambda name: None},
}


class _AnythingMeta(type):
    """A name that can be used as a decorator, base class, call or attribute chain."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        # Used as a bare decorator: hand the decorated function or class back unchanged.
        if len(args) == 1 and not kwargs and (callable(args[0]) and not isinstance(args[0], _AnythingMeta)):
            return args[0]
        return cls

    def __getitem__(cls, item: Any) -> Any:
        return cls

    def __or__(cls, other: Any) -> Any:
        return cls

    __ror__ = __or__


Anything = _AnythingMeta("Anything", (), {})


class StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Anything


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self.used: list[str] = []

    def _stubbed(self, fullname: str) -> bool:
        return any(fullname == n or fullname.startswith(n + ".") for n in self.names)

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not self._stubbed(fullname):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        self.used.append(spec.name)
        module = StubModule(spec.name)
        module.__path__ = []
        module.__dict__.update(STUB_ATTRIBUTES.get(spec.name, {}))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


@dataclass
class KernelImport:
    """What was imported for real and what was stubbed; the report prints both."""

    tree: Path
    stubbed: list[str] = field(default_factory=list)
    bare_packages: list[str] = field(default_factory=list)


def bare_package(name: str, directory: Path, **attributes: Any) -> types.ModuleType:
    """Register package `name` without running its __init__.py, so its submodules import alone."""
    module = types.ModuleType(name)
    module.__path__ = [str(directory)]
    module.__dict__.update(attributes)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


def pascal_platform(tree: Path, capability: tuple[int, int] = P40.major_minor, name: str = P40.name) -> Any:
    """vLLM's CudaPlatform (its non-NVML variant) from `tree`, reporting a Pascal GPU."""
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))
    # vllm._C is the compiled extension; the kernels used here are Triton only.
    for extension in ("vllm._C", "vllm._C_stable_libtorch"):
        sys.modules.setdefault(extension, types.ModuleType(extension))
    import vllm.platforms as platforms
    from vllm.platforms.cuda import NonNvmlCudaPlatform
    from vllm.platforms.interface import DeviceCapability

    class PascalCudaPlatform(NonNvmlCudaPlatform):
        @classmethod
        def get_device_capability(cls, device_id: int = 0) -> DeviceCapability:
            return DeviceCapability(*capability)

        @classmethod
        def get_device_name(cls, device_id: int = 0) -> str:
            return name

    platforms._current_platform = PascalCudaPlatform()
    return platforms._current_platform


def import_kernels(
    tree: Path, modules: Sequence[str], stubs: Sequence[str] = ()
) -> dict[str, types.ModuleType]:
    """Import `modules` from the vLLM source `tree`, with `stubs` replaced by stub modules.

    The stubs stay in place afterwards: vLLM also imports some of them at call time (its logger
    imports vllm.distributed the first time it warns once per process).
    """
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))
    finder = _StubFinder(stubs)
    sys.meta_path.insert(0, finder)
    try:
        return {name: importlib.import_module(name) for name in modules}
    finally:
        record = sys.modules.setdefault("_pascal_forge_stubbed", types.ModuleType("_pascal_forge_stubbed"))
        record.__dict__.setdefault("finders", []).append(finder)


def remove_stubs() -> None:
    """Take every stub finder off the import path again (the runner never does: one run, one process)."""
    record = sys.modules.get("_pascal_forge_stubbed")
    for finder in getattr(record, "finders", []):
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
    if record is not None:
        record.finders = []


def stubbed_modules() -> list[str]:
    record = sys.modules.get("_pascal_forge_stubbed")
    return sorted({name for finder in getattr(record, "finders", []) for name in finder.used})


def ensure_dist_info(tree: Path) -> str:
    """Give a source tree the metadata an installed vLLM has (Name, Version), once.

    vLLM 0.33.0's triton_utils asks importlib.metadata for vLLM's version while it checks for
    triton, and turns Triton off when the package is not installed.
    """
    namespace: dict[str, Any] = {}
    exec((tree / "vllm" / "_version.py").read_text(), namespace)
    version = str(namespace["__version__"])
    info = tree / f"vllm-{version}.dist-info"
    if not info.is_dir():
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    return version
