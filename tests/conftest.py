"""Shared paths for the test suite: the real recipes and variant matrix of this repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
VARIANT_CONFIG = REPO / "conda_build_config.yaml"


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


def committed_text(commit: str, path: str) -> str:
    """`path` as commit `commit` held it; the test skips where the clone lacks that history."""
    shown = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        pytest.skip(f"this clone lacks {commit}:{path} (a shallow clone?)")
    return shown.stdout
