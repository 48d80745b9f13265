"""Write a checked bump into the recipe: the new version's source block, patch folder and
patch-check artifact, next to the old ones (the recipe keeps every version it carries).

recipe.yaml is edited as text, block by block, so its comments and layout survive: the
newest version's `if: version == "OLD"` source block and its `patch-check:` entry are
copied under the new version. A value that cannot be known from here (the sha256 of a
source this machine cannot fetch, a commit id of another repository) becomes a
PLACEHOLDER that `plan` refuses, naming the file and line, until a person fills it in.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from ..defaults import VARIANT_CONFIG
from ..errors import VariantError
from ..recipes.patches import PatchStatus, patch_check_targets
from ..recipes.recipe import PATCH_DIR, PLACEHOLDER, Recipe
from ..recipes.variants import read_variant_config
from ..upstream.index import files_of, index_client, project_files
from .check import BumpError, BumpReport, find_recipe

_COMMIT = re.compile(r"\b[0-9a-f]{40}\b")
_VERSION_TEMPLATE = re.compile(r"\$\{\{\s*version\s*\}\}")
_VARIANT_KEY = re.compile(r"\$\{\{\s*(\w+)\s*\}\}")


def write_bump(recipes_dir: Path, report: BumpReport) -> list[str]:
    """Add `report.new_version` to the recipe; return what was written and what is left to do."""
    recipe = find_recipe(recipes_dir, report.recipe)
    old_folder = recipe.directory / PATCH_DIR / report.old_version
    new_folder = recipe.directory / PATCH_DIR / report.new_version
    if new_folder.exists() or report.new_version in patch_check_targets(recipe):
        raise BumpError(f"{recipe.path}: already has version {report.new_version}; nothing was changed")
    text = recipe.path.read_text(encoding="utf-8")
    fetchable = _index_sha256s(report)
    text, unknown = _add_source_block(text, recipe, report, fetchable)
    text = _add_patch_check_entry(text, recipe, report)
    # Copy first, rename into place: a failed write leaves no half a patch folder.
    staging = new_folder.with_name(f".{report.new_version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    if old_folder.is_dir():
        shutil.copytree(old_folder, staging)
    else:  # the old version carries no patches
        staging.mkdir(parents=True)
    written = [f"wrote {new_folder.relative_to(recipes_dir.parent)}/ (copied from {report.old_version})"]
    for outcome in report.outcomes:
        if outcome.status is PatchStatus.OFFSET and outcome.refreshed is not None:
            (staging / outcome.patch.name).write_text(outcome.refreshed, encoding="utf-8")
            written.append(f"refreshed {outcome.patch.name} (offset {outcome.offset})")
    staging.rename(new_folder)
    partial = recipe.path.with_name(f".{recipe.path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(recipe.path)
    written.append(
        f"wrote {recipe.path.relative_to(recipes_dir.parent)}: source block and patch-check for "
        f"{report.new_version}"
    )
    written += [f"fill in by hand: {item}" for item in unknown]
    written += [f"by hand: {o.patch.name} ({o.summary})" for o in report.outcomes if o.needs_work]
    written += _stack_steps(recipe, recipes_dir.parent / VARIANT_CONFIG, report)
    return written


def _stack_steps(recipe: Recipe, variant_config: Path, report: BumpReport) -> list[str]:
    """What is left before the stack uses the new version: a recipe whose version comes from a
    variant key (`version: ${{ vllm_version }}`) renders, checks and builds only the versions
    conda_build_config.yaml names, so until a column names the new one, `check-patches`,
    `plan` and `build` leave its series out without a word."""
    try:
        context = recipe.document().get("context") or {}
        key = _VARIANT_KEY.fullmatch(str(context.get("version", "")).strip())
        columns = read_variant_config(variant_config) if key else None
    except (OSError, yaml.YAMLError, AttributeError, VariantError):
        return []
    if not key or not isinstance(columns, dict) or key[1] not in columns:
        return []
    named = [str(v) for v in columns[key[1]] or []]
    if report.new_version in named:
        return []
    return [
        f"next, by hand: {variant_config.name}'s {key[1]} names {', '.join(dict.fromkeys(named))}, not "
        f"{report.new_version}, so check-patches, plan and build leave the new series out; move the "
        f"stack's column(s) from {report.old_version} to {report.new_version}, run `pascal-forge "
        f"rerender`, and remove what no column names any more (patches/{report.old_version}/, its "
        "source block, run requirements and patch-check entry)"
    ]


def _index_sha256s(report: BumpReport) -> dict[str, str]:
    """File name -> sha256 of every file of the new release the index lists."""
    with index_client() as client:
        files = files_of(project_files(client, report.project), report.project, report.new_version)
    return {f.filename: f.sha256 for f in files if f.sha256}


def _block(lines: list[str], start: int) -> int:
    """The end (exclusive) of the YAML block whose first line is lines[start]."""
    indent = _indent(lines[start])
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > indent):
        end += 1
    # Trailing blank lines belong to what follows.
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return end


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _version_line(version: str) -> re.Pattern[str]:
    quoted = re.escape(version)
    return re.compile(rf"^\s*- if: version == (['\"]){quoted}\1\s*$")


def _add_source_block(
    text: str, recipe: Recipe, report: BumpReport, fetchable: dict[str, str]
) -> tuple[str, list[str]]:
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _version_line(report.old_version).match(line)]
    if not starts:
        raise BumpError(
            f'{recipe.path}: no `- if: version == "{report.old_version}"` source block to copy for '
            f"{report.new_version}"
        )
    # A recipe with staging outputs has one block per output (triton: LLVM, then triton);
    # each is copied, the last first so that the earlier ones keep their line numbers.
    unknown: list[str] = []
    for start in reversed(starts):
        lines, found = _copy_block(lines, start, recipe, report, fetchable)
        unknown = found + unknown
    return "".join(lines), unknown


def _copy_block(
    lines: list[str], start: int, recipe: Recipe, report: BumpReport, fetchable: dict[str, str]
) -> tuple[list[str], list[str]]:
    end = _block(lines, start)
    old, new = report.old_version, report.new_version
    same_version = re.compile(rf"(?<![\d.]){re.escape(old)}(?!\d)")
    # Comments stay as they were: what they say about OLD (a sha256, a CUTLASS tag) is not
    # known to hold for NEW, and the note above the block says so.
    block = [
        line if line.lstrip().startswith("#") else same_version.sub(new, line) for line in lines[start:end]
    ]
    note = (
        " " * _indent(block[0])
        + f"# Added by `pascal-forge bump` from the {old} block; its comments describe {old}.\n"
    )
    block.insert(0, note)
    unknown: list[str] = []
    url = ""
    for index, line in enumerate(block):
        if line.lstrip().startswith("#"):
            continue
        key, _, value = line.strip().removeprefix("- ").partition(":")
        value = value.strip()
        if _COMMIT.search(line):
            line = block[index] = _COMMIT.sub(f"{PLACEHOLDER}-commit", line)
            unknown.append(f"{key}: the commit for {new} ({_line_ref(recipe, end, index)})")
            value = line.strip().removeprefix("- ").partition(":")[2].strip()
        if key in ("url", "git"):
            url = _VERSION_TEMPLATE.sub(new, value)
        elif key == "sha256":
            name = url.rsplit("/", 1)[-1]
            if name in fetchable and PLACEHOLDER not in url:
                block[index] = line.replace(value, fetchable[name])
            else:
                block[index] = line.replace(value, f"{PLACEHOLDER} sha256 of {url}")
                unknown.append(f"sha256 of {url} ({_line_ref(recipe, end, index)})")
    lines[end:end] = block if lines[end - 1].endswith("\n") else ["\n", *block]
    return lines, unknown


def _line_ref(recipe: Recipe, end: int, index: int) -> str:
    # The new block lands right after the old one.
    return f"{recipe.path} line {end + index + 1}"


def _add_patch_check_entry(text: str, recipe: Recipe, report: BumpReport) -> str:
    lines = text.splitlines(keepends=True)
    root = next((i for i, line in enumerate(lines) if line.strip() == "patch-check:"), None)
    key = re.compile(rf"^\s*(['\"]?){re.escape(report.old_version)}\1:")
    start = None
    if root is not None:
        for i in range(root + 1, _block(lines, root)):
            if key.match(lines[i]):
                start = i
    if start is None:
        raise BumpError(f"{recipe.path}: no `extra: patch-check:` entry for {report.old_version} to copy")
    end = _block(lines, start)
    old_target = patch_check_targets(recipe)[report.old_version]
    swaps = [
        (old_target.artifact.filename, report.artifact.filename),
        (old_target.artifact.sha256, report.artifact.sha256),
    ]
    if old_target.strip_prefix:
        swaps.append((old_target.strip_prefix, report.target.strip_prefix))
    block = []
    for line in lines[start:end]:
        for before, after in swaps:
            line = line.replace(before, after)
        block.append(line)
    block[0] = block[0].replace(report.old_version, report.new_version, 1)
    lines[end:end] = block
    return "".join(lines)
