"""This repository as the tests see it: its root, recipes and variant matrix, and its history."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
VARIANT_CONFIG = REPO / "conda_build_config.yaml"


def committed_text(commit: str, path: str) -> str:
    """`path` as commit `commit` held it; the test skips where the clone lacks that history."""
    shown = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        pytest.skip(f"this clone lacks {commit}:{path} (a shallow clone?)")
    return shown.stdout
