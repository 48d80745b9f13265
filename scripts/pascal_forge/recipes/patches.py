"""Check that a recipe's patch series applies, without fuzz, to the real upstream files.

The series is applied in order with GNU patch and `--fuzz=0`: a hunk that would need
fuzz, a reversed patch or a missing file fails, and the error names the patch, the file
and the hunk, which is what a maintainer bumping a version needs to know.
"""

from __future__ import annotations

import enum
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

from ..errors import PascalForgeError
from ..upstream.artifacts import UpstreamArtifact, fetch
from .recipe import Recipe

# recipe.yaml `extra: patch-check:` names the upstream artifact the patches are checked on.
PATCH_CHECK_KEY = "patch-check"
_LOG = logging.getLogger(__name__)


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
    extra = recipe.document().get("extra") or {}
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
            _LOG.info(
                "%s %s: applying %d patch(es) to %s",
                recipe.name,
                version,
                len(series),
                target.artifact.filename,
            )
            try:
                apply_series(series, tree, target.path_map)
            except PatchError as exc:
                raise PatchError(f"{recipe.name} {version} ({target.artifact.filename}): {exc}") from exc
        applied[version] = len(series)
    return applied


# --- assessing a series against a new release (pascal-forge bump) ---------------------------


class PatchStatus(enum.Enum):
    APPLIES = "applies"
    OFFSET = "applies with offset"
    UPSTREAM = "already upstream"
    FAILS = "fails"

    @property
    def needs_work(self) -> bool:
        """A person has to act: refresh the patch by hand, or drop it."""
        return self in (PatchStatus.UPSTREAM, PatchStatus.FAILS)


@dataclass(frozen=True)
class HunkFailure:
    """One hunk that no longer applies: where, and the first old line the file lacks."""

    file: str
    hunk: int | None  # None: the file itself is missing
    context: str


@dataclass(frozen=True)
class PatchOutcome:
    """What one patch of the series does on the new release's files."""

    patch: Path
    status: PatchStatus
    # Largest line offset of a hunk (signed), for OFFSET.
    offset: int = 0
    # How the change was found upstream, for UPSTREAM.
    how: str = ""
    failures: tuple[HunkFailure, ...] = ()
    # The patch rewritten so that it applies without offsets, for OFFSET.
    refreshed: str | None = None

    @property
    def needs_work(self) -> bool:
        return self.status.needs_work or (self.status is PatchStatus.OFFSET and self.refreshed is None)

    @property
    def summary(self) -> str:
        if self.status is PatchStatus.OFFSET:
            done = "refreshed" if self.refreshed is not None else "could not be refreshed: do it by hand"
            return f"applies with offset {self.offset} ({done})"
        if self.status is PatchStatus.UPSTREAM:
            return f"already upstream ({self.how})"
        if self.status is PatchStatus.FAILS:
            return "fails at " + "; ".join(_failure_text(f) for f in self.failures)
        return self.status.value


@dataclass
class _Hunk:
    header_line: int
    old_start: int
    old_lines: list[str] = field(default_factory=list)
    new_lines: list[str] = field(default_factory=list)
    added: list[list[str]] = field(default_factory=list)
    removed: list[list[str]] = field(default_factory=list)
    _last: str = ""

    def add(self, kind: str, body: str) -> None:
        """One line of the hunk: " " context, "-" removed, "+" added (runs kept together)."""
        if kind != "+":
            self.old_lines.append(body)
        if kind != "-":
            self.new_lines.append(body)
        if kind in ("+", "-"):
            runs = self.added if kind == "+" else self.removed
            if self._last != kind:
                runs.append([])
            runs[-1].append(body)
        self._last = kind


@dataclass
class _FileDiff:
    path: str
    hunks: list[_Hunk] = field(default_factory=list)


_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")


def _parse_diff(text: str) -> tuple[list[str], list[_FileDiff]]:
    """The patch's lines and, per file in order, its hunks (old/new sides, added/removed runs)."""
    lines = text.splitlines(keepends=True)
    files: list[_FileDiff] = []
    old_left = new_left = 0
    hunk: _Hunk | None = None
    for number, line in enumerate(lines):
        if old_left > 0 or new_left > 0:
            assert hunk is not None
            kind = line[:1] if line[:1] in ("-", "+", "\\") else " "
            if kind != "\\":  # "\ No newline at end of file" counts for neither side
                hunk.add(kind, line[1:].rstrip("\n"))
                old_left -= kind != "+"
                new_left -= kind != "-"
            continue
        if line.startswith("+++ ") and number and lines[number - 1].startswith("--- "):
            path = line[4:].split("\t")[0].strip()
            files.append(_FileDiff(path.removeprefix("b/")))
        elif (match := _HUNK_HEADER.match(line)) and files:
            old_left = int(match.group(2) or 1)
            new_left = int(match.group(4) or 1)
            hunk = _Hunk(header_line=number, old_start=int(match.group(1)))
            files[-1].hunks.append(hunk)
    return lines, files


def _run_patch(text: str, tree: Path, *options: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("patch") is None:
        raise PatchError("GNU patch is not installed (Debian: apt-get install patch)")
    return subprocess.run(
        ["patch", "-p1", "--fuzz=0", "--batch", "--no-backup-if-mismatch", "-r", "-", *options],
        input=text,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )


def _hunk_results(output: str) -> list[dict[int, str]]:
    """Per file section of GNU patch's output, hunk number -> its result line."""
    sections: list[dict[int, str]] = []
    for line in output.splitlines():
        if line.startswith(("patching file ", "checking file ")):
            sections.append({})
        elif line.startswith("can't find file to patch"):
            sections.append({0: "missing"})
        elif match := re.match(r"Hunk #(\d+) (.*)", line):
            if not sections:
                sections.append({})
            sections[-1][int(match.group(1))] = match.group(2)
    return sections


def assess_series(
    patches: list[Path], tree: Path, path_map: Mapping[str, str] | None = None
) -> list[PatchOutcome]:
    """Apply the series to `tree` in order, as far as it goes, and say what each patch did.

    A patch that applies (with or without offsets) is applied, so the next one sees its
    change; one that fails or is already upstream is left out. `tree` is changed in place.
    """
    outcomes = []
    for patch in patches:
        if not patch.is_file():
            raise PatchError(f"{patch}: listed but missing")
        original = patch.read_text(encoding="utf-8")
        outcomes.append(_assess_patch(patch, original, path_map or {}, tree))
    return outcomes


def _assess_patch(patch: Path, original: str, path_map: Mapping[str, str], tree: Path) -> PatchOutcome:
    text = _remap_paths(original, path_map)
    forward = _run_patch(text, tree, "--forward", "--dry-run")
    if forward.returncode == 0:
        _run_patch(text, tree, "--forward")
        offsets = _offsets(forward.stdout)
        if not any(o for section in offsets for o in section.values()):
            return PatchOutcome(patch, PatchStatus.APPLIES)
        largest = max((o for section in offsets for o in section.values()), key=abs)
        return PatchOutcome(
            patch, PatchStatus.OFFSET, offset=largest, refreshed=_refreshed(original, offsets, tree, path_map)
        )
    if _run_patch(text, tree, "--reverse", "--dry-run").returncode == 0:
        return PatchOutcome(patch, PatchStatus.UPSTREAM, how="it reverse-applies")
    _, files = _parse_diff(text)
    if files and all(_has_same_change(tree / f.path, f) for f in files):
        return PatchOutcome(patch, PatchStatus.UPSTREAM, how="upstream has the same change")
    # Reported by the source-tree paths the patch names, not the artifact's.
    names = [f.path for f in _parse_diff(original)[1]]
    failures = _failures(forward.stdout + forward.stderr, files, names, tree)
    return PatchOutcome(patch, PatchStatus.FAILS, failures=failures)


def _offsets(output: str) -> list[dict[int, int]]:
    return [
        {
            hunk: int(m.group(1))
            for hunk, result in section.items()
            if (m := re.search(r"\(offset (-?\d+) lines?\)", result))
        }
        for section in _hunk_results(output)
    ]


def _refreshed(
    original: str, offsets: list[dict[int, int]], tree: Path, path_map: Mapping[str, str]
) -> str | None:
    """The refreshed patch, checked: on the tree as it was before this patch, no hunk moves.

    `tree` already holds the patch's change, so the check reverse-applies it.
    """
    text = refresh(original, offsets)
    check = _run_patch(_remap_paths(text, path_map), tree, "--reverse", "--dry-run")
    if check.returncode != 0 or any(o for section in _offsets(check.stdout) for o in section.values()):
        return None
    return text


def refresh(text: str, offsets: list[dict[int, int]]) -> str:
    """The patch with each hunk's line numbers moved by the offset GNU patch found for it.

    Only the `@@` lines change: the commit message, the hunks' text and the diffstat stay.
    """
    lines, files = _parse_diff(text)
    for section, file in zip(offsets, files, strict=False):
        for number, hunk in enumerate(file.hunks, start=1):
            shift = section.get(number, 0)
            if not shift:
                continue
            match = _HUNK_HEADER.match(lines[hunk.header_line])
            assert match is not None
            old = f"{int(match.group(1)) + shift}" + (f",{match.group(2)}" if match.group(2) else "")
            new = f"{int(match.group(3)) + shift}" + (f",{match.group(4)}" if match.group(4) else "")
            ending = "\n" if lines[hunk.header_line].endswith("\n") else ""
            lines[hunk.header_line] = f"@@ -{old} +{new} @@{match.group(5).rstrip(chr(10))}{ending}"
    return "".join(lines)


def _has_same_change(path: Path, diff: _FileDiff) -> bool:
    """Upstream made this file's change itself: every added run is there, every removed run gone."""
    if not path.is_file() or not diff.hunks:
        return False
    content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    added = [run for hunk in diff.hunks for run in hunk.added]
    removed_only = [run for hunk in diff.hunks if not hunk.added for run in hunk.removed]
    return (
        bool(added)
        and all(_contains(content, run) for run in added)
        and not any(_contains(content, run) for run in removed_only)
    )


def _contains(content: list[str], run: list[str]) -> bool:
    size = len(run)
    return any(content[i : i + size] == run for i in range(len(content) - size + 1))


def _failures(output: str, files: list[_FileDiff], names: list[str], tree: Path) -> tuple[HunkFailure, ...]:
    failures = []
    for section, file, name in zip(_hunk_results(output), files, names, strict=False):
        if section.get(0) == "missing" or not (tree / file.path).is_file():
            failures.append(HunkFailure(name, None, "the file does not exist"))
            continue
        content = (tree / file.path).read_text(encoding="utf-8", errors="replace").splitlines()
        for number, result in sorted(section.items()):
            if not result.startswith("FAILED"):
                continue
            hunk = file.hunks[number - 1] if number <= len(file.hunks) else None
            context = _first_mismatch(content, hunk.old_lines) if hunk else ""
            failures.append(HunkFailure(name, number, context))
    if not failures:
        failures.append(HunkFailure("?", None, " ".join(output.split())))
    return tuple(failures)


def _first_mismatch(content: list[str], old_lines: list[str]) -> str:
    """The first line of the hunk's old side where the file stops following it."""
    length = next((n for n in range(len(old_lines), 0, -1) if _contains(content, old_lines[:n])), 0)
    if length == len(old_lines):
        length = 0
    # A blank line says nothing about where the file changed: name the next line with text.
    return next((line for line in old_lines[length:] if line.strip()), "(blank lines)")


def _failure_text(failure: HunkFailure) -> str:
    if failure.hunk is None:
        return f"{failure.file} ({failure.context})"
    return f"{failure.file} hunk #{failure.hunk}: no longer matches {failure.context!r}"
