"""Build, without a GPU, what the engine run (run_vllm_engine.py) takes to the GPU machine.

    python scripts/gpu/prepare_engine_carry.py DEST [--extension DIR]

DEST then holds (within the 64 MiB a GPU call carries, CARRY_LIMIT; the size of each part is
printed). Every archive is xz (preset 9); every carried shared library has its debug sections
stripped (strip --strip-debug: uvloop's 16 MB module is 2 MB of code and 14 of DWARF):
- vllm.tar.xz: the Python files of the current release's sdist with its whole series
  (recipes/vllm/patches/<version>/, 0030 and up included) and a vllm-<version>.dist-info, which
  vLLM's platform detection reads;
- pydeps.tar.xz: the packages of that release's requirements (scripts/setup-vllm-deps.sh) that the
  engine imports, found by building the CPU matrix's cells for the carried families with
  PASCAL_FORGE_ENGINE_MODULES set, less what the device has (torch, triton, numpy and torch's own
  dependencies); transformers is cut down to the model folders that were imported and every
  other model's __init__.py and configuration module (vLLM imports configs at module level);
  test folders are left out (libtvm_ffi_testing.so is not: tvm_ffi's core links it, and xgrammar
  imports tvm_ffi);
- extension.tar.xz (with --extension DIR): vLLM's compiled extension built for Pascal
  (_C_stable_libtorch, _moe_C_stable_libtorch and cumem_allocator, which go into vllm/) and the
  CUDA 12 runtime they load (libcudart.so.12, put on LD_LIBRARY_PATH): run_gpu_engine.sh unpacks
  them; without it the run is Triton-only (CustomOps native);
- triton-overlay/ and scripts/: as prepare_gpu_carry.py makes them (the device's triton 3.6.0
  with our 3.6.0 series; the current stack's triton 3.8.0 wheel does not fit the upload), with
  pascal_forge's bench and cost model (the bench step).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS / "gpu"))

import prepare_gpu_carry  # noqa: E402
from vllm_import import ensure_dist_info  # noqa: E402

from pascal_forge.checks.vllm.compile import current_release, triton_tree  # noqa: E402
from pascal_forge.checks.vllm.engine import Cell, run_engine_matrix  # noqa: E402
from pascal_forge.recipes.recipe import Recipe  # noqa: E402

# The current stack's vLLM, and its triton for the CPU trace only (conda_build_config.yaml).
CURRENT = current_release(prepare_gpu_carry.VARIANT_CONFIG)
VERSION, TRITON = CURRENT.version, CURRENT.triton_version
FAMILIES = ("dense", "moe", "gemma3", "hybrid")
# The lent GPU machine's python3 (.library/device/KINDS.md: Python 3.12.3); the trace runs here
# under 3.11, so the packages with CPython extension modules are carried as their 3.12 wheels.
DEVICE_PYTHON = "3.12"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")
# vLLM's Python, its kernel configs (fused_moe/configs/*.json) and chat templates.
CARRIED_SUFFIXES = (".py", ".json", ".jinja")
# What the device call carries at most (.library/device/README.md), and the size aimed at.
CARRY_LIMIT = 64 * 2**20
CARRY_AIM = 60 * 2**20
# The extension a Pascal build of vLLM's CUDA sources delivers (--extension DIR): the modules that
# go into the vllm package, and the CUDA 12 runtime they need beside the device's CUDA 13 torch.
EXTENSION_MODULES = (
    "_C_stable_libtorch.abi3.so",
    "_moe_C_stable_libtorch.abi3.so",
    "cumem_allocator.abi3.so",
    "fs_io_C.abi3.so",
    "spinloop.abi3.so",
)
EXTENSION_LIBRARIES = ("libcudart.so.12",)
TEST_FOLDERS = {"tests", "test", "testing_data"}
# On the device already (torch 2.11's own dependencies), or never imported by a run there.
DEVICE_HAS = {"torch", "triton", "numpy", "numpy.libs", "sympy", "mpmath", "networkx", "jinja2",
              "markupsafe", "filelock", "fsspec", "typing_extensions", "setuptools", "_distutils_hack",
              "pkg_resources", "pip", "pytest", "_pytest", "pascal_forge", "vllm", "torchgen", "functorch",
              # what the CPU harness (pascal_forge) imports, not vLLM
              "rattler_build", "rattler", "boto3", "botocore", "s3transfer", "jmespath",
              # imported under try/except by vLLM (video decoding, gRPC serving); 80 MB with their libs
              "cv2", "grpc"}  # fmt: skip


def traced_top_levels(tree: Path, roots: list[Path], triton_dir: Path) -> dict[Path, dict[str, set[str]]]:
    """Per root (the release's deps folder, the venv's site-packages): the top-level names the
    engine imported from it, and for transformers the model folders it imported."""
    with tempfile.TemporaryDirectory() as scratch:
        modules = Path(scratch) / "modules.txt"
        os.environ["PASCAL_FORGE_ENGINE_MODULES"] = str(modules)
        cells = [Cell(family, "fp16") for family in FAMILIES]
        results = run_engine_matrix(tree, roots[0], 61, VERSION, cells, triton_dir)
        del os.environ["PASCAL_FORGE_ENGINE_MODULES"]
        bad = [r.summary for r in results if r.verdict != "works"]
        if bad:
            raise SystemExit(f"the CPU trace did not build every family: {bad}")
        files = modules.read_text().splitlines()
    found: dict[Path, dict[str, set[str]]] = {root: {} for root in roots}
    for name in files:
        for root in roots:
            prefix = str(root) + os.sep
            if not name.startswith(prefix):
                continue
            parts = Path(name[len(prefix) :]).parts
            top = parts[0].split(".")[0]  # a package, or a module file (name.py, name.cpython-*.so)
            if top in DEVICE_HAS:
                break
            found[root].setdefault(top, set())
            if top == "transformers" and len(parts) > 2 and parts[1] == "models":
                found[root][top].add(parts[2])
            break
    return found


def pydeps_tarball(found: dict[Path, dict[str, set[str]]], destination: Path, scratch: Path) -> None:
    with tarfile.open(destination, "w:xz", preset=9) as archive:
        add = _Adder(archive, scratch)
        for root, tops in found.items():
            for top in sorted(tops):
                if not (root / top).is_dir():  # a single-file module
                    for path in root.glob(f"{top}.*"):
                        if path.is_file():
                            add(path, path.name)
                    continue
                path = root / top
                if top == "transformers":
                    traced = {"__init__.py", "auto", *tops[top]}
                    add(path, top, lambda parts, m=traced: _untraced_model_file(parts, m))
                else:
                    add(path, path.name)
                for libs in root.glob(f"{top}*.libs"):  # auditwheel's vendored shared libraries
                    add(libs, libs.name)
            for info in root.glob("*.dist-info"):  # importlib.metadata asks for versions
                record = info / "RECORD"
                if not record.is_file():
                    continue
                lines = record.read_text().splitlines()
                owned = {line.split(",")[0].split("/")[0].split(".")[0] for line in lines}
                if owned & set(tops):
                    add(info, info.name)
                    # auditwheel's vendored libraries sit under the distribution's name
                    # (pyzmq.libs for zmq), which the top-level glob above does not match.
                    vendored = {line.split("/")[0] for line in lines if ".libs/" in line.split(",")[0]}
                    for libs in sorted(vendored - {f"{top}.libs" for top in tops}):
                        if (root / libs).is_dir():
                            add(root / libs, libs)


def _untraced_model_file(parts: tuple[str, ...], traced: set[str]) -> bool:
    """A transformers file the carry leaves out: under models/, in a model folder the trace did
    not import, and neither the folder's __init__.py nor its configuration module. Every config
    stays: vLLM imports configs it never builds at the top of modules the CPU trace does not
    reach (the GPU worker's import of deepseek_v4's mm_preprocess asks for DeepseekV4Config)."""
    if len(parts) <= 2 or parts[1] != "models" or parts[2] in traced:
        return False
    kept = len(parts) == 4 and (parts[3] == "__init__.py" or parts[3].startswith("configuration_"))
    return not kept


class _Adder:
    """Adds a file or a folder to a tar archive without caches, tests and test-only libraries,
    and with every shared library's debug sections stripped (a copy under scratch)."""

    def __init__(self, archive: tarfile.TarFile, scratch: Path) -> None:
        self.archive = archive
        self.scratch = scratch / "stripped"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.saved = 0

    def __call__(self, path: Path, arcname: str, skip=None) -> None:
        files = (
            [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
        )
        for file in files:
            name = arcname if file == path else f"{arcname}/{file.relative_to(path).as_posix()}"
            parts = Path(name).parts
            if "__pycache__" in parts or TEST_FOLDERS & set(parts[1:-1]):
                continue
            if skip is not None and skip(parts):
                continue
            self.archive.add(self._stripped(file), arcname=name, recursive=False)

    def _stripped(self, file: Path) -> Path:
        if file.is_symlink() or not (file.name.endswith(".so") or ".so." in file.name):
            return file
        with file.open("rb") as head:
            if head.read(4) != b"\x7fELF":
                return file
        copy = self.scratch / f"{len(list(self.scratch.iterdir()))}-{file.name}"
        shutil.copy2(file, copy)
        subprocess.run(["strip", "--strip-debug", str(copy)], check=True)
        self.saved += file.stat().st_size - copy.stat().st_size
        return copy


def extension_tarball(extension: Path, destination: Path) -> list[str]:
    """The Pascal build's extension modules and CUDA 12 runtime, xz; returns what they load
    (DT_NEEDED) for the report, so a library the device lacks shows before the call."""
    missing = [
        name for name in (*EXTENSION_MODULES, *EXTENSION_LIBRARIES) if not (extension / name).is_file()
    ]
    if missing:
        raise SystemExit(f"{extension} lacks {missing}: the Pascal build of vLLM's extension delivers them")
    needed = []
    with tarfile.open(destination, "w:xz", preset=9) as archive:
        for name in (*EXTENSION_MODULES, *EXTENSION_LIBRARIES):
            archive.add(extension / name, arcname=f"{'vllm' if name in EXTENSION_MODULES else 'lib'}/{name}")
            dynamic = subprocess.run(["readelf", "-d", str(extension / name)], capture_output=True, text=True)
            libs = [
                line.split("[")[1].rstrip("]") for line in dynamic.stdout.splitlines() if "(NEEDED)" in line
            ]
            needed.append(f"{name} ({(extension / name).stat().st_size / 2**20:.1f} MiB): {', '.join(libs)}")
    return needed


def retarget_compiled(
    found: dict[Path, dict[str, set[str]]], python: str, scratch: Path
) -> dict[Path, dict[str, set[str]]]:
    """Swap each carried distribution that holds extension modules built for this Python for the
    same version's binary wheel for `python`, unpacked under scratch (pip download, no deps)."""
    # name.cpython-311-x86_64-linux-gnu.so (a .pyc of __pycache__ carries the tag too)
    this_python = f".cpython-{sys.version_info.major}{sys.version_info.minor}-"
    wheels_root = scratch / f"python{python}"
    retargeted: dict[Path, dict[str, set[str]]] = {root: dict(tops) for root, tops in found.items()}
    retargeted[wheels_root] = {}
    for root in found:
        for dist in importlib.metadata.distributions(path=[str(root)]):
            files = [str(f) for f in dist.files or ()]
            owned = {f.split("/")[0].split(".")[0] for f in files} & set(retargeted[root])
            if not owned or not any(this_python in f and f.endswith(".so") for f in files):
                continue
            downloads = scratch / "wheels" / dist.metadata["Name"]
            platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 "--python-version", python, *platforms, "-d", str(downloads),
                 f"{dist.metadata['Name']}=={dist.version}"],
                check=True,
            )  # fmt: skip
            for wheel in downloads.glob("*.whl"):
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(wheels_root)
            for top in owned:
                retargeted[wheels_root][top] = retargeted[root].pop(top)
            print(f"carried as its Python {python} wheel: {dist.metadata['Name']} {dist.version}")
    return retargeted


def main(destination: Path, extension: Path | None) -> int:
    destination.mkdir(parents=True, exist_ok=True)
    for stale in ("pydeps.tgz", "vllm.tgz", "extension.tar.xz"):  # an earlier carry's archives
        (destination / stale).unlink(missing_ok=True)
    prepare_gpu_carry.copy_scripts(destination)
    # The engine's own modules the run imports on the device (make: the tiny models' configs;
    # bench: pascal-forge bench and the cost model it prints beside the figures).
    forge = destination / "scripts" / "pascal_forge"
    for name in ("checks/__init__.py", "checks/bench.py", "checks/vllm/__init__.py", "checks/vllm/engine.py",
                 "channel/__init__.py", "channel/ours.py"):  # fmt: skip
        (forge / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SCRIPTS / "pascal_forge" / name, forge / name)
    shutil.copytree(SCRIPTS / "pascal_forge" / "checks" / "costmodel", forge / "checks" / "costmodel",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    vllm = Recipe("vllm", REPO / "recipes" / "vllm")
    with tempfile.TemporaryDirectory(prefix="pascal-forge-engine-carry-") as scratch:
        scratch_dir = Path(scratch)
        if extension is not None:
            for line in extension_tarball(extension, destination / "extension.tar.xz"):
                print("extension:", line)
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
        site_packages = Path(sysconfig.get_paths()["purelib"])
        found = retarget_compiled(
            traced_top_levels(tree, [deps, site_packages], triton_dir), DEVICE_PYTHON, scratch_dir
        )
        for root, tops in found.items():
            print(f"carried from {root}:", sorted(tops))
        print("transformers models:", sorted(found[deps].get("transformers", ())))
        pydeps_tarball(found, destination / "pydeps.tar.xz", scratch_dir)
        with tarfile.open(destination / "vllm.tar.xz", "w:xz", preset=9) as archive:
            for path in sorted((tree / "vllm").rglob("*")):
                if path.is_file() and path.suffix in CARRIED_SUFFIXES and "__pycache__" not in path.parts:
                    archive.add(path, arcname=str(path.relative_to(tree)))
            for info in tree.glob("vllm-*.dist-info"):
                archive.add(info, arcname=info.name)
    # The carried extension modules (pydantic_core, msgspec, zmq, ...) are built for this Python.
    (destination / "python.txt").write_text(f"{DEVICE_PYTHON}\n")
    parts = {p.name: p.stat().st_size for p in destination.iterdir() if p.is_file()}
    parts |= {
        p.name + "/": sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        for p in destination.iterdir()
        if p.is_dir()
    }
    for name, size in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"  {size / 2**20:6.1f} MiB  {name}")
    size = sum(parts.values())
    print(f"{destination}: {size / 2**20:.1f} MiB (aim {CARRY_AIM / 2**20:.0f}, limit {CARRY_LIMIT >> 20})")
    return 0 if size < CARRY_LIMIT else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("destination", type=Path)
    parser.add_argument("--extension", type=Path, help="the Pascal build's extension folder (default: none)")
    arguments = parser.parse_args()
    sys.exit(main(arguments.destination, arguments.extension))
