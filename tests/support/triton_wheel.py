"""Helpers for the Triton-on-Pascal tests: the recipe's wheel, its series, PTX inspection."""

from __future__ import annotations

import re
from pathlib import Path

import support.expected as expect
from pascal_forge.pascal import capabilities
from pascal_forge.recipes.patches import (
    PatchCheckTarget,
    patch_check_target,
    patch_check_targets,
    recipe_patch_series,
)
from pascal_forge.recipes.recipe import Recipe
from pascal_forge.recipes.variants import arch_list
from support.repo import RECIPES, VARIANT_CONFIG

SEED_TRITON = expect.SEED.triton
TRITON = Recipe(name="triton", directory=RECIPES / "triton")
# Every version the recipe builds and checks (3.6.0, 3.8.0), oldest first.
TRITON_VERSIONS = list(patch_check_targets(TRITON))
# What the recipes build for (conda_build_config.yaml's cuda_arch_list), as capabilities.
CAPABILITIES = capabilities(arch_list(VARIANT_CONFIG))


def triton_target(version: str = SEED_TRITON) -> PatchCheckTarget:
    target = patch_check_target(TRITON, version)
    assert target is not None, "recipes/triton/recipe.yaml lost its extra: patch-check:"
    return target


def triton_series(version: str = SEED_TRITON) -> list[Path]:
    return recipe_patch_series(TRITON, VARIANT_CONFIG, version)


def atomic_neighbourhood(ptx: str) -> list[list[str]]:
    """For each atomic of a kernel's PTX: the atomic and the membar lines right around it.

    16-bit atomics are a CAS loop in a { } block; the block counts as the atomic.
    """
    lines = [line.strip() for line in ptx.splitlines() if line.strip() and not line.strip().startswith("//")]
    groups = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if re.match(r"(@!?%\w+\s+)?(atom|red)\.", line) or (line == "{" and "pa_retry" in lines[index + 1]):
            end = index
            if line == "{":
                end = lines.index("}", index)
            before = [lines[index - 1]] if index and "membar" in lines[index - 1] else []
            after = [lines[end + 1]] if end + 1 < len(lines) and "membar" in lines[end + 1] else []
            body = [line for line in lines[index : end + 1] if re.search(r"\b(atom|red)\.", line)]
            groups.append(before + body + after)
            index = end + 1
        else:
            index += 1
    return groups
