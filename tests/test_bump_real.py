"""`pascal-forge bump --check` against the real released files (downloaded once, cached by sha256
under $PASCAL_FORGE_CACHE): triton 3.9.0 from the newest triton series, vLLM 0.33.0 from 0.14.0."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from support.repo import RECIPES

from pascal_forge.bump.check import check_bump
from pascal_forge.bump.report import to_markdown
from pascal_forge.bump.write import write_bump
from pascal_forge.recipes.patches import PatchStatus, assess_series, patch_check_targets, unpack_artifact
from pascal_forge.recipes.recipe import Recipe

pytestmark = pytest.mark.slow

# One table row of the Markdown report: number, patch, and one of the four statuses.
ROW = re.compile(
    r"^\| \d+ \| `\d{4}-[\w.-]+\.patch` \| (applies|applies with offset -?\d+ \(refreshed\)"
    r"|already upstream \((it reverse-applies|upstream has the same change)\)"
    r"|fails at \S+ (hunk #\d+|\(missing\)).*) \|$"
)


def _series_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| #")]


def _recipes_from(tmp_path: Path, version: str) -> Path:
    """The repository's recipes, with vLLM cut back to `version` (its newest version then)."""
    copy = tmp_path / "recipes"
    shutil.copytree(RECIPES, copy)
    vllm = Recipe("vllm", copy / "vllm")
    for newer in [v for v in patch_check_targets(vllm) if v != version]:
        shutil.rmtree(vllm.directory / "patches" / newer, ignore_errors=True)
        _drop_version(vllm.path, newer)
    return copy


def _drop_version(path: Path, version: str) -> None:
    """Remove the `if: version == "X"` source block and the patch-check entry of `version`."""
    lines = path.read_text().splitlines(keepends=True)
    kept, skip_indent = [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None and (not line.strip() or indent > skip_indent):
            continue
        skip_indent = None
        stripped = line.strip()
        if stripped in (f'- if: version == "{version}"', f'"{version}":', f"'{version}':", f"{version}:"):
            skip_indent = indent
            continue
        kept.append(line)
    path.write_text("".join(kept))


def test_triton_3_9_0_against_the_newest_series_names_a_patch_and_a_status_per_line(upstream_cache):
    report = check_bump(RECIPES, "triton", "3.9.0", upstream_cache)
    markdown = to_markdown(report)
    rows = _series_rows(markdown)
    series = Recipe("triton", RECIPES / "triton").patch_series(report.old_version)
    assert len(rows) == len(series) == len(report.outcomes)
    assert [bad for bad in rows if not ROW.match(bad)] == []
    for row, patch in zip(rows, series, strict=True):
        assert f"`{patch.name}`" in row
    print(f"\ntriton {report.old_version} -> 3.9.0 on {report.artifact.filename}")
    for outcome in report.outcomes:
        print(f"  {outcome.patch.name}: {outcome.summary}")


def test_bumping_triton_to_3_9_0_leaves_a_series_that_applies_without_offsets(upstream_cache, tmp_path):
    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES, recipes)
    report = check_bump(recipes, "triton", "3.9.0", upstream_cache)
    assert any(o.status is PatchStatus.OFFSET for o in report.outcomes)  # the twin: before the bump
    write_bump(recipes, report)
    recipe = Recipe("triton", recipes / "triton")
    target = patch_check_targets(recipe)["3.9.0"]
    with tempfile.TemporaryDirectory() as scratch:
        tree = unpack_artifact(target, Path(scratch), upstream_cache)
        outcomes = assess_series(recipe.patch_series("3.9.0"), tree, target.path_map)
    assert [o.status for o in outcomes] == [PatchStatus.APPLIES] * len(report.outcomes)


def test_twin_a_row_without_a_status_is_not_accepted():
    assert not ROW.match("| 1 | `0001-find-cuda-tools.patch` |  |")
    assert not ROW.match("| 1 | `0001-find-cuda-tools.patch` | fails |")


def test_vllm_0_33_0_from_the_0_14_0_series_fails_nine_patches(upstream_cache, tmp_path):
    recipes = _recipes_from(tmp_path, "0.14.0")
    report = check_bump(recipes, "vllm", "0.33.0", upstream_cache)
    assert report.old_version == "0.14.0"
    # The issue measured the 11 patches the 0.14.0 series had then; 0012-0015 came later.
    first_eleven = [o for o in report.outcomes if o.patch.name[:4] <= "0011"]
    assert len(first_eleven) == 11
    failing = [o.patch.name[:4] for o in first_eleven if o.status is PatchStatus.FAILS]
    applying = [o.patch.name[:4] for o in first_eleven if o.status is not PatchStatus.FAILS]
    assert len(failing) == 9
    assert applying == ["0003", "0009"]
    assert [p.requirement for p in report.pins if p.project == "torch"] == ["torch==2.14.0"]
    print(f"\nvllm 0.14.0 -> 0.33.0 on {report.artifact.filename}")
    for outcome in report.outcomes:
        print(f"  {outcome.patch.name}: {outcome.summary}")
    print("  pins:", [(p.requirement, p.satisfied) for p in report.pins])
    print(f"  {len(report.new_requirements)} requirement lines new since 0.14.0")


def test_twin_the_0_14_0_series_applies_whole_to_its_own_sdist(upstream_cache):
    recipe = Recipe("vllm", RECIPES / "vllm")
    target = patch_check_targets(recipe)["0.14.0"]
    with tempfile.TemporaryDirectory() as scratch:
        tree = unpack_artifact(target, Path(scratch), upstream_cache)
        outcomes = assess_series(recipe.patch_series("0.14.0"), tree, target.path_map)
    assert {o.status for o in outcomes} == {PatchStatus.APPLIES}
