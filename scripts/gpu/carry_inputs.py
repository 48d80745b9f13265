"""What a self-contained numerics check takes from the GPU carry (scripts/gpu/prepare_gpu_carry.py).

- vllm_tree: a vLLM source tree, given as a folder or as the carry's tarball of its Python files
  (vllm-<version>-pascal.tgz), unpacked under a scratch folder;
- triton_first: the machine's own triton, or, with the carry's triton-overlay/, a copy of it
  carrying our triton series, put first on sys.path. Call it before anything imports triton.
"""

from __future__ import annotations

import importlib.util
import sys
import tarfile
from pathlib import Path


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
