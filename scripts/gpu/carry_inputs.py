"""What a self-contained numerics check takes from the GPU carry (scripts/gpu/prepare_gpu_carry.py).

- vllm_tree: a vLLM source tree, given as a folder or as the carry's tarball of its Python files
  (vllm-<version>-pascal.tgz), unpacked under a scratch folder;
- triton_first: the machine's own triton, or, with the carry's triton-overlay/, a copy of it
  carrying our triton series, put first on sys.path. Call it before anything imports triton;
- module_of_functions: named functions of a vLLM file, loaded without the rest of vLLM;
- check_arguments, triton_check, finish: the arguments, the Pascal-form run and the report of a check.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
import tarfile
import tempfile
import time
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from pascal_forge.pascal import P40, SHARED_MEMORY_PER_BLOCK


def vllm_tree(source: Path, scratch: Path) -> Path:
    """`source` if it is a folder, else its tarball unpacked under `scratch`."""
    if source.is_dir():
        return source.resolve()
    if not source.is_file():
        raise SystemExit(f"{source}: no vLLM tree or tarball (scripts/gpu/prepare_gpu_carry.py makes one)")
    tree = scratch / "vllm-tree"
    tree.mkdir(parents=True, exist_ok=True)
    with tarfile.open(source) as archive:
        archive.extractall(tree, filter="data")
    return tree


def triton_first(overlay: Path | None, scratch: Path) -> str:
    """Which triton the check runs: "installed", or our series overlaid on a copy of it."""
    if "triton" in sys.modules:
        raise RuntimeError("triton_first() must run before triton is imported")
    if overlay is None:
        return "installed"
    from pascal_form import overlay_patched_triton

    spec = importlib.util.find_spec("triton")
    if spec is None or spec.origin is None:
        raise SystemExit("no triton installed to overlay")
    installed = Path(spec.origin).parent
    destination = scratch / "patched-triton"
    files = overlay_patched_triton(installed, overlay, destination)
    sys.path.insert(0, str(destination))
    return f"installed with {len(files)} patched files from {overlay}"


def module_of_functions(source: Path, names: list[str], header: str, scratch: Path) -> types.ModuleType:
    """The functions `names` of a source file (decorators included), loaded as one module after
    `header`, without the file's other imports. Written to disk: @triton.jit reads its source."""
    text = source.read_text()
    lines = text.splitlines()
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found[node.name] = "\n".join(lines[start - 1 : node.end_lineno])
    missing = sorted(set(names) - set(found))
    if missing:
        raise SystemExit(f"{source} has no function {', '.join(missing)}")
    path = scratch / f"{source.stem}_functions.py"
    path.write_text(header + "\n\n" + "\n\n\n".join(found[n] for n in names) + "\n")
    spec = importlib.util.spec_from_file_location(f"{source.stem}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_arguments(doc: str, report_name: str, triton: bool = True) -> tuple[argparse.Namespace, dict]:
    """The arguments every check takes (--vllm, --out, --cpu, and --triton-overlay for Triton's),
    and its report's first entries: the vLLM tree and the device ("cpu" with --cpu, else "cuda")."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--vllm", type=Path, default=Path(".gpu-carry/vllm-0.34.0-pascal.tgz"),
                        help="a vLLM source tree, or the carry's tarball of its Python files")  # fmt: skip
    if triton:
        parser.add_argument(
            "--triton-overlay", type=Path, help="the carry's triton-overlay/ (our triton series)"
        )
    parser.add_argument("--out", type=Path, help=f"folder for {report_name}")
    parser.add_argument("--cpu", action="store_true", help="on the CPU (Triton's: TRITON_INTERPRET=1), small")
    args = parser.parse_args()
    return args, {"vllm": str(args.vllm), "device": "cpu" if args.cpu else "cuda"}


def pascal_launches(launches: Sequence[Any]) -> dict:
    """The kernels compiled (pascal_form's log): each must be sm_61 PTX within a P40's shared memory."""
    seen = sorted({(x.kernel, x.target, x.shared) for x in launches})
    pascal = bool(seen) and all(
        target == f"sm_{P40.capability}" and shared <= SHARED_MEMORY_PER_BLOCK for _, target, shared in seen
    )
    return {"launches": seen, "launches_sm61_within_48KB": pascal}


def finish(report: dict, cases: list[dict], out: Path | None, report_name: str) -> int:
    """Write the report (with every case) under `out`, print its summary; the exit status."""
    report["passed"] = (
        bool(cases) and all(c["passed"] for c in cases) and report.get("launches_sm61_within_48KB", True)
    )
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / report_name).write_text(json.dumps({**report, "cases": cases}, indent=1))
    print(json.dumps(report))
    return 0 if report["passed"] else 1


@contextmanager
def triton_check(args: argparse.Namespace, report: dict) -> Iterator[tuple[Path, Path]]:
    """(scratch folder, vLLM tree) for a check of vLLM's Triton kernels.

    Sets up triton first (triton_first), then, on the GPU, compiles every launch made inside for
    sm_61 (pascal_form) while torch and triton describe the GPU as a P40 (p40_device_queries: a
    launcher that picks its path by capability, as 0044's AWQ GEMM does, takes the P40's); with
    --cpu, Triton's interpreter runs them (vLLM, which turns Triton off without an active GPU
    driver, is told the CUDA driver is active). Adds to `report` the triton, the GPU, the seconds
    taken and the launches' check.
    """
    import torch

    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        report["triton_source"] = triton_first(args.triton_overlay, scratch)
        tree = vllm_tree(args.vllm, scratch)
        import triton
        from pascal_form import p40_device_queries, pascal_form

        report["triton"] = triton.__version__
        if args.cpu:
            from triton.backends import backends

            backends["nvidia"].driver.is_active = staticmethod(lambda: True)
        else:
            report["gpu"] = torch.cuda.get_device_name()
        started = time.perf_counter()
        with (
            nullcontext(None) if args.cpu else pascal_form() as log,
            nullcontext() if args.cpu else p40_device_queries(),
        ):
            yield scratch, tree
        report["seconds"] = time.perf_counter() - started
    if log is not None:
        report |= pascal_launches(log.launches)
