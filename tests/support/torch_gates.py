"""Runs one torch release's Triton gates, as the patch series leaves them, inside a real torch install.

Used by test_torch_gates.py as `python support/torch_gates.py <torch tree> <major> <minor>` in a
venv that holds torch (any recent release; only its runtime is borrowed), where <torch tree> holds
the gate files of 2.9.1 or 2.14.0. The gate modules are loaded from those files over the installed
ones; only the CUDA device queries are replaced, since there is no GPU here. Prints one JSON
object: what each gate decided.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

GATE_MODULES = ("torch._inductor.exc", "torch._dynamo.device_interface", "torch.utils._triton")
# 2.14.0's device_interface imports TritonUnavailableError, which older runtimes lack: the tree
# brings its own torch/_dynamo/exc.py then, loaded first.
DYNAMO_EXC = "torch._dynamo.exc"
SCHEDULER = "torch/_inductor/scheduler.py"


def _pretend_device(major: int, minor: int) -> SimpleNamespace:
    props = SimpleNamespace(
        name=f"device of capability {major}.{minor}",
        major=major,
        minor=minor,
        multi_processor_count=30,
        total_memory=24 << 30,
        gcnArchName="",
        warp_size=32,
    )
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
    torch.cuda.current_device = lambda: 0
    torch.cuda.get_device_properties = lambda device=None: props
    torch.cuda.get_device_capability = lambda device=None: (major, minor)
    return props


def _load(tree: Path, name: str) -> object:
    path = tree / (name.replace(".", "/") + ".py")
    importlib.import_module(name.rpartition(".")[0])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, leaf = name.rpartition(".")
    setattr(importlib.import_module(parent), leaf, module)
    return module


def _scheduler_create_backend(path: Path, has_triton: object) -> object:
    """Scheduler.create_backend from the tree's file, run with the installed inductor's globals.

    The whole scheduler module does not import against another torch release, so only this
    method is compiled from its source; `has_triton` and the exceptions are the tree's, loaded above.
    """
    import torch._inductor.scheduler as installed

    tree = ast.parse(path.read_text(encoding="utf-8"))
    scheduler_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Scheduler")
    method = next(
        n for n in scheduler_class.body if isinstance(n, ast.FunctionDef) and n.name == "create_backend"
    )
    namespace = {
        **vars(installed),
        "has_triton": has_triton,
        "GPUTooOldForTriton": sys.modules["torch._inductor.exc"].GPUTooOldForTriton,
        "TritonMissing": sys.modules["torch._inductor.exc"].TritonMissing,
    }
    exec(compile(ast.Module(body=[method], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["create_backend"]


def main() -> int:
    tree, major, minor = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    _pretend_device(major, minor)
    if (tree / (DYNAMO_EXC.replace(".", "/") + ".py")).is_file():
        _load(tree, DYNAMO_EXC)
    exc_module, device_interface, triton_utils = (_load(tree, name) for name in GATE_MODULES)
    from torch._inductor.codegen.common import init_backend_registration

    init_backend_registration()
    create_backend = _scheduler_create_backend(tree / SCHEDULER, triton_utils.has_triton)
    GPUTooOldForTriton = exc_module.GPUTooOldForTriton
    from torch._inductor.virtualized import V

    decisions = {
        "torch_file": torch.__file__,
        "gate_files": [m.__file__ for m in (device_interface, triton_utils)],
    }
    decisions["has_triton"] = triton_utils.has_triton()
    decisions["is_triton_capable"] = device_interface.CudaInterface.is_triton_capable()
    try:
        device_interface.CudaInterface.raise_if_triton_unavailable()
        decisions["raise_if_triton_unavailable"] = "accepted"
    except GPUTooOldForTriton as exc:
        decisions["raise_if_triton_unavailable"] = f"refused: {exc}"
    except ImportError as exc:  # past the capability check, with no triton to import
        decisions["raise_if_triton_unavailable"] = f"triton missing: {exc}"

    graph = SimpleNamespace(add_device_info=lambda device: None)
    with V.set_graph_handler(graph):
        try:
            create_backend(SimpleNamespace(), torch.device("cuda", 0))
            decisions["create_backend"] = "accepted"
        except GPUTooOldForTriton as exc:
            decisions["create_backend"] = f"refused: {exc}"
        except exc_module.TritonMissing as exc:
            decisions["create_backend"] = f"triton missing: {exc}"
        except Exception as exc:  # past the gate: building the real backend needs a real Scheduler
            decisions["create_backend"] = f"accepted (then {type(exc).__name__} building the backend: {exc})"
    print(json.dumps(decisions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
