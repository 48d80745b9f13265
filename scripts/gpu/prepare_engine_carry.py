"""Build, without a GPU, what the engine run (run_vllm_engine.py) takes to the GPU machine.

    python scripts/gpu/prepare_engine_carry.py DEST

DEST then holds (within the 64 MiB a GPU call carries; the size is printed):
- vllm.tgz: the Python files of the current release's sdist with its whole series
  (recipes/vllm/patches/<version>/, 0030 and up included) and a vllm-<version>.dist-info, which
  vLLM's platform detection reads;
- pydeps.tgz: the packages of that release's requirements (scripts/setup-vllm-deps.sh) that the
  engine imports, found by building the CPU matrix's cells for the carried families with
  PASCAL_FORGE_ENGINE_MODULES set, less what the device has (torch, triton, numpy and torch's own
  dependencies); transformers is cut down to the model folders that were imported;
- triton-overlay/ and scripts/: as prepare_gpu_carry.py makes them (the device's triton 3.6.0
  with our 3.6.0 series; the current stack's triton 3.8.0 wheel does not fit the upload).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS / "gpu"))

import prepare_gpu_carry  # noqa: E402
from vllm_import import ensure_dist_info  # noqa: E402

from pascal_forge.recipes import Recipe  # noqa: E402
from pascal_forge.vllm_checks import triton_tree  # noqa: E402
from pascal_forge.vllm_engine import Cell, run_engine_matrix  # noqa: E402

VERSION = "0.34.0"
TRITON = "3.8.0"  # the stack's triton, for the CPU trace only
FAMILIES = ("dense", "moe", "gemma3", "hybrid")
# vLLM's Python, its kernel configs (fused_moe/configs/*.json) and chat templates.
CARRIED_SUFFIXES = (".py", ".json", ".jinja")
# On the device already (torch 2.11's own dependencies), or never imported by a run there.
DEVICE_HAS = {"torch", "triton", "numpy", "numpy.libs", "sympy", "mpmath", "networkx", "jinja2",
              "markupsafe", "filelock", "fsspec", "typing_extensions", "setuptools", "_distutils_hack",
              "pkg_resources"}  # fmt: skip


def traced_top_levels(tree: Path, deps: Path, triton_dir: Path) -> dict[str, set[str]]:
    """Top-level names under `deps` the engine imported, and for transformers its model folders."""
    with tempfile.TemporaryDirectory() as scratch:
        modules = Path(scratch) / "modules.txt"
        os.environ["PASCAL_FORGE_ENGINE_MODULES"] = str(modules)
        cells = [Cell(family, "fp16") for family in FAMILIES]
        results = run_engine_matrix(tree, deps, 61, VERSION, cells, triton_dir)
        del os.environ["PASCAL_FORGE_ENGINE_MODULES"]
        bad = [r.summary for r in results if r.verdict != "works"]
        if bad:
            raise SystemExit(f"the CPU trace did not build every family: {bad}")
        files = modules.read_text().splitlines()
    found: dict[str, set[str]] = {}
    root = str(deps) + os.sep
    for name in files:
        if name.startswith(root):
            parts = Path(name[len(root) :]).parts
            top = parts[0].removesuffix(".py")
            found.setdefault(top, set())
            if top == "transformers" and len(parts) > 2 and parts[1] == "models":
                found[top].add(parts[2])
    return found


def pydeps_tarball(deps: Path, found: dict[str, set[str]], destination: Path) -> None:
    with tarfile.open(destination, "w:gz") as archive:
        for top in sorted(set(found) - DEVICE_HAS):
            path = deps / top if (deps / top).exists() else deps / f"{top}.py"
            if top == "transformers":
                models = {"__init__.py", "auto", *found[top]}
                archive.add(path, arcname=top, filter=lambda info, m=models: _keep_models(info, m))
            else:
                archive.add(path, arcname=path.name)
        for info in deps.glob("*.dist-info"):  # importlib.metadata asks for versions
            archive.add(info, arcname=info.name)


def _keep_models(info: tarfile.TarInfo, models: set[str]) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    if len(parts) > 2 and parts[1] == "models" and parts[2] not in models:
        return None
    return None if "__pycache__" in parts else info


def main(destination: Path) -> int:
    destination.mkdir(parents=True, exist_ok=True)
    prepare_gpu_carry.copy_scripts(destination)
    # The engine's own modules the run imports on the device (make: the tiny models' configs).
    shutil.copy(SCRIPTS / "pascal_forge" / "vllm_engine.py", destination / "scripts" / "pascal_forge")
    vllm = Recipe("vllm", REPO / "recipes" / "vllm")
    with tempfile.TemporaryDirectory(prefix="pascal-forge-engine-carry-") as scratch:
        scratch_dir = Path(scratch)
        prepare_gpu_carry.write_triton_overlay(destination, scratch_dir)
        tree = prepare_gpu_carry.patched_upstream(
            vllm, prepare_gpu_carry.VARIANT_CONFIG, scratch_dir / "vllm", None, VERSION
        )
        ensure_dist_info(tree)
        deps = Path(
            subprocess.run(
                ["bash", str(SCRIPTS / "setup-vllm-deps.sh"), str(tree / "requirements" / "common.txt"),
                 str(REPO / ".cache" / f"vllm-deps-{VERSION}")],
                env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]
        )  # fmt: skip
        triton = Recipe("triton", REPO / "recipes" / "triton")
        triton_dir, _ = triton_tree(
            triton, prepare_gpu_carry.VARIANT_CONFIG, scratch_dir / "triton", None, TRITON
        )
        found = traced_top_levels(tree, deps, triton_dir)
        print("carried packages:", sorted(set(found) - DEVICE_HAS))
        print("transformers models:", sorted(found.get("transformers", ())))
        pydeps_tarball(deps, found, destination / "pydeps.tgz")
        with tarfile.open(destination / "vllm.tgz", "w:gz") as archive:
            for path in sorted((tree / "vllm").rglob("*")):
                if (
                    path.is_file()
                    and path.suffix in (".py", ".json", ".jinja")
                    and "__pycache__" not in path.parts
                ):
                    archive.add(path, arcname=str(path.relative_to(tree)))
            for info in tree.glob("vllm-*.dist-info"):
                archive.add(info, arcname=info.name)
    size = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    print(f"{destination}: {size / 2**20:.1f} MiB")
    return 0 if size < 64 * 2**20 else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
