"""PyTorch 2.9.1's Triton gates, patched to accept Pascal, checked on the released wheel's files.

The patch series is applied to torch 2.9.1's own files (from the released wheel, cached by
sha256); the patched and the stock gate code then run inside a real torch install (the CPU
build pip finds; only its runtime is borrowed, the gate modules are 2.9.1's), with the CUDA
device queries answering for a device of the capability under test, since no GPU exists here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import RECIPES, REPO, VARIANT_CONFIG
from pascal_forge.pascal_kernels.suite import prepare_tree
from pascal_forge.patches import (
    PatchError,
    apply_series,
    check_recipe_patches,
    patch_check_target,
    recipe_patch_series,
)
from pascal_forge.recipes import Recipe
from pascal_forge.sources import fetch

pytestmark = pytest.mark.slow

PYTORCH = Recipe(name="pytorch", directory=RECIPES / "pytorch")
SEED_TORCH = "2.9.1"
# Any torch that installs here lends its runtime; the gates under test are 2.9.1's files.
RUNTIME_TORCH = "torch==2.13.0"
GATE_FILES = (
    "torch/utils/_triton.py",
    "torch/_inductor/scheduler.py",
    "torch/_dynamo/device_interface.py",
    "torch/_inductor/exc.py",
)
GATES = ("has_triton", "is_triton_capable", "raise_if_triton_unavailable", "create_backend")
PROBE = Path(__file__).resolve().parent / "torch_gates_support.py"
TOO_OLD = "which is too old to be supported by the triton GPU compiler"


@pytest.fixture(scope="session")
def stock_gates(upstream_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch 2.9.1's gate files, from the released wheel."""
    target = patch_check_target(PYTORCH, SEED_TORCH)
    assert target is not None
    tree = tmp_path_factory.mktemp("torch-2.9.1-stock")
    with zipfile.ZipFile(fetch(target.artifact, upstream_cache)) as wheel:
        for name in GATE_FILES:
            wheel.extract(name, tree)
    return tree


@pytest.fixture(scope="session")
def patched_gates(stock_gates: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("torch-2.9.1-patched")
    for name in GATE_FILES:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes((stock_gates / name).read_bytes())
    apply_series(
        recipe_patch_series(PYTORCH, VARIANT_CONFIG, SEED_TORCH),
        tree,
        patch_check_target(PYTORCH, SEED_TORCH).path_map,
    )
    return tree


@pytest.fixture(scope="session")
def torch_python(upstream_cache: Path) -> Path:
    """A venv holding a CPU torch, cached next to the upstream artifacts."""
    venv = upstream_cache.parent / "torch-gates-venv"
    python = venv / "bin" / "python"
    if not (venv / "installed").is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", RUNTIME_TORCH], check=True)
        (venv / "installed").write_text(RUNTIME_TORCH)
    return python


@pytest.fixture(scope="session")
def triton_on_path(upstream_cache: Path) -> Path:
    """has_triton() imports triton first: the stock triton 3.6.0 wheel, unpacked."""
    triton = Recipe(name="triton", directory=RECIPES / "triton")
    return prepare_tree(
        patch_check_target(triton, "3.6.0"), [], upstream_cache.parent / "pascal-kernels", upstream_cache
    )


def _gates(python: Path, triton: Path, tree: Path, major: int, minor: int) -> dict:
    completed = subprocess.run(
        [python, PROBE, str(tree), str(major), str(minor)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(triton), "PATH": "/usr/bin:/bin", "HOME": str(REPO / ".cache")},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    decisions = json.loads(completed.stdout.strip().splitlines()[-1])
    assert all(path.startswith(str(tree)) for path in decisions["gate_files"])
    return decisions


def test_the_pytorch_patch_applies_without_fuzz_to_the_released_wheel(upstream_cache: Path) -> None:
    assert check_recipe_patches(PYTORCH, VARIANT_CONFIG, upstream_cache) == 1


def test_a_stale_pytorch_patch_names_its_file_and_hunk(stock_gates: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for name in GATE_FILES:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes((stock_gates / name).read_bytes())
    scheduler = tree / "torch/_inductor/scheduler.py"
    scheduler.write_text(scheduler.read_text().replace("if not has_triton():", "if not has_triton(device):"))
    with pytest.raises(PatchError, match=r"hunk #1 of torch/_inductor/scheduler\.py"):
        apply_series(recipe_patch_series(PYTORCH, VARIANT_CONFIG, SEED_TORCH), tree)


@pytest.mark.parametrize(
    ("tree", "capability", "accepted"),
    [
        ("patched", (6, 1), True),
        ("patched", (6, 0), True),
        ("patched", (5, 2), False),
        ("stock", (6, 1), False),
        ("stock", (7, 0), True),
    ],
    ids=["patched-6.1", "patched-6.0", "patched-5.2", "stock-6.1", "stock-7.0"],
)
def test_triton_gates(
    torch_python: Path,
    triton_on_path: Path,
    stock_gates: Path,
    patched_gates: Path,
    tree: str,
    capability: tuple[int, int],
    accepted: bool,
) -> None:
    gates = _gates(
        torch_python, triton_on_path, patched_gates if tree == "patched" else stock_gates, *capability
    )
    assert gates["has_triton"] is accepted
    assert gates["is_triton_capable"] is accepted
    for gate in ("raise_if_triton_unavailable", "create_backend"):
        if accepted:
            assert gates[gate] == "accepted", gates[gate]
        else:
            assert gates[gate].startswith("refused:") and TOO_OLD in gates[gate]
            minimum = "6.0" if tree == "patched" else "7.0"
            assert f"CUDA Capability >= {minimum}" in gates[gate]
            assert f"capability {capability[0]}.{capability[1]}" in gates[gate]
