"""Fixtures for the vLLM-on-Pascal tests: the real sdist of each release (patched and not), the
patched triton wheel of its stack, its Python packages, the CUDA 12 toolkit from
scripts/setup-cuda12.sh and the torch/CUTLASS headers.

Every fixture follows `vllm_release`, which is parametrized over the releases of the stacks of
conda_build_config.yaml (each with its stack's triton and torch), so each test runs once per
release. Everything big is cached under the upstream cache (keyed by
sha256) or .cache/ in the repo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pascal_forge.checks.vllm.compile import (
    CUTLASS_WHEEL,
    VllmRelease,
    patched_upstream,
    releases,
    triton_tree,
    unpack_members,
)
from pascal_forge.pascal import capabilities
from pascal_forge.recipes.patches import patch_check_target, unpack_artifact
from pascal_forge.recipes.recipe import Recipe
from pascal_forge.recipes.variants import arch_list

REPO = Path(__file__).resolve().parents[2]
VARIANT_CONFIG = REPO / "conda_build_config.yaml"
VLLM_RECIPE = Recipe(name="vllm", directory=REPO / "recipes" / "vllm")
TRITON_RECIPE = Recipe(name="triton", directory=REPO / "recipes" / "triton")
SETUP_CUDA12 = REPO / "scripts" / "setup-cuda12.sh"
SETUP_VLLM_DEPS = REPO / "scripts" / "setup-vllm-deps.sh"
HEADERS_CACHE = REPO / ".cache" / "vllm-headers"
# Each stack's vLLM release, as conda_build_config.yaml pairs them, and what the recipes build for.
RELEASES = releases(VARIANT_CONFIG)
ARCH_LIST = arch_list(VARIANT_CONFIG)
CAPABILITIES = capabilities(ARCH_LIST)


# 0.34.0's checks import its own 624 MB of Python packages (scripts/setup-vllm-deps.sh).
@pytest.fixture(
    scope="session",
    # The current release's checks bring their own dependencies and take longest: they are
    # `budgeted`, run by CI while its 90 minutes allow (see .ci/run).
    params=[
        pytest.param(v, marks=[pytest.mark.slow, pytest.mark.budgeted] if RELEASES[v].own_deps else [])
        for v in RELEASES
    ],
)
def vllm_release(request: pytest.FixtureRequest) -> VllmRelease:
    return RELEASES[request.param]


@pytest.fixture(scope="session")
def patched_vllm(
    vllm_release: VllmRelease, tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path
) -> Path:
    """The release's sdist with its series from recipes/vllm/patches/<version>/ applied."""
    destination = tmp_path_factory.mktemp(f"vllm-{vllm_release.version}-patched")
    return patched_upstream(VLLM_RECIPE, VARIANT_CONFIG, destination, upstream_cache, vllm_release.version)


@pytest.fixture(scope="session")
def stock_vllm(
    vllm_release: VllmRelease, tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path
) -> Path:
    """The release's sdist as released (the twin that shows the checks can fail)."""
    target = patch_check_target(VLLM_RECIPE, vllm_release.version)
    assert target is not None
    destination = tmp_path_factory.mktemp(f"vllm-{vllm_release.version}-stock")
    return unpack_artifact(target, destination, upstream_cache)


@pytest.fixture(scope="session")
def patched_triton(
    vllm_release: VllmRelease, tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path
) -> tuple[Path, Path]:
    """The stock triton wheel of the release's stack with its series; (tree, its bundled ptxas)."""
    version = vllm_release.triton_version
    destination = tmp_path_factory.mktemp(f"triton-{version}")
    return triton_tree(TRITON_RECIPE, VARIANT_CONFIG, destination, upstream_cache, version)


@pytest.fixture(scope="session")
def vllm_deps(vllm_release: VllmRelease, patched_vllm: Path) -> Path | None:
    """The release's Python packages in a folder of their own, or None where the venv's do.

    Made once from the patched tree's requirements/common.txt (what the conda package
    declares) by scripts/setup-vllm-deps.sh, and reused while that file is unchanged.
    """
    if not vllm_release.own_deps:
        return None
    return _release_deps(vllm_release, patched_vllm)


@pytest.fixture(scope="session")
def engine_deps(vllm_release: VllmRelease, patched_vllm: Path) -> Path:
    """Every Python package the release's engine imports, in a folder of its own (any release).

    The engine reaches what the kernel checks never import (prometheus_client, fastapi,
    xgrammar, ...), so even 0.14.0, whose kernel checks use the venv's, gets its own folder.
    """
    return _release_deps(vllm_release, patched_vllm)


def _release_deps(vllm_release: VllmRelease, patched_vllm: Path) -> Path:
    target = REPO / ".cache" / f"vllm-deps-{vllm_release.version}"
    result = subprocess.run(
        ["bash", str(SETUP_VLLM_DEPS), str(patched_vllm / "requirements" / "common.txt"), str(target)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/setup-vllm-deps.sh failed:\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def setup_cuda12() -> Path:
    """A CUDA 12 toolkit prefix that targets sm_60/sm_61 (set up once, then reused)."""
    result = subprocess.run(["bash", str(SETUP_CUDA12)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/setup-cuda12.sh failed:\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def cuda12() -> Path:
    return setup_cuda12()


@pytest.fixture(scope="session")
def torch_include(vllm_release: VllmRelease, upstream_cache: Path) -> Path:
    wheel = vllm_release.torch_wheel
    return unpack_members(wheel, "torch/include/", HEADERS_CACHE / wheel.sha256, upstream_cache)


@pytest.fixture(scope="session")
def cutlass_source(upstream_cache: Path) -> Path:
    prefix = "cutlass_library/source/"
    return unpack_members(CUTLASS_WHEEL, prefix, HEADERS_CACHE / CUTLASS_WHEEL.sha256, upstream_cache)
