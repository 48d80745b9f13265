"""The cost model's slow tests' set-up: vLLM 0.33.0 and triton 3.8.0 with the recipes' patches, nvcc 12."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def vllm_toolchain(tmp_path_factory: pytest.TempPathFactory, upstream_cache: Path):
    """vLLM 0.33.0 and triton 3.8.0 with the recipes' patches, nvcc 12 (the benchmark's own set-up)."""
    from vllm_support import REPO, setup_cuda12

    from pascal_forge.costmodel.report import default_toolchain

    nvcc = setup_cuda12() / "bin" / "nvcc"
    return default_toolchain(REPO, upstream_cache, tmp_path_factory.mktemp("costmodel"), nvcc)
