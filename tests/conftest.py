"""What pytest loads for every test: the fixtures of tests/support/ and the vllm_checks skip.

Tests import what they share from the support package (support.repo for this repository's
paths); its fixtures reach them through pytest_plugins, not imports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.repo import REPO

pytest_plugins = ["support.costmodel", "support.vllm"]


@pytest.fixture(scope="session")
def upstream_cache() -> Path:
    """Where upstream artifacts are cached across runs (CI keeps .cache/ between steps)."""
    cache = Path(os.environ.get("PASCAL_FORGE_CACHE") or REPO / ".cache" / "upstream")
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked vllm_checks need the vllm-checks extra (a CPU torch, vLLM's own imports).

    The README's quick set-up leaves it out, so there they are skipped, saying why; CI runs
    them after it installs the extra.
    """
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        return
    skip = pytest.mark.skip(reason="needs the vllm-checks extra: pip install -e '.[vllm-checks]'")
    for item in items:
        if "vllm_checks" in item.keywords:
            item.add_marker(skip)
