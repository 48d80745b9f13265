"""The names pascal-forge assumes when it is not told otherwise: one home for each default.

They are relative to the folder pascal-forge runs in, the repository's root.
"""

from __future__ import annotations

from pathlib import Path

RECIPES_DIR = "recipes"
VARIANT_CONFIG = "conda_build_config.yaml"
FORGE_CONFIG = "conda-forge.yml"
CHANNEL_DIR = "channel"
# Beside the channel: one log per build, and rattler-build's work, source and staging caches.
BUILD_LOGS = "build-logs"
BUILD_WORK = "build-work"
# The only platform the recipes build for, and the channel our packages' dependencies come from.
PLATFORM = "linux-64"
SOURCE_CHANNEL = "conda-forge"


def where_to_run(missing: Path) -> str:
    """The fix for a default input that is missing because the command runs in another folder."""
    if missing.is_absolute() or missing.exists():
        return ""
    return (
        f" in {Path.cwd()}; run pascal-forge in the repository's root folder (the one holding "
        f"{RECIPES_DIR}/, {VARIANT_CONFIG} and {FORGE_CONFIG}), or pass --recipes and "
        "--variant-config (--root for rerender)"
    )
