"""PyTorch's Triton gates, patched to accept Pascal, checked on each released version's files.

For every torch version the recipe builds (2.9.1 and 2.14.0) the version's patch series is
applied to that version's own files (from the released wheel, cached by sha256); the patched and
the stock gate code then run inside a real torch install (the CPU build pip finds; only its
runtime is borrowed, the gate modules are the version's), next to the stock triton of the same
stack, with the CUDA device queries answering for a device of the capability under test, since
no GPU exists here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support.repo import RECIPES, REPO, VARIANT_CONFIG

from pascal_forge.checks.triton.suite import prepare_tree
from pascal_forge.recipes.patches import (
    PatchError,
    apply_series,
    check_recipe_patches,
    patch_check_target,
    recipe_patch_series,
)
from pascal_forge.recipes.recipe import Recipe
from pascal_forge.recipes.variants import stacks
from pascal_forge.upstream.artifacts import fetch

pytestmark = pytest.mark.slow

PYTORCH = Recipe(name="pytorch", directory=RECIPES / "pytorch")
TRITON = Recipe(name="triton", directory=RECIPES / "triton")
# Any torch that installs here lends its runtime; the gates under test are the version's files.
RUNTIME_TORCH = "torch==2.13.0"
GATE_FILES = (
    "torch/utils/_triton.py",
    "torch/_inductor/scheduler.py",
    "torch/_dynamo/device_interface.py",
    "torch/_inductor/exc.py",
)
# 2.14.0's device_interface imports an exception the runtime's torch/_dynamo/exc.py lacks.
EXTRA_GATE_FILES = {"2.14.0": ("torch/_dynamo/exc.py",)}
GATES = ("has_triton", "is_triton_capable", "raise_if_triton_unavailable", "create_backend")
PROBE = Path(__file__).resolve().parent / "support" / "torch_gates.py"
TOO_OLD = "which is too old to be supported by the triton GPU compiler"


# torch version -> the triton version of the same stack, oldest stack first.
STACKS = {stack.pytorch: stack.triton for stack in stacks(VARIANT_CONFIG)}
TORCH_VERSIONS = list(STACKS)


def _gate_files(version: str) -> tuple[str, ...]:
    return GATE_FILES + EXTRA_GATE_FILES.get(version, ())


@pytest.fixture(scope="session", params=TORCH_VERSIONS)
def torch_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def stock_gates(upstream_cache: Path, tmp_path_factory: pytest.TempPathFactory, torch_version: str) -> Path:
    """The version's gate files, from its released wheel."""
    return _extract_gates(
        torch_version, upstream_cache, tmp_path_factory.mktemp(f"torch-{torch_version}-stock")
    )


@pytest.fixture(scope="session")
def patched_gates(stock_gates: Path, tmp_path_factory: pytest.TempPathFactory, torch_version: str) -> Path:
    tree = _copy_gates(stock_gates, tmp_path_factory.mktemp(f"torch-{torch_version}-patched"), torch_version)
    apply_series(
        recipe_patch_series(PYTORCH, VARIANT_CONFIG, torch_version),
        tree,
        patch_check_target(PYTORCH, torch_version).path_map,
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
def triton_on_path(upstream_cache: Path, torch_version: str) -> Path:
    """has_triton() imports triton first: the stock wheel of the stack's triton, unpacked."""
    return prepare_tree(
        patch_check_target(TRITON, STACKS[torch_version]),
        [],
        upstream_cache.parent / "pascal-kernels",
        upstream_cache,
    )


def _extract_gates(version: str, upstream_cache: Path, tree: Path) -> Path:
    target = patch_check_target(PYTORCH, version)
    assert target is not None, f"recipes/pytorch/recipe.yaml has no patch-check artifact for {version}"
    with zipfile.ZipFile(fetch(target.artifact, upstream_cache)) as wheel:
        for name in _gate_files(version):
            wheel.extract(name, tree)
    return tree


def _copy_gates(source: Path, tree: Path, version: str) -> Path:
    for name in _gate_files(version):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes((source / name).read_bytes())
    return tree


def _gates(python: Path, triton: Path | None, tree: Path, major: int, minor: int) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(REPO / ".cache")}
    if triton is not None:
        env["PYTHONPATH"] = str(triton)
    completed = subprocess.run(
        [python, PROBE, str(tree), str(major), str(minor)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    decisions = json.loads(completed.stdout.strip().splitlines()[-1])
    assert all(path.startswith(str(tree)) for path in decisions["gate_files"])
    return decisions


def test_each_pytorch_series_applies_without_fuzz_to_its_released_wheel(upstream_cache: Path) -> None:
    assert check_recipe_patches(PYTORCH, VARIANT_CONFIG, upstream_cache) == {"2.9.1": 1, "2.14.0": 3}


def test_the_2_9_1_patch_does_not_fit_2_14_0(upstream_cache: Path, tmp_path: Path) -> None:
    # Why 2.14.0 has a series of its own: has_triton() lost its capability check.
    tree = _extract_gates("2.14.0", upstream_cache, tmp_path / "tree")
    with pytest.raises(PatchError, match=r"hunk #1 of torch/utils/_triton\.py"):
        apply_series(recipe_patch_series(PYTORCH, VARIANT_CONFIG, "2.9.1"), tree)


def test_a_stale_pytorch_patch_names_its_file_and_hunk(
    stock_gates: Path, torch_version: str, tmp_path: Path
) -> None:
    tree = _copy_gates(stock_gates, tmp_path / "tree", torch_version)
    scheduler = tree / "torch/_inductor/scheduler.py"
    scheduler.write_text(scheduler.read_text().replace("if not has_triton():", "if not has_triton(device):"))
    with pytest.raises(PatchError, match=r"hunk #1 of torch/_inductor/scheduler\.py"):
        apply_series(recipe_patch_series(PYTORCH, VARIANT_CONFIG, torch_version), tree)


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


@pytest.mark.parametrize("tree", ["patched", "stock"])
def test_a_pascal_gpu_without_triton_hears_that_triton_is_missing(
    torch_python: Path, stock_gates: Path, patched_gates: Path, tree: str
) -> None:
    # No triton importable: the patched gates name the missing package; the stock ones (the
    # twin) blame the GPU instead.
    gates = _gates(torch_python, None, patched_gates if tree == "patched" else stock_gates, 6, 1)
    assert gates["has_triton"] is False
    if tree == "patched":
        assert gates["create_backend"].startswith("triton missing:"), gates["create_backend"]
    else:
        assert gates["create_backend"].startswith("refused:") and TOO_OLD in gates["create_backend"]
