"""Check that a recipe's patch series applies, without fuzz, to the real upstream files.

The series is applied in order with GNU patch and `--fuzz=0`: a hunk that would need
fuzz, a reversed patch or a missing file fails, and the error names the patch, the file
and the hunk, which is what a maintainer bumping a version needs to know.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.version import Version

from .errors import PascalForgeError
from .recipes import Recipe
from .sources import UpstreamArtifact, fetch

# recipe.yaml `extra: patch-check:` names the upstream artifact the patches are checked on.
PATCH_CHECK_KEY = "patch-check"


class PatchError(PascalForgeError):
    """A patch of a recipe's series does not apply to the upstream files."""


@dataclass(frozen=True)
class PatchCheckTarget:
    """Where a recipe's patches are checked: a PyPI artifact and how its paths map to the source tree."""

    artifact: UpstreamArtifact
    # Source-tree prefix -> prefix inside the artifact (wheels move python/triton/ to triton/).
    path_map: Mapping[str, str] = field(default_factory=dict)
    # Leading folder of an sdist (vllm-0.14.0/) that the source tree does not have.
    strip_prefix: str = ""


def patch_check_targets(recipe: Recipe) -> dict[str, PatchCheckTarget]:
    """The recipe's `extra: patch-check:` entries by upstream version, oldest first."""
    extra = (yaml.safe_load(recipe.path.read_text(encoding="utf-8")) or {}).get("extra") or {}
    entries = extra.get(PATCH_CHECK_KEY) or {}
    if not isinstance(entries, dict) or any(not isinstance(e, dict) for e in entries.values()):
        raise PatchError(
            f"{recipe.path}: `extra: {PATCH_CHECK_KEY}:` must map each version to its artifact "
            '(e.g. "3.6.0": {pypi: triton, file: ..., sha256: ...})'
        )
    targets = {}
    for version, entry in entries.items():
        missing = [key for key in ("pypi", "file", "sha256") if not entry.get(key)]
        if missing:
            raise PatchError(
                f"{recipe.path}: `extra: {PATCH_CHECK_KEY}: {version}:` lacks {', '.join(missing)}"
            )
        targets[str(version)] = PatchCheckTarget(
            artifact=UpstreamArtifact(project=entry["pypi"], filename=entry["file"], sha256=entry["sha256"]),
            path_map=entry.get("path-map") or {},
            strip_prefix=entry.get("strip-prefix") or "",
        )
    return dict(sorted(targets.items(), key=lambda item: Version(item[0])))


def patch_check_target(recipe: Recipe, version: str) -> PatchCheckTarget | None:
    """The artifact that the series of `version` is checked on, or None if it declares none."""
    return patch_check_targets(recipe).get(version)


def unpack_artifact(target: PatchCheckTarget, destination: Path, cache_dir: Path | None = None) -> Path:
    """Unpack the checked artifact into `destination` and return the tree the patches apply to."""
    archive = fetch(target.artifact, cache_dir)
    destination.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as wheel:
            wheel.extractall(destination)
    else:
        with tarfile.open(archive) as sdist:
            sdist.extractall(destination, filter="data")
    return destination / target.strip_prefix if target.strip_prefix else destination


def apply_series(
    patches: list[Path], tree: Path, path_map: Mapping[str, str] | None = None, exact: bool = False
) -> None:
    """Apply `patches` in order to `tree`, or raise PatchError naming the patch, file and hunk.

    With `exact`, a hunk that lands away from the line its header names (an offset, which
    --fuzz=0 still allows) fails too: the series was written for other files and wants a refresh.
    `tree` is changed in place; use check_series to leave it alone.
    """
    if shutil.which("patch") is None:
        raise PatchError("GNU patch is not installed (Debian: apt-get install patch)")
    for patch in patches:
        if not patch.is_file():
            raise PatchError(f"{patch}: listed but missing")
        text = _remap_paths(patch.read_text(encoding="utf-8"), path_map or {})
        result = subprocess.run(
            ["patch", "-p1", "--fuzz=0", "--forward", "--batch", "--no-backup-if-mismatch", "-r", "-"],
            input=text,
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PatchError(_describe_failure(patch, result.stdout + result.stderr))
        if exact and (moved := _offset_hunks(result.stdout)):
            raise PatchError(
                f"{patch.name} applies only with offsets: {'; '.join(moved)}. "
                "Refresh it against these upstream files."
            )


def _offset_hunks(output: str) -> list[str]:
    moved = []
    for current_file, line in _lines_by_file(output):
        if match := re.match(r"Hunk #(\d+) succeeded at (\d+) \(offset (-?\d+) lines?\)", line):
            hunk, at, offset = match.groups()
            moved.append(f"hunk #{hunk} of {current_file} lands at line {at} (offset {offset})")
    return moved


def _lines_by_file(output: str) -> Iterator[tuple[str, str]]:
    """GNU patch's report, each line with the file it was patching then."""
    current_file = "?"
    for line in output.splitlines():
        if line.startswith("patching file "):
            current_file = line.removeprefix("patching file ").strip().strip("'")
        else:
            yield current_file, line


def check_series(patches: list[Path], tree: Path, path_map: Mapping[str, str] | None = None) -> None:
    """Like apply_series, on a throw-away copy of `tree`."""
    with tempfile.TemporaryDirectory(prefix="pascal-forge-patch-") as scratch:
        copy = Path(scratch) / "tree"
        shutil.copytree(tree, copy, symlinks=True)
        apply_series(patches, copy, path_map)


def _remap_paths(text: str, path_map: Mapping[str, str]) -> str:
    if not path_map:
        return text
    header = re.compile(r"^(--- a/|\+\+\+ b/|diff --git a/)(\S+)(.*)$")

    def remap(path: str) -> str:
        for source, target in path_map.items():
            if path.startswith(source):
                return target + path[len(source) :]
        return path

    lines = []
    for line in text.splitlines(keepends=True):
        match = header.match(line)
        if match and line.startswith("diff --git a/"):
            parts = line.rstrip("\n").split(" ")
            # diff --git a/<path> b/<path>
            line = f"diff --git a/{remap(parts[2][2:])} b/{remap(parts[3][2:])}\n"
        elif match:
            line = f"{match.group(1)}{remap(match.group(2))}{match.group(3)}\n"
        lines.append(line)
    return "".join(lines)


def _describe_failure(patch: Path, output: str) -> str:
    problems = []
    for current_file, line in _lines_by_file(output):
        if match := re.match(r"Hunk #(\d+) FAILED at (\d+)", line):
            problems.append(f"hunk #{match.group(1)} of {current_file} (at line {match.group(2)})")
        elif "can't find file to patch" in line or "No file to patch" in line:
            problems.append(f"a file it changes does not exist (after {current_file})")
        elif "Reversed (or previously applied) patch detected" in line:
            problems.append(f"{current_file} already contains the change (reversed or applied upstream)")
    detail = "; ".join(problems) or " ".join(output.split())
    return f"{patch.name} does not apply without fuzz: {detail}. Refresh it against the new upstream files."


def recipe_patch_series(recipe: Recipe, variant_config_path: Path, version: str) -> list[Path]:
    """The patches of one upstream version in application order, over all its variants."""
    from .render import render_recipe
    from .variants import load_variant_config

    outputs = render_recipe(recipe, load_variant_config(variant_config_path))
    ordered = dict.fromkeys(p for output in outputs if output.version == version for p in output.patches)
    return [recipe.directory / p for p in ordered]


def check_recipe_patches(
    recipe: Recipe, variant_config_path: Path, cache_dir: Path | None = None
) -> dict[str, int]:
    """Apply each version's whole series to its upstream artifact; patches applied per version."""
    from .render import render_recipe
    from .variants import load_variant_config

    targets = patch_check_targets(recipe)
    versions = {o.version for o in render_recipe(recipe, load_variant_config(variant_config_path))}
    applied: dict[str, int] = {}
    for version in sorted(versions | targets.keys(), key=Version):
        series = recipe_patch_series(recipe, variant_config_path, version)
        target = targets.get(version)
        if target is None:
            if series:
                raise PatchError(
                    f"{recipe.path}: version {version} has patches but no "
                    f"`extra: {PATCH_CHECK_KEY}: {version}:` artifact to check them on"
                )
            applied[version] = 0
            continue
        with tempfile.TemporaryDirectory(prefix=f"pascal-forge-{recipe.name}-") as scratch:
            tree = unpack_artifact(target, Path(scratch), cache_dir)
            try:
                apply_series(series, tree, target.path_map)
            except PatchError as exc:
                raise PatchError(f"{recipe.name} {version} ({target.artifact.filename}): {exc}") from exc
        applied[version] = len(series)
    return applied
