"""The cost model's slow tests' set-up: the current stack's vLLM and triton with the recipes' patches."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def vllm_toolchain(tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path):
    """The current stack's vLLM and triton (0.34.0, 3.8.0) with the recipes' patches, nvcc 12.

    The benchmark's own set-up (report.default_toolchain)."""
    from pascal_forge.checks.costmodel.report import default_toolchain
    from support.vllm import REPO, setup_cuda12

    nvcc = setup_cuda12() / "bin" / "nvcc"
    return default_toolchain(REPO, upstream_cache, tmp_path_factory.mktemp("costmodel"), nvcc)
