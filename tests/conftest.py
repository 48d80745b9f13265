"""Shared paths for the test suite: the real recipes and variant matrix of this repository."""

from __future__ import annotations

import os
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
