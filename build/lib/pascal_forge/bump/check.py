"""`pascal-forge bump`: how far a recipe's newest patch series is from a new upstream release.

The check applies the newest series to the new release's files (the same kind of artifact
the recipe's `extra: patch-check:` names for its newest version) and says, per patch, what
happened; it also reads the new release's requirements for the pins that decide the stack.
Everything about a recipe comes from its own metadata, so a recipe added later is covered.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ..errors import PascalForgeError
from ..recipes.patches import (
    PatchCheckTarget,
    PatchOutcome,
    assess_series,
    patch_check_targets,
    unpack_artifact,
)
from ..recipes.recipe import Recipe, discover_recipes
from ..upstream.artifacts import UpstreamArtifact
from ..upstream.index import (
    ReleaseFile,
    files_of,
    index_client,
    metadata_file,
    newest_release,
    project_files,
    requirement_lines,
)


class BumpError(PascalForgeError):
    """The bump cannot be checked or written (unknown recipe, version, artifact)."""


@dataclass(frozen=True)
class StackPin:
    """A requirement of the new release on a project one of our recipes builds."""

    requirement: str
    project: str
    recipe: str
    # The versions that recipe carries now, oldest first.
    carried: tuple[str, ...]
    satisfied: bool


@dataclass(frozen=True)
class RequirementChange:
    """One requirement of the new release that the old release did not state the same way.

    `old` is the old release's line of the same project, None for a project it did not
    require; a patch that edits the requirement files, or a run list in the recipe, must follow.
    """

    project: str
    old: str | None
    new: str

    def describe(self) -> str:
        return f"{self.new} (was {self.old})" if self.old else f"{self.new} (new)"


@dataclass(frozen=True)
class BumpReport:
    recipe: str
    project: str
    old_version: str
    new_version: str
    artifact: UpstreamArtifact
    target: PatchCheckTarget
    outcomes: tuple[PatchOutcome, ...]
    pins: tuple[StackPin, ...]
    new_requirements: tuple[RequirementChange, ...]
    # Lines of the old release that the new one no longer has (by project).
    dropped_requirements: tuple[str, ...]
    # The release file whose metadata the pins and requirements were read from.
    metadata_from: str

    @property
    def needs_work(self) -> bool:
        return any(o.needs_work for o in self.outcomes)

    @property
    def also_bump(self) -> tuple[StackPin, ...]:
        return tuple(p for p in self.pins if not p.satisfied)


def find_recipe(recipes_dir: Path, name: str) -> Recipe:
    recipes = discover_recipes(recipes_dir)
    for recipe in recipes:
        if recipe.name == name:
            return recipe
    raise BumpError(
        f"no recipe named {name!r} in {recipes_dir} (there are: {', '.join(r.name for r in recipes)})"
    )


def newest_version(targets: dict[str, PatchCheckTarget], recipe: Recipe) -> str:
    if not targets:
        raise BumpError(
            f"{recipe.path}: no `extra: patch-check:` entry, so there is no upstream artifact to bump from"
        )
    return max(targets, key=Version)


def check_bump(
    recipes_dir: Path, name: str, version: str | None = None, cache_dir: Path | None = None
) -> BumpReport:
    """Apply the recipe's newest series to release `version` (default: the newest) and report."""
    recipe = find_recipe(recipes_dir, name)
    targets = patch_check_targets(recipe)
    old_version = newest_version(targets, recipe)
    old = targets[old_version]
    project = old.artifact.project
    with index_client() as client:
        files = project_files(client, project)
        version = version or newest_release(files, project)
        if Version(version) <= Version(old_version):
            raise NothingToBump(
                f"{recipe.name}: {version} is not newer than {old_version}, the newest version "
                f"{recipe.path} carries; nothing to bump"
            )
        new_files = files_of(files, project, version)
        target = _new_target(recipe.name, old, old_version, version, new_files)
        pins, new_requirements, dropped, metadata_name = _requirements(
            client, recipes_dir, project, files_of(files, project, old_version), new_files
        )
    series = recipe.patch_series(old_version)
    outcomes: list[PatchOutcome] = []
    if series:  # an empty series applies to anything: no download for it
        with tempfile.TemporaryDirectory(prefix=f"pascal-forge-bump-{recipe.name}-") as scratch:
            tree = unpack_artifact(target, Path(scratch), cache_dir)
            outcomes = assess_series(series, tree, target.path_map)
    return BumpReport(
        recipe=recipe.name,
        project=project,
        old_version=old_version,
        new_version=version,
        artifact=target.artifact,
        target=target,
        outcomes=tuple(outcomes),
        pins=tuple(pins),
        new_requirements=tuple(new_requirements),
        dropped_requirements=tuple(dropped),
        metadata_from=metadata_name,
    )


class NothingToBump(BumpError):
    """The asked-for version is not newer than what the recipe has (not a failure)."""


# `bump` exits 0 (the series applies whole), 1 (a patch needs a person), 2 (usage, network),
# UNCHECKABLE_EXIT (a newer release exists but has no file to check the series against).
UNCHECKABLE_EXIT = 3


class UncheckableRelease(BumpError):
    """Upstream has a newer release, but not the kind of file the series is checked against.

    Not a tool failure: a person must decide (another file, or wait), so the weekly job files
    it in the recipe's issue like any other report instead of failing without one.
    """

    def __init__(
        self,
        *,
        recipe: str,
        project: str,
        old_version: str,
        new_version: str,
        reason: str,
        files: tuple[str, ...],
    ) -> None:
        self.recipe, self.project = recipe, project
        self.old_version, self.new_version = old_version, new_version
        self.reason, self.files = reason, files
        shown = ", ".join(files[:6]) + (f" (+{len(files) - 6} more)" if len(files) > 6 else "")
        super().__init__(
            f"{project} {new_version} is out but cannot be checked: {reason}; it has {shown or 'no files'}. "
            f"Point `extra: patch-check:` of recipes/{recipe} at a file {new_version} has, or wait for one"
        )


def _new_target(
    recipe: str, old: PatchCheckTarget, old_version: str, version: str, files: list[ReleaseFile]
) -> PatchCheckTarget:
    """The new release's file of the same kind as the old one: its name with the version swapped."""
    wanted = old.artifact.filename.replace(old_version, version)
    chosen = next((f for f in files if f.filename == wanted), None)
    if chosen is None or not chosen.sha256:
        raise UncheckableRelease(
            recipe=recipe,
            project=old.artifact.project,
            old_version=old_version,
            new_version=version,
            reason=f"the index has no {wanted} (the counterpart of {old.artifact.filename})"
            if chosen is None
            else f"the index gives no sha256 for {wanted}, so the download cannot be verified",
            files=tuple(sorted(f.filename for f in files)),
        )
    return PatchCheckTarget(
        artifact=UpstreamArtifact(
            project=old.artifact.project, filename=chosen.filename, sha256=chosen.sha256
        ),
        path_map=dict(old.path_map),
        strip_prefix=old.strip_prefix.replace(old_version, version),
    )


def _requirements(
    client, recipes_dir: Path, project: str, old_files: list[ReleaseFile], new_files: list[ReleaseFile]
) -> tuple[list[StackPin], list[RequirementChange], list[str], str]:
    """The new release's pins on projects we build, its requirement lines the old one lacked
    (each beside the old line of its project) and the old lines whose project it dropped."""
    new_file = metadata_file(new_files)
    if new_file is None:
        return [], [], [], ""
    new_lines = requirement_lines(client, new_file)
    old_file = metadata_file(old_files)
    old_lines = requirement_lines(client, old_file) if old_file else []
    builders = _builders(recipes_dir)
    pins = []
    for line in new_lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker and "extra" in str(requirement.marker):
            continue
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(project) or name not in builders:
            continue
        recipe_name, carried = builders[name]
        satisfied = any(requirement.specifier.contains(v, prereleases=True) for v in carried)
        pins.append(StackPin(line, requirement.name, recipe_name, carried, satisfied))
    changes, dropped = requirement_changes(old_lines, new_lines)
    return pins, changes, dropped, new_file.filename


def _project(line: str) -> str:
    """The canonical project name a requirement line is about (the line itself if unparsable)."""
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return line


def requirement_changes(
    old_lines: list[str], new_lines: list[str]
) -> tuple[list[RequirementChange], list[str]]:
    """The new lines the old release lacked, each with its project's old line(s), and the
    old lines of projects the new release no longer names."""
    old_by_project: dict[str, list[str]] = {}
    for line in old_lines:
        old_by_project.setdefault(_project(line), []).append(line)
    new_projects = {_project(line) for line in new_lines}
    changes = [
        RequirementChange(
            project=_project(line),
            old="; ".join(old_by_project[_project(line)]) if _project(line) in old_by_project else None,
            new=line,
        )
        for line in new_lines
        if line not in old_lines
    ]
    dropped = [line for line in old_lines if _project(line) not in new_projects]
    return changes, dropped


def _builders(recipes_dir: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """PyPI project -> (our recipe that builds it, the versions that recipe carries)."""
    builders = {}
    for recipe in discover_recipes(recipes_dir):
        targets = patch_check_targets(recipe)
        for target in targets.values():
            builders[canonicalize_name(target.artifact.project)] = (
                recipe.name,
                tuple(sorted(targets, key=Version)),
            )
    return builders
