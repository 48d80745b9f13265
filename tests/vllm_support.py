"""Fixtures for the vLLM-on-Pascal tests: the real sdist (patched and not), the patched
triton wheel, the CUDA 12 toolkit from scripts/setup-cuda12.sh and the torch/CUTLASS headers.

Everything big is cached under the upstream cache (keyed by sha256) or .cache/ in the repo.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pascal_forge.patches import patch_check_target, unpack_artifact
from pascal_forge.recipes import Recipe
from pascal_forge.vllm_checks import (
    CUTLASS_WHEEL,
    TORCH_WHEEL,
    patched_upstream,
    triton_tree,
    unpack_members,
)

REPO = Path(__file__).resolve().parent.parent
VARIANT_CONFIG = REPO / "conda_build_config.yaml"
# The seed stack's releases, which these checks were written for.
SEED_VLLM = "0.14.0"
SEED_TRITON = "3.6.0"
VLLM_RECIPE = Recipe(name="vllm", directory=REPO / "recipes" / "vllm")
TRITON_RECIPE = Recipe(name="triton", directory=REPO / "recipes" / "triton")
SETUP_CUDA12 = REPO / "scripts" / "setup-cuda12.sh"
HEADERS_CACHE = REPO / ".cache" / "vllm-headers"


@pytest.fixture(scope="session")
def patched_vllm(tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path) -> Path:
    """The vLLM 0.14.0 sdist with recipes/vllm's series applied."""
    return patched_upstream(
        VLLM_RECIPE, VARIANT_CONFIG, tmp_path_factory.mktemp("vllm-patched"), upstream_cache, SEED_VLLM
    )


@pytest.fixture(scope="session")
def stock_vllm(tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path) -> Path:
    """The vLLM 0.14.0 sdist as released (the twin that shows the checks can fail)."""
    target = patch_check_target(VLLM_RECIPE, SEED_VLLM)
    assert target is not None
    return unpack_artifact(target, tmp_path_factory.mktemp("vllm-stock"), upstream_cache)


@pytest.fixture(scope="session")
def patched_triton(tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path) -> tuple[Path, Path]:
    """The stock triton 3.6.0 wheel with recipes/triton's patches; (tree, its CUDA 12.8 ptxas)."""
    return triton_tree(
        TRITON_RECIPE, VARIANT_CONFIG, tmp_path_factory.mktemp("triton"), upstream_cache, SEED_TRITON
    )


@pytest.fixture(scope="session")
def cuda12() -> Path:
    """A CUDA 12 toolkit prefix that targets sm_60/sm_61 (set up once, then reused)."""
    result = subprocess.run(["bash", str(SETUP_CUDA12)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/setup-cuda12.sh failed:\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def torch_include(upstream_cache: Path) -> Path:
    return unpack_members(TORCH_WHEEL, "torch/include/", HEADERS_CACHE / TORCH_WHEEL.sha256, upstream_cache)


@pytest.fixture(scope="session")
def cutlass_source(upstream_cache: Path) -> Path:
    prefix = "cutlass_library/source/"
    return unpack_members(CUTLASS_WHEEL, prefix, HEADERS_CACHE / CUTLASS_WHEEL.sha256, upstream_cache)
